//! The node's HTTP API. Handlers extract, call one service method and map the
//! result to a wire type; errors all leave as `{code, message, hint}`.

mod approvals;
mod budget;
mod health;
mod metrics;
mod preview;
mod query;
mod site;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, ResponseError, web};
use bonebank_schemas::wire::{ErrorBody, ErrorCode};

pub use metrics::Metrics;

use crate::Error;
use crate::oidc::TokenVerifier;
use crate::service::QueryService;
use crate::store::Account;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: QueryService,
    pub identity: Arc<TokenVerifier>,
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
    let json = web::JsonConfig::default()
        .limit(crate::query::limits::LIMITS.max_body_bytes)
        .error_handler(|e, _| {
            Error::BadRequest(format!(
                "the request body is not a valid query request: {e}"
            ))
            .into()
        });
    App::new()
        .app_data(state)
        .app_data(json)
        .route("/v1/query", web::post().to(query::run))
        .route("/v1/preview", web::post().to(preview::preview))
        .route("/v1/budget", web::get().to(budget::get))
        .route("/v1/site", web::get().to(site::get))
        .route("/v1/approvals", web::get().to(approvals::list))
        .route("/v1/approvals/{ticket}", web::post().to(approvals::decide))
        .route("/v1/tickets/{ticket}", web::get().to(approvals::ticket))
        .route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(health::metrics))
        .default_service(web::to(|| async { Error::NotFound.error_response() }))
}

impl Error {
    /// The wire form: users' faults with their message and hint, ours with a
    /// generic message (the details go to the log).
    pub fn body(&self) -> ErrorBody {
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
                Some(crate::query::SHAPE_HINT.into()),
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
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        status_of(&self.body())
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = respond(self.body(), self);
        if let Error::TooManyRequests { retry_after, .. } = self
            && let Ok(value) =
                actix_web::http::header::HeaderValue::from_str(&retry_after.to_string())
        {
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
        response
    }
}

/// Text made safe to put into HTML, in element content or a quoted
/// attribute.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The HTTP status of an error body.
pub fn status_of(body: &ErrorBody) -> StatusCode {
    StatusCode::from_u16(body.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An error as every bonebank service sends it: the body with its status;
/// for internal errors, the details go to the log only.
pub fn respond(body: ErrorBody, error: &dyn std::fmt::Display) -> HttpResponse {
    if body.code == ErrorCode::Internal {
        tracing::error!(error = %error, "request failed");
    }
    let mut response = HttpResponse::build(status_of(&body));
    if body.code == ErrorCode::Unauthenticated {
        response.insert_header(("WWW-Authenticate", "Bearer error=\"invalid_token\""));
    }
    response.json(body)
}
