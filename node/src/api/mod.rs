//! The node's HTTP API. Handlers extract, call one service method and map the
//! result to a wire type; errors all leave as `{code, message, hint}`.

pub(crate) mod approvals;
mod budget;
mod health;
mod metrics;
mod preview;
pub(crate) mod query;
mod site;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, ResponseError, web};
use bonebank_schemas::wire::{ErrorBody, ErrorCode};
use bonebank_service::StewardedSite;
use bonebank_service::error::{WireError, json_config};
use bonebank_service::oidc::TokenVerifier;

pub use metrics::Metrics;

use crate::Error;
use crate::service::QueryService;
use crate::store::Account;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: QueryService,
    pub identity: web::Data<TokenVerifier>,
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
    let site = web::Data::new(StewardedSite(state.service.site.to_string()));
    App::new()
        .app_data(state)
        .app_data(verifier)
        .app_data(site)
        .app_data(json)
        .route("/v1/query", web::post().to(query::run))
        .route("/v1/preview", web::post().to(preview::preview))
        .route("/v1/budget", web::get().to(budget::get))
        .route("/v1/site", web::get().to(site::get))
        .route("/v1/approvals", web::get().to(approvals::list))
        .service(
            web::resource("/v1/approvals/{ticket}")
                .app_data(decision)
                .route(web::post().to(approvals::decide)),
        )
        .route("/v1/tickets/{ticket}", web::get().to(approvals::ticket))
        .route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(health::metrics))
        .default_service(web::to(|| async { Error::NotFound.error_response() }))
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
                Some("sign in again (bonebank login) and send the token as Authorization: Bearer".into()),
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
            Error::TooManyRequests { message, retry_after } => (
                ErrorCode::TooManyRequests,
                message.clone(),
                Some(format!(
                    "ask again in {retry_after} s; remembered answers (questions asked before) are not limited"
                )),
            ),
            Error::TooSlow(_) => (
                ErrorCode::TooSlow,
                self.to_string(),
                Some("narrow the question (fewer dimensions, a narrower filter), or ask the site's operator".into()),
            ),
            Error::NotFound => (
                ErrorCode::NotFound,
                "no such endpoint".into(),
                Some("see /v1/site, /v1/query, /v1/budget, /v1/approvals, /v1/tickets/{id}, /health, /metrics".into()),
            ),
            _ => (
                ErrorCode::Internal,
                "internal error; the site's log has the details".into(),
                None,
            ),
        };
        ErrorBody {
            code,
            message,
            hint,
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
