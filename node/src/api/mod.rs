//! The node's HTTP API. Handlers extract, call one service method and map the
//! result to a wire type; errors all leave as `{code, message, hint}`.

pub(crate) mod approvals;
mod budget;
mod catalogue;
mod health;
mod metrics;
mod preview;
pub(crate) mod query;
mod site;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};
use bonebank_schemas::wire::{ErrorBody, ErrorCode};
use bonebank_service::StewardedSite;
use bonebank_service::error::{WireError, json_config};
use bonebank_service::grant::GrantVerifier;
use bonebank_service::oidc::TokenVerifier;
use bonebank_service::openapi;
use utoipa_actix_web::{AppExt, scope};

pub use metrics::Metrics;

use crate::Error;
use crate::service::QueryService;
use crate::store::Account;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: QueryService,
    pub identity: web::Data<TokenVerifier>,
    /// The coordinator's grants, where the node has mutual TLS (and so a
    /// coordinator); see [`bonebank_service::grant`].
    pub grants: Option<web::Data<GrantVerifier>>,
    pub metrics: Metrics,
}

/// The node's application, used by `serve` and by tests.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = bonebank_query::limits::LIMITS.max_body_bytes;
    let json = json_config(limit, "query request", Some(bonebank_query::SHAPE_HINT));
    let decision = json_config(
        limit,
        "steward's decision ({\"decision\": \"approve\" | \"reject\", \"reason\": …})",
        None,
    );
    let verifier = state.identity.clone();
    let grants = state.grants.clone();
    let site = web::Data::new(StewardedSite(state.service.site.to_string()));
    let mut app = App::new().into_utoipa_app();
    if let Some(grants) = grants {
        app = app.app_data(grants);
    }
    let app = app
        .app_data(state)
        .app_data(verifier)
        .app_data(site)
        .app_data(json)
        .app_data(bonebank_service::error::query_config())
        .app_data(bonebank_service::error::path_config())
        .service(query::run)
        .service(preview::preview)
        .service(budget::get)
        .service(site::get)
        .service(catalogue::get)
        .service(
            // A scope of its own so that decisions get their own body
            // errors; the list shares it, as a scope takes every path below.
            scope("/v1/approvals")
                .app_data(decision)
                .service(approvals::list)
                .service(approvals::decide_here),
        )
        .service(approvals::ticket_status)
        .service(approvals::ticket_state)
        .service(health::health)
        .service(health::metrics);
    openapi::finish(
        app,
        openapi::About {
            title: "bonebank node",
            description: "One biobank site's node: differentially private answers to feasibility \
                          questions over the site's sample metadata, the site's budgets, and its \
                          data stewards' approvals. Callers present an access token; the port \
                          also asks for a client certificate the node's tls.allowed_clients names.",
            session_cookie: None,
        },
    )
}

/// A full disk at the node, as researchers see it: an answer is stored
/// with its charge in one transaction, so none was released or charged.
fn full() -> (ErrorCode, String, Option<String>) {
    (
        ErrorCode::StorageFull,
        "this site's storage is full, so it cannot record an answer; none was released and nothing was charged".into(),
        Some("ask again later; the site's operator sees it in bonebank_node_storage_free_bytes".into()),
    )
}

impl WireError for Error {
    /// The wire form: users' faults with their message and hint, ours with a
    /// generic message (the details go to the log).
    fn body(&self) -> ErrorBody {
        let (code, message, hint) = match self {
            Error::QueryRefused(r) => (
                ErrorCode::QueryRefused,
                r.message.clone(),
                Some(r.hint.clone()),
            ),
            Error::PolicyRefused(r) => (
                ErrorCode::PolicyRefused,
                r.message.clone(),
                Some(r.hint.clone()),
            ),
            Error::BudgetExhausted(account) => {
                let whose = match account {
                    Account::User => "your",
                    Account::Project => "your project's",
                    Account::Site => "this site's",
                };
                (
                    ErrorCode::BudgetExhausted,
                    format!("the query would exceed {whose} privacy budget for the current period"),
                    Some("ask again with a smaller loss, repeat an earlier query (free), or wait for the period to roll over".into()),
                )
            }
            Error::NoData => (
                ErrorCode::NoData,
                self.to_string(),
                Some("the site operator imports data with bonebank-node import".into()),
            ),
            Error::BadRequest(m) => (
                ErrorCode::BadRequest,
                m.clone(),
                Some(bonebank_query::SHAPE_HINT.into()),
            ),
            Error::Unauthenticated(m) => (
                ErrorCode::Unauthenticated,
                m.clone(),
                Some(
                    "sign in again (bonebank login) and send the token as Authorization: Bearer"
                        .into(),
                ),
            ),
            Error::IdentityUnavailable(m) => (ErrorCode::IdentityUnavailable, m.clone(), None),
            Error::Pending { ticket, .. } => (
                ErrorCode::PendingApproval,
                self.to_string(),
                Some(format!(
                    "ask the same question again later for the answer, or look at /v1/tickets/{ticket}"
                )),
            ),
            Error::Forbidden(m) => (ErrorCode::Forbidden, m.clone(), None),
            Error::TooManyRequests {
                message,
                retry_after,
            } => (
                ErrorCode::TooManyRequests,
                message.clone(),
                Some(format!(
                    "ask again in {retry_after} s; remembered answers (questions asked before) are not limited"
                )),
            ),
            Error::TooSlow(_) => (
                ErrorCode::TooSlow,
                self.to_string(),
                Some(
                    "ask with fewer dimensions, measures or conditions, or ask the site's operator"
                        .into(),
                ),
            ),
            Error::NotFound => (
                ErrorCode::NotFound,
                "no such endpoint".into(),
                Some("the endpoints are listed in /openapi.json".into()),
            ),
            Error::NoTicket(m) => (
                ErrorCode::NotFound,
                m.clone(),
                Some("a held question's ticket is in the message that said it waits".into()),
            ),
            Error::NoCatalogue(m) => (
                ErrorCode::NotFound,
                m.clone(),
                Some("questions are answered fresh meanwhile (POST /v1/query)".into()),
            ),
            Error::Database(e) if bonebank_service::error::is_full(e) => full(),
            Error::Io { source, .. } if bonebank_service::error::is_full_io(source) => full(),
            _ => (
                ErrorCode::Internal,
                "internal error; the site's log has the details".into(),
                None,
            ),
        };
        let ticket = match self {
            Error::Pending { ticket, .. } => Some(ticket.clone()),
            _ => None,
        };
        ErrorBody {
            code,
            message,
            hint,
            ticket,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

bonebank_service::responds_in_wire_shape!(Error);
