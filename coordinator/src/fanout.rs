//! Asking the sites: one HTTPS client per site (mutual TLS, the site's
//! certificate checked against the CA and the site's name), all sites asked
//! at once, and whatever has arrived by the deadline is the answer.

use std::sync::Arc;
use std::time::Duration;

use bonebank_schemas::wire::{
    BudgetListing, BudgetStatus, Catalogue, ErrorBody, ErrorCode, Preview, Purpose, QueryRequest,
    QueryResult, SiteAnswer, SiteDescription, SiteListing, SitePreview, SiteStatus, TicketStatus,
};
use bonebank_schemas::{FeasibilityQuery, SiteId};
use bonebank_service::grant::GrantSigner;
use bonebank_service::tls;
use tokio::time::Instant;

use crate::auth::Requester;
use crate::config::{ClientTls, SiteEndpoint};
use crate::link::{LinkSite, Links};
use crate::{Error, Result};
use bonebank_service::error_chain;

/// How one site is reached.
#[derive(Debug, Clone)]
pub struct SiteClient {
    pub id: SiteId,
    transport: Transport,
    /// Signs each request's grant: the user's token never leaves the
    /// coordinator (see [`bonebank_service::grant`]).
    grants: Arc<GrantSigner>,
}

#[derive(Debug, Clone)]
enum Transport {
    /// The coordinator connects to the node.
    Inbound {
        base: reqwest::Url,
        http: reqwest::Client,
    },
    /// The node connects out to the coordinator and fetches its requests.
    Outbound(Arc<LinkSite>),
}

/// Why a site gave no usable answer.
struct Failure {
    status: SiteStatus,
    message: String,
    hint: Option<String>,
    /// The ticket of a question that waits for a steward.
    ticket: Option<String>,
}

impl Failure {
    fn new(status: SiteStatus, message: String) -> Self {
        Self {
            status,
            message,
            hint: None,
            ticket: None,
        }
    }
}

impl SiteClient {
    /// A client for `site` that presents the coordinator's certificate and
    /// accepts only a node certificate from the CA valid for the site's name;
    /// or, for a site without a URL, its link (`links`).
    pub fn new(
        site: &SiteEndpoint,
        tls_files: &ClientTls,
        links: Option<&Links>,
        grants: Arc<GrantSigner>,
    ) -> Result<Self> {
        let Some(url) = &site.url else {
            let link = links.and_then(|l| l.site(&site.id)).ok_or_else(|| {
                Error::Usage(format!(
                    "site {} connects out, but there is no [link]",
                    site.id
                ))
            })?;
            return Ok(Self {
                id: site.id.clone(),
                transport: Transport::Outbound(link),
                grants,
            });
        };
        let base =
            reqwest::Url::parse(url).map_err(|e| Error::Usage(format!("site {}: {e}", site.id)))?;
        // The node's certificate must carry server_name where one is given:
        // a node reached by its address is still checked by its name.
        let config = tls::client_config_for(&tls::ClientFiles {
            ca: &tls_files.ca,
            extra_ca: None,
            certificate: &tls_files.certificate,
            key: &tls_files.key,
            server_name: site.server_name.as_deref(),
        })?;
        let builder = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true);
        let http = builder
            .build()
            .map_err(|e| Error::Usage(format!("site {}: HTTPS client: {e}", site.id)))?;
        Ok(Self {
            id: site.id.clone(),
            transport: Transport::Inbound { base, http },
            grants,
        })
    }

    /// `inbound` or `outbound`, and for a site that connects out, when it
    /// was last heard from.
    pub fn connection(&self) -> (&'static str, Option<std::time::SystemTime>) {
        match &self.transport {
            Transport::Inbound { .. } => ("inbound", None),
            Transport::Outbound(link) => ("outbound", link.last_seen()),
        }
    }

    /// Sends one request to the node, however it is reached, with a grant
    /// for `who` at this site only; its HTTP status and body, or why there
    /// is none.
    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        who: Option<&Requester>,
        body: Option<serde_json::Value>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
        let grant = who.map(|w| self.grants.sign(&w.caller, self.id.as_str()));
        let grant = grant.as_deref();
        match &self.transport {
            Transport::Inbound { base, http } => {
                let unreachable = |e: reqwest::Error| {
                    tracing::warn!(site = %self.id, error = %error_chain(&e), "site unreachable");
                    Failure::new(SiteStatus::Unreachable, describe_error(&e))
                };
                let url = base.join(path).expect("static paths join");
                let mut request = match method {
                    "POST" => http.post(url),
                    _ => http.get(url),
                };
                if let Some(grant) = grant {
                    request = request.bearer_auth(grant);
                }
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let response = request.send().await.map_err(unreachable)?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(unreachable)?;
                Ok((status, bytes.to_vec()))
            }
            Transport::Outbound(link) => {
                let response = link.ask(method, path, grant, body).await.map_err(|why| {
                    tracing::warn!(site = %self.id, why, "site unreachable");
                    Failure {
                        hint: Some("the site's node connects out to the coordinator; its operator finds why it does not in the node's log".into()),
                        ..Failure::new(SiteStatus::Unreachable, why)
                    }
                })?;
                let status = reqwest::StatusCode::from_u16(response.status)
                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
                let body = serde_json::to_vec(&response.body).expect("JSON values serialise");
                Ok((status, body))
            }
        }
    }

    /// Posts a question to `path` and reads the node's JSON answer; on any
    /// failure, the site status, message and hint that say why not.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        who: &Requester,
        query: &FeasibilityQuery,
        (loss, purpose): (Option<f64>, Option<&Purpose>),
        site_of: fn(&T) -> &str,
    ) -> Result<T, Failure> {
        let request = QueryRequest {
            sql: None,
            query: Some(query.clone()),
            loss,
            purpose: purpose.cloned(),
        };
        let request = serde_json::to_value(&request).expect("requests serialise");
        let (status, body) = self
            .exchange("POST", path, Some(who), Some(request))
            .await?;
        // 202 is a ticket waiting for a steward: an error body, not an answer.
        if !(status.is_success() && status != reqwest::StatusCode::ACCEPTED) {
            return Err(failure(status, &body));
        }
        let answer: T = serde_json::from_slice(&body)
            .map_err(|e| Failure::new(SiteStatus::Failed, format!("unreadable answer: {e}")))?;
        if site_of(&answer) != self.id.as_str() {
            return Err(Failure::new(
                SiteStatus::Failed,
                format!("the node answered as {}, not {}", site_of(&answer), self.id),
            ));
        }
        Ok(answer)
    }

    /// Sends the question; the answer or a status that says why not.
    pub async fn query(
        &self,
        who: &Requester,
        query: &FeasibilityQuery,
        loss: Option<f64>,
        purpose: Option<&Purpose>,
    ) -> SiteAnswer {
        let (status, message, hint, ticket, result) = match self
            .post(
                "v1/query",
                who,
                query,
                (loss, purpose),
                |r: &QueryResult| &r.site_id,
            )
            .await
        {
            Ok(r) => (SiteStatus::Answered, None, None, None, Some(r)),
            Err(f) => (f.status, Some(f.message), f.hint, f.ticket, None),
        };
        SiteAnswer {
            site_id: self.id.to_string(),
            status,
            message,
            hint,
            ticket,
            result,
        }
    }

    /// Asks the site what the question would cost and how precise its
    /// answer would be; nothing is spent.
    pub async fn preview(
        &self,
        who: &Requester,
        query: &FeasibilityQuery,
        loss: Option<f64>,
    ) -> SitePreview {
        let (status, message, hint, preview) = match self
            .post("v1/preview", who, query, (loss, None), |p: &Preview| {
                &p.site_id
            })
            .await
        {
            Ok(p) => (SiteStatus::Answered, None, None, Some(p)),
            Err(f) => (f.status, Some(f.message), f.hint, None),
        };
        SitePreview {
            site_id: self.id.to_string(),
            status,
            message,
            hint,
            preview,
            source: Default::default(),
            why_fresh: None,
            why_fresh_code: None,
        }
    }

    /// The caller's own budget at the site.
    pub async fn budget(&self, who: &Requester) -> BudgetListing {
        let fetched = async {
            let (status, body) = self.exchange("GET", "v1/budget", Some(who), None).await?;
            if !status.is_success() {
                return Err(failure(status, &body));
            }
            serde_json::from_slice::<BudgetStatus>(&body)
                .map_err(|e| Failure::new(SiteStatus::Failed, format!("unreadable budget: {e}")))
        };
        let (status, message, budget) = match fetched.await {
            Ok(b) => (SiteStatus::Answered, None, Some(b)),
            Err(f) => (f.status, Some(f.message), None),
        };
        BudgetListing {
            site_id: self.id.to_string(),
            status,
            message,
            budget,
        }
    }

    /// The site's catalogue; `None` where the site has none (it answers
    /// 404 with why), or why it could not be fetched.
    pub async fn catalogue(&self) -> Result<Option<Catalogue>, String> {
        let (status, body) = self
            .exchange("GET", "v1/catalogue", None, None)
            .await
            .map_err(|f| f.message)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("the node answered HTTP {status}"));
        }
        let catalogue = serde_json::from_slice::<Catalogue>(&body)
            .map_err(|e| format!("unreadable catalogue: {e}"))?;
        if catalogue.site != self.id.as_str() {
            return Err(format!(
                "the node sent the catalogue of {}, not {}",
                catalogue.site, self.id
            ));
        }
        Ok(Some(catalogue))
    }

    /// Where a ticket stands, asked as the coordinator (with no user's
    /// grant): the node says only `pending`, `approved`, `rejected` or
    /// `expired`, and the ticket's id is all the coordinator sends.
    pub async fn ticket_state(&self, ticket: &str) -> Result<String, String> {
        let path = format!("v1/tickets/{ticket}/state");
        let (status, body) = self
            .exchange("GET", &path, None, None)
            .await
            .map_err(|f| f.message)?;
        if !status.is_success() {
            return Err(failure(status, &body).message);
        }
        serde_json::from_slice::<TicketStatus>(&body)
            .map(|s| s.state)
            .map_err(|e| format!("unreadable ticket state: {e}"))
    }

    /// The site's public description.
    pub async fn describe(&self) -> Result<SiteDescription, String> {
        let (status, body) = self
            .exchange("GET", "v1/site", None, None)
            .await
            .map_err(|f| f.message)?;
        if !status.is_success() {
            return Err(format!("the node answered HTTP {status}"));
        }
        serde_json::from_slice::<SiteDescription>(&body)
            .map_err(|e| format!("unreadable description: {e}"))
    }
}

/// A node's error answer as a site status, message, hint and ticket.
fn failure(status: reqwest::StatusCode, body: &[u8]) -> Failure {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => {
            let status = match e.code {
                ErrorCode::BudgetExhausted => SiteStatus::BudgetExhausted,
                ErrorCode::TooManyRequests => SiteStatus::Busy,
                ErrorCode::PendingApproval => SiteStatus::WaitingForApproval,
                ErrorCode::QueryRefused
                | ErrorCode::PolicyRefused
                | ErrorCode::Forbidden
                | ErrorCode::Unauthenticated
                | ErrorCode::BadRequest
                | ErrorCode::TooSlow => SiteStatus::Refused,
                ErrorCode::NoData
                | ErrorCode::NotFound
                | ErrorCode::MethodNotAllowed
                | ErrorCode::Conflict
                | ErrorCode::StorageFull
                | ErrorCode::IdentityUnavailable
                | ErrorCode::UpstreamFailed
                | ErrorCode::Internal => SiteStatus::Failed,
            };
            Failure {
                status,
                message: e.message,
                hint: e.hint,
                ticket: e.ticket,
            }
        }
        Err(_) => Failure::new(
            SiteStatus::Failed,
            format!("the node answered HTTP {status}"),
        ),
    }
}

/// A connection failure in words for researchers: no addresses.
fn describe_error(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    if chain.contains("invalid peer certificate") {
        "the site's certificate did not verify".into()
    } else if chain.contains("alert") {
        "the site refused the TLS handshake (it does not trust this coordinator's certificate)"
            .into()
    } else if e.is_connect() {
        "no connection to the site".into()
    } else if e.is_timeout() {
        "the site did not answer in time".into()
    } else {
        "the connection to the site failed".into()
    }
}

/// Runs `ask` at every site at once; a site that has not answered by
/// `deadline` gets `timed_out` with its id.
async fn at_every_site<T, Fut>(
    sites: &[Arc<SiteClient>],
    deadline: Instant,
    ask: impl Fn(Arc<SiteClient>) -> Fut,
    timed_out: fn(&SiteClient) -> T,
) -> Vec<T>
where
    Fut: std::future::Future<Output = T>,
{
    let asks = sites.iter().map(|site| {
        let answer = ask(site.clone());
        async move {
            tokio::time::timeout_at(deadline, answer)
                .await
                .unwrap_or_else(|_| timed_out(site))
        }
    });
    futures::future::join_all(asks).await
}

const TIMED_OUT: &str = "no answer before the deadline";

/// Every site's public description and how it is connected, each bounded
/// by `deadline`.
pub async fn listings_all(sites: &[Arc<SiteClient>], deadline: Instant) -> Vec<SiteListing> {
    fn listing(
        site: &SiteClient,
        status: String,
        description: Option<SiteDescription>,
    ) -> SiteListing {
        let (connection, last_seen) = site.connection();
        SiteListing {
            site_id: site.id.to_string(),
            status,
            description,
            connection: connection.into(),
            last_seen: last_seen.map(crate::link::rfc3339),
        }
    }
    at_every_site(
        sites,
        deadline,
        |site| async move {
            match site.describe().await {
                Ok(d) => listing(&site, "up".into(), Some(d)),
                Err(why) => listing(&site, why, None),
            }
        },
        |site| listing(site, TIMED_OUT.into(), None),
    )
    .await
}

/// Previews at every site at once, each bounded by `deadline`.
pub async fn preview_all(
    sites: &[Arc<SiteClient>],
    who: &Requester,
    query: &FeasibilityQuery,
    loss: Option<f64>,
    deadline: Instant,
) -> Vec<SitePreview> {
    at_every_site(
        sites,
        deadline,
        |site| async move { site.preview(who, query, loss).await },
        |site| SitePreview {
            site_id: site.id.to_string(),
            status: SiteStatus::TimedOut,
            message: Some(TIMED_OUT.into()),
            hint: None,
            preview: None,
            source: Default::default(),
            why_fresh: None,
            why_fresh_code: None,
        },
    )
    .await
}

/// The caller's budget at every site at once, each bounded by `deadline`.
pub async fn budgets_all(
    sites: &[Arc<SiteClient>],
    who: &Requester,
    deadline: Instant,
) -> Vec<BudgetListing> {
    at_every_site(
        sites,
        deadline,
        |site| async move { site.budget(who).await },
        |site| BudgetListing {
            site_id: site.id.to_string(),
            status: SiteStatus::TimedOut,
            message: Some(TIMED_OUT.into()),
            budget: None,
        },
    )
    .await
}

/// Asks every site in `sites` at once and waits until `deadline` at most.
pub async fn ask_all(
    sites: &[Arc<SiteClient>],
    who: &Requester,
    query: &FeasibilityQuery,
    (loss, purpose): (Option<f64>, Option<&Purpose>),
    deadline: Instant,
) -> Vec<SiteAnswer> {
    at_every_site(
        sites,
        deadline,
        |site| async move { site.query(who, query, loss, purpose).await },
        |site| SiteAnswer {
            site_id: site.id.to_string(),
            status: SiteStatus::TimedOut,
            message: Some(TIMED_OUT.into()),
            hint: None,
            ticket: None,
            result: None,
        },
    )
    .await
}
