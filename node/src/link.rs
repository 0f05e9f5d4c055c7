//! Outbound mode, for a site behind a firewall that lets no connection in:
//! the node connects out to the coordinator over mutual TLS (through a
//! forward proxy where the site has one), asks for work with long polls,
//! answers each request as its own port would, and sends the answer back.
//!
//! Nothing about checking changes: every request carries the coordinator's
//! grant for this site and the researcher, which the node verifies itself,
//! and goes through the same query service, policy, ledger and audit log as
//! a request on the node's port.
//! The coordinator is checked by its certificate and name; the node shows
//! its own certificate, which must name this site.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::ResponseError;
use bonebank_schemas::wire::{LinkPoll, LinkRequest, LinkResponse, QueryRequest};
use bonebank_service::error::WireError;
use bonebank_service::tls::{self, ClientFiles};
use bonebank_service::{error_chain, identity};

use crate::api::AppState;
use crate::config::{NodeConfig, Outbound};
use crate::{Error, Result};

/// How long the node waits for a poll beyond the coordinator's heartbeat
/// before it takes the connection for dead and connects again.
const POLL_GRACE: Duration = Duration::from_secs(4);
/// The heartbeat assumed until the coordinator says.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long an answer is retried when the connection fails under it.
const ANSWER_TRIES: u32 = 5;

/// The link of a node in outbound mode; stops when dropped.
#[derive(Debug)]
pub struct Link {
    _task: bonebank_service::server::Background,
}

/// Starts the link if the config asks for outbound mode.
pub fn start(config: &NodeConfig, state: actix_web::web::Data<AppState>) -> Result<Option<Link>> {
    let Some(connector) = Connector::of(config)? else {
        return Ok(None);
    };
    // A config that cannot work fails now, not in the log later.
    connector.client()?;
    Ok(Some(Link {
        _task: bonebank_service::server::Background::spawn(connector.run(state)),
    }))
}

/// For `doctor`: reaches the coordinator's link address as the link does
/// (this node's certificate, the CA, the proxy); the address and the
/// coordinator's `Date`. `None` without `[outbound]`.
pub async fn reach(config: &NodeConfig) -> Result<Option<(String, Option<String>)>> {
    let Some(connector) = Connector::of(config)? else {
        return Ok(None);
    };
    let url = connector.url("");
    let response = connector
        .client()?
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| Error::Usage(format!("{url}: {}", describe(&e))))?;
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .map(str::to_owned);
    Ok(Some((url, date)))
}

#[derive(Debug, Clone)]
struct Connector {
    outbound: Outbound,
    tls: tls::NodeTls,
    site: String,
}

impl Connector {
    /// The link a config asks for; `None` without `[outbound]`.
    fn of(config: &NodeConfig) -> Result<Option<Self>> {
        let Some(outbound) = config.outbound.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            outbound,
            tls: config.tls.clone().ok_or_else(|| {
                Error::Usage("[outbound] needs [tls]: the node's certificate".into())
            })?,
            site: config.site_id.to_string(),
        }))
    }

    /// An HTTPS client for the link: this node's certificate, the
    /// coordinators' CA (and the proxy's), the proxy.
    fn client(&self) -> Result<reqwest::Client> {
        let config = tls::client_config_for(&ClientFiles {
            ca: &self.tls.client_ca,
            extra_ca: self.outbound.proxy_ca.as_deref(),
            certificate: &self.tls.certificate,
            key: &self.tls.key,
            server_name: self.outbound.server_name.as_deref(),
        })?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        if let Some(proxy) = &self.outbound.proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| Error::Usage(format!("outbound.proxy {proxy:?}: {e}")))?;
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|e| Error::Usage(format!("outbound link client: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.outbound.coordinator.trim_end_matches('/'))
    }

    /// Polls for work for as long as the node runs, connecting again with
    /// backoff whenever the connection fails.
    async fn run(self, state: actix_web::web::Data<AppState>) {
        let current = Arc::new(RwLock::new(None::<reqwest::Client>));
        let mut waits = reconnect_waits();
        let mut heartbeat = FIRST_HEARTBEAT;
        let mut connected = false;
        loop {
            let existing = current.read().expect("not poisoned").clone();
            let client = match existing {
                Some(c) => c,
                None => match self.client() {
                    Ok(c) => {
                        *current.write().expect("not poisoned") = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot connect out to the coordinator");
                        tokio::time::sleep(next_wait(&mut waits)).await;
                        continue;
                    }
                },
            };
            match self.poll(&client, heartbeat).await {
                Ok(poll) => {
                    if !connected {
                        tracing::info!(coordinator = %self.outbound.coordinator, "connected out to the coordinator");
                        connected = true;
                        state.metrics.link_up.set(1);
                    }
                    waits = reconnect_waits();
                    heartbeat = Duration::from_millis(poll.heartbeat_ms.clamp(100, 60_000));
                    for request in poll.requests {
                        let (this, state, current) = (self.clone(), state.clone(), current.clone());
                        tokio::spawn(async move {
                            let response = answer(&state, request).await;
                            this.send(&current, response).await;
                        });
                    }
                }
                Err(why) => {
                    let wait = next_wait(&mut waits);
                    tracing::warn!(
                        coordinator = %self.outbound.coordinator,
                        error = %why,
                        retry_in_ms = wait.as_millis() as u64,
                        "the link to the coordinator failed; connecting again"
                    );
                    connected = false;
                    state.metrics.link_up.set(0);
                    state.metrics.link_failures.inc();
                    // Fresh connections next time: pooled ones may be dead.
                    *current.write().expect("not poisoned") = None;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One long poll: the requests waiting, or none after the heartbeat.
    async fn poll(
        &self,
        client: &reqwest::Client,
        heartbeat: Duration,
    ) -> Result<LinkPoll, String> {
        let response = client
            .get(self.url("v1/link/poll"))
            .header(SITE_HEADER, &self.site)
            .timeout(heartbeat + POLL_GRACE)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| describe(&e))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<bonebank_schemas::wire::ErrorBody>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(format!("the coordinator answered HTTP {status}: {message}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("unreadable poll: {e}"))
    }

    /// Sends an answer, again over a new connection if the one it went out
    /// on failed; gives up after a few tries (the coordinator has reported
    /// the site by then).
    async fn send(&self, current: &RwLock<Option<reqwest::Client>>, response: LinkResponse) {
        for attempt in 1..=ANSWER_TRIES {
            let existing = current.read().expect("not poisoned").clone();
            if let Some(client) = existing {
                let sent = client
                    .post(self.url("v1/link/answer"))
                    .header(SITE_HEADER, &self.site)
                    .timeout(Duration::from_secs(10))
                    .json(&response)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    // The coordinator no longer waits for it (deadline passed).
                    Ok(r) if r.status() == reqwest::StatusCode::GONE => {
                        tracing::debug!(
                            request = response.id,
                            "answer came too late for the coordinator"
                        );
                        return;
                    }
                    Ok(r) => {
                        tracing::warn!(request = response.id, status = %r.status(), "the coordinator refused an answer")
                    }
                    Err(e) => {
                        tracing::warn!(request = response.id, error = %describe(&e), "sending an answer failed")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
}

/// The header that says which site a poll is from; the coordinator checks
/// it against the certificate.
pub const SITE_HEADER: &str = "x-bonebank-site";

/// The waits before each attempt to connect again after a failure: from
/// 250 ms, doubling up to 15 s, each with up to as much again at random, so
/// that sites cut off together do not all come back in the same instant.
/// Started afresh after every poll that succeeds.
fn reconnect_waits() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build()
}

fn next_wait(waits: &mut backon::ExponentialBackoff) -> Duration {
    waits.next().unwrap_or(Duration::from_secs(15))
}

/// A failed link request in words for the site operator.
fn describe(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    // TLS has one alert for both ends of a validity period.
    if chain.contains("CertificateExpired") {
        "the coordinator refused this node's certificate as outside its validity period: expired, or not valid yet; check tls.certificate's dates and this machine's clock".into()
    } else if chain.contains("NotValidYet") {
        format!(
            "the coordinator's certificate is not valid yet; check this machine's clock ({chain})"
        )
    } else if chain.contains("Expired") {
        format!("the coordinator's certificate has expired ({chain})")
    } else if chain.contains("NotValidForName") {
        format!(
            "the coordinator's certificate does not carry the expected name (outbound.server_name) ({chain})"
        )
    } else if chain.contains("alert") {
        format!(
            "the coordinator refused this node's certificate (is the site's name on it, and is it from the network's CA?) ({chain})"
        )
    } else if e.is_timeout() {
        "no answer from the coordinator in time: the connection is taken for dead".into()
    } else {
        chain
    }
}

/// The answer this node's own port would give to `request`.
pub async fn answer(state: &AppState, request: LinkRequest) -> LinkResponse {
    let id = request.id;
    match respond(state, request).await {
        Ok(body) => LinkResponse {
            id,
            status: 200,
            body,
        },
        Err(e) => LinkResponse {
            id,
            status: e.status_code().as_u16(),
            body: serde_json::to_value(e.body()).expect("error bodies serialise"),
        },
    }
}

async fn respond(state: &AppState, request: LinkRequest) -> Result<serde_json::Value> {
    let json = |v: Result<_, serde_json::Error>| v.map_err(|e| Error::Engine(e.to_string()));
    let question = |body: Option<serde_json::Value>| -> Result<QueryRequest> {
        serde_json::from_value(body.unwrap_or_default())
            .map_err(|e| Error::BadRequest(format!("not a valid query request: {e}")))
    };
    let method = request.method.as_str();
    if (method, request.path.as_str()) == ("GET", "v1/site") {
        return json(serde_json::to_value(state.service.describe()?));
    }
    let grant = request.grant.as_deref().ok_or_else(|| {
        Error::from(bonebank_service::Error::Unauthenticated(
            "no grant came with the request".into(),
        ))
    })?;
    let caller = identity::verify(
        grant,
        &state.identity,
        state.grants.as_ref().map(|g| g.get_ref()),
    )
    .await?;
    match (method, request.path.as_str()) {
        ("POST", "v1/query") => {
            let q = question(request.body)?;
            json(serde_json::to_value(
                crate::api::query::answer(state, &caller, &q).await?,
            ))
        }
        ("POST", "v1/preview") => {
            let q = question(request.body)?;
            json(serde_json::to_value(
                state.service.preview(&caller, &q).await?,
            ))
        }
        ("GET", "v1/budget") => json(serde_json::to_value(state.service.budget(&caller).await?)),
        _ => Err(Error::NotFound),
    }
}
