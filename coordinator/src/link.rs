//! The coordinator's side of outbound mode. A node behind a firewall
//! connects out to the coordinator's link listener (mutual TLS: its
//! certificate must come from the network's CA and name a site configured
//! to connect out) and long-polls `/v1/link/poll`: the poll returns at once
//! with the requests waiting for the site, or empty after the heartbeat.
//! Answers come back on `/v1/link/answer`.
//!
//! Why long polls: they are ordinary HTTPS requests with short, bounded
//! responses, which every forward proxy passes and none buffers (a streamed
//! response can sit in a proxy's buffer; WebSocket and HTTP/2 are refused
//! by many hospital proxies). A poll at least every heartbeat is also the
//! heartbeat itself: a site is connected while polls keep coming and it has
//! a connection open; a site that is not connected is reported
//! `unreachable` at once, and questions waiting at a site whose link dies
//! are reported `unreachable` within a few seconds, not at the deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, ResponseError, get, post, web};
use bonebank_schemas::SiteId;
use bonebank_schemas::wire::{ErrorBody, LinkPoll, LinkRequest, LinkResponse};
use bonebank_service::{openapi, tls};
use tokio::sync::{Notify, oneshot};
use utoipa_actix_web::AppExt;

use crate::Error;

/// How long a site may stay silent beyond its heartbeat before its link is
/// taken for dead.
const SILENCE: Duration = Duration::from_secs(3);
/// The header a node names its site in (checked against its certificate).
pub const SITE_HEADER: &str = "x-bonebank-site";

/// Every site that connects out.
#[derive(Debug)]
pub struct Links {
    sites: Vec<Arc<LinkSite>>,
}

/// One site that connects out, and the requests waiting for it.
#[derive(Debug)]
pub struct LinkSite {
    pub id: SiteId,
    /// The name its node's certificate must carry.
    pub name: String,
    /// How long a poll is held; silence beyond it and [`SILENCE`] is death.
    heartbeat: Duration,
    state: Mutex<SiteState>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct SiteState {
    queue: VecDeque<LinkRequest>,
    pending: HashMap<u64, oneshot::Sender<LinkResponse>>,
    /// The connection each handed-out request went out on.
    delivered: HashMap<u64, u64>,
    /// The newest poll; older ones still held (a node that reconnected
    /// leaves one behind, on a connection that may be dead) return empty.
    newest_poll: u64,
    /// Open TLS connections from the site's node.
    connections: usize,
    /// When the node last asked for work.
    last_poll: Option<Instant>,
    last_seen: Option<SystemTime>,
    connected: bool,
    /// Why the site's node was last turned away, until it connects.
    refused: Option<String>,
}

impl SiteState {
    /// Whether the node is connected: it has a connection open and its
    /// polls keep coming.
    fn up(&self, heartbeat: Duration) -> bool {
        self.connected
            && self.connections > 0
            && self
                .last_poll
                .is_some_and(|t| t.elapsed() < heartbeat + SILENCE)
    }

    /// Marks the site disconnected; whatever waits for it is told at once.
    fn lose(&mut self, site: &SiteId, why: &str) {
        if self.connected {
            tracing::warn!(site = %site, why, "site disconnected");
        }
        self.connected = false;
        self.queue.clear();
        self.delivered.clear();
        // Dropping the senders ends the waiting questions.
        self.pending.clear();
    }
}

impl Links {
    /// The links of the sites `(id, certificate name)`.
    pub fn new(sites: &[(SiteId, String)], heartbeat: Duration) -> Arc<Self> {
        Arc::new(Self {
            sites: sites
                .iter()
                .map(|(id, name)| {
                    Arc::new(LinkSite {
                        id: id.clone(),
                        name: name.clone(),
                        heartbeat,
                        state: Mutex::default(),
                        arrived: Notify::new(),
                    })
                })
                .collect(),
        })
    }

    pub fn site(&self, id: &SiteId) -> Option<Arc<LinkSite>> {
        self.sites.iter().find(|s| &s.id == id).cloned()
    }

    /// The names the link listener admits.
    pub fn names(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.name.clone()).collect()
    }

    /// Declares sites whose polls stopped disconnected, looking four times
    /// a second; runs until the links are dropped.
    pub fn watch(self: &Arc<Self>) {
        let links = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(links) = links.upgrade() else { return };
                for site in &links.sites {
                    let mut state = site.lock();
                    if state.connected && !state.up(site.heartbeat) {
                        state.lose(&site.id, "no poll within the heartbeat");
                    }
                }
            }
        });
    }

    /// The site a verified certificate belongs to.
    fn site_of_certificate(
        &self,
        cert: &rustls::pki_types::CertificateDer<'_>,
    ) -> Option<Arc<LinkSite>> {
        self.sites
            .iter()
            .find(|s| tls::reload::names(cert, &s.name))
            .cloned()
    }
}

impl LinkSite {
    fn lock(&self) -> std::sync::MutexGuard<'_, SiteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the site's node is connected now.
    pub fn connected(&self) -> bool {
        self.lock().up(self.heartbeat)
    }

    /// When the site's node was last heard from.
    pub fn last_seen(&self) -> Option<SystemTime> {
        self.lock().last_seen
    }

    /// Hands `method path` to the site's node and waits for its answer; an
    /// error in words if the site is not connected or its link dies first.
    pub async fn ask(
        &self,
        method: &str,
        path: &str,
        grant: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<LinkResponse, String> {
        let id = REQUESTS.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        {
            let mut state = self.lock();
            if !state.up(self.heartbeat) {
                let mut why = match state.last_seen {
                    Some(t) => format!(
                        "the site's node is not connected (it connects out; last seen {})",
                        rfc3339(t)
                    ),
                    None => "the site's node has not connected since the coordinator started (it connects out)".into(),
                };
                if let Some(refused) = &state.refused {
                    why = format!("{why}; it was turned away: {refused}");
                }
                return Err(why);
            }
            state.pending.insert(id, sender);
            state.queue.push_back(LinkRequest {
                id,
                method: method.into(),
                path: path.into(),
                grant: grant.map(str::to_owned),
                body,
            });
        }
        self.arrived.notify_waiters();
        // Given up (deadline) or done: either way nothing stays queued.
        let _forget = Forget { site: self, id };
        answer
            .await
            .map_err(|_| "the connection to the site's node was lost before it answered".into())
    }

    /// The requests waiting, or none after the heartbeat, for the poll
    /// `number` on `connection`; none at once when a newer poll came.
    async fn poll(&self, number: u64, connection: u64) -> Vec<LinkRequest> {
        let until = tokio::time::Instant::now() + self.heartbeat;
        loop {
            let arrived = self.arrived.notified();
            {
                let mut state = self.lock();
                if state.newest_poll != number {
                    return Vec::new();
                }
                if !state.queue.is_empty() {
                    let requests: Vec<_> = state.queue.drain(..).collect();
                    for r in &requests {
                        state.delivered.insert(r.id, connection);
                    }
                    return requests;
                }
            }
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(until) => return Vec::new(),
            }
        }
    }
}

/// Removes a request from its site's queue and waiting list.
struct Forget<'a> {
    site: &'a LinkSite,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut state = self.site.lock();
        state.pending.remove(&self.id);
        state.delivered.remove(&self.id);
        state.queue.retain(|r| r.id != self.id);
    }
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The site of one TLS connection, counted while the connection is open,
/// and when the certificate it was opened with expires.
#[derive(Debug)]
struct Connection {
    site: Arc<LinkSite>,
    not_after: Option<i64>,
    id: u64,
}

/// Numbers connections, to know which requests went out on which.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);
/// Numbers requests handed to nodes, which their answers carry back.
static REQUESTS: AtomicU64 = AtomicU64::new(1);

impl Connection {
    fn open(site: Arc<LinkSite>, not_after: Option<i64>) -> Self {
        let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let open = {
            let mut state = site.lock();
            state.connections += 1;
            state.connections
        };
        tracing::debug!(site = %site.id, open, "link connection opened");
        Self {
            site,
            not_after,
            id,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut state = self.site.lock();
        state.connections = state.connections.saturating_sub(1);
        tracing::debug!(site = %self.site.id, open = state.connections, "link connection closed");
        // Requests handed out on this connection and not answered are lost
        // with it: say so now rather than at the deadline.
        let lost: Vec<u64> = state
            .delivered
            .iter()
            .filter(|(_, c)| **c == self.id)
            .map(|(r, _)| *r)
            .collect();
        for r in lost {
            state.delivered.remove(&r);
            state.pending.remove(&r);
        }
        if state.connections == 0 {
            state.lose(&self.site.id, "its last connection closed");
        }
    }
}

/// Called by the link listener for each new connection: records whose it
/// is (the certificate was verified in the handshake).
pub fn on_connect(links: &Links, connection: &dyn std::any::Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(stream) = connection.downcast_ref::<Tls>() else {
        return;
    };
    let (_, session) = stream.get_ref();
    let Some(cert) = session.peer_certificates().and_then(|chain| chain.first()) else {
        return;
    };
    if let Some(site) = links.site_of_certificate(cert) {
        let not_after = tls::reload::not_after(cert);
        data.insert(Arc::new(Connection::open(site, not_after)));
    }
}

/// The link listener's application.
pub fn app(
    links: web::Data<Links>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = bonebank_service::error::json_config(
        bonebank_query::limits::LIMITS.max_body_bytes * 64,
        "link answer",
        None,
    );
    let app = App::new()
        .into_utoipa_app()
        .app_data(links)
        .app_data(json)
        .service(poll)
        .service(take_answer);
    openapi::finish(
        app,
        openapi::About {
            title: "bonebank coordinator: the link for nodes that connect out",
            description: "Where nodes in outbound mode fetch the requests for their site and send \
                          back their answers. Mutual TLS: only certificates that name a site \
                          configured without a url are admitted.",
            session_cookie: None,
        },
    )
}

/// The site whose node sent `request`, from its connection's certificate,
/// checked against the site it says it is.
fn site_of(request: &HttpRequest) -> Result<Arc<LinkSite>, Error> {
    let forbidden = |m: String| Error::Service(bonebank_service::Error::Forbidden(m));
    let connection = request.conn_data::<Arc<Connection>>().ok_or_else(|| {
        forbidden("this connection's certificate names no site that connects out".into())
    })?;
    let site = connection.site.clone();
    // A connection outlives the handshake that checked its certificate:
    // once the certificate expires, the node must connect again with a
    // renewed one.
    if let Some(t) = connection.not_after
        && t < bonebank_service::unix_now() as i64
    {
        let when = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64));
        let why = format!("its certificate expired on {when}");
        tracing::warn!(site = %site.id, expired = %when, "refused a node whose certificate has expired");
        site.lock().refused = Some(why.clone());
        return Err(forbidden(format!(
            "this node's certificate expired on {when}; install a renewed one"
        )));
    }
    if let Some(said) = request.headers().get(SITE_HEADER)
        && !said
            .to_str()
            .is_ok_and(|s| s.eq_ignore_ascii_case(site.id.as_str()))
    {
        let said = String::from_utf8_lossy(said.as_bytes()).into_owned();
        tracing::warn!(site = %site.id, claimed = %said, "refused a node whose certificate names another site");
        let claimed = request.app_data::<web::Data<Links>>().and_then(|l| {
            l.sites
                .iter()
                .find(|s| s.id.as_str().eq_ignore_ascii_case(&said))
                .cloned()
        });
        if let Some(claimed) = claimed {
            claimed.lock().refused = Some(format!(
                "a node connected with {}'s certificate and said it was {}",
                site.id, claimed.id
            ));
        }
        return Err(forbidden(format!(
            "this node's certificate is {}'s; it cannot connect as {said}",
            site.id
        )));
    }
    Ok(site)
}

/// `GET /v1/link/poll`: the requests waiting for the node's site.
#[utoipa::path(
    tag = "link",
    params(("x-bonebank-site" = Option<String>, Header, description = "The site the node says it is; it must be the site its certificate names.")),
    responses(
        (status = 200, description = "The requests waiting for the site, or none once the heartbeat has passed; this poll ends there.", body = LinkPoll),
        (status = 403, description = "The certificate names another site, or has expired.", body = ErrorBody),
    )
)]
#[get("/v1/link/poll")]
async fn poll(request: HttpRequest) -> Result<web::Json<LinkPoll>, Error> {
    let site = site_of(&request)?;
    let connection = request.conn_data::<Arc<Connection>>().map_or(0, |c| c.id);
    let number = {
        let mut state = site.lock();
        state.newest_poll += 1;
        if !state.connected {
            tracing::info!(site = %site.id, "site connected");
        }
        state.connected = true;
        state.refused = None;
        state.last_poll = Some(Instant::now());
        state.last_seen = Some(SystemTime::now());
        state.newest_poll
    };
    // Older polls of the site step aside.
    site.arrived.notify_waiters();
    let requests = site.poll(number, connection).await;
    tracing::debug!(site = %site.id, requests = requests.len(), "poll answered");
    Ok(web::Json(LinkPoll {
        requests,
        heartbeat_ms: site.heartbeat.as_millis() as u64,
    }))
}

/// `POST /v1/link/answer`: the node's answer to one request.
#[utoipa::path(
    tag = "link",
    params(("x-bonebank-site" = Option<String>, Header, description = "The site the node says it is; it must be the site its certificate names.")),
    responses(
        (status = 204, description = "The answer goes to the question that waits for it."),
        (status = 400, description = "The body is not a link answer.", body = ErrorBody),
        (status = 403, description = "The certificate names another site, or has expired.", body = ErrorBody),
        (status = 410, description = "No question waits for this answer any more (its deadline passed)."),
    )
)]
#[post("/v1/link/answer")]
async fn take_answer(request: HttpRequest, body: web::Json<LinkResponse>) -> HttpResponse {
    let site = match site_of(&request) {
        Ok(s) => s,
        Err(e) => return e.error_response(),
    };
    let response = body.into_inner();
    let waiting = {
        let mut state = site.lock();
        state.last_seen = Some(SystemTime::now());
        state.delivered.remove(&response.id);
        state.pending.remove(&response.id)
    };
    match waiting {
        Some(sender) => {
            let _ = sender.send(response);
            HttpResponse::NoContent().finish()
        }
        None => HttpResponse::Gone().finish(),
    }
}
