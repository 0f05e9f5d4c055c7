//! The frame's own failures (who is calling, TLS, config files) and how every
//! bonebank service sends an error: `{code, message, hint}` with the status
//! of its code, details of internal failures in the log only.

use std::path::PathBuf;

pub use actix_web::http::StatusCode;
use actix_web::web;
pub use actix_web::{HttpResponse, ResponseError};
use bonebank_schemas::wire::{ErrorBody, ErrorCode};

/// An error as a bonebank service sends it: `{code, message, hint}`, the
/// status of its code, and for `too_many_requests` how long to wait. Each
/// service's error type says its body here and gets actix's
/// `ResponseError` from [`responds_in_wire_shape!`](crate::responds_in_wire_shape).
pub trait WireError: std::fmt::Display + std::fmt::Debug {
    /// The body: users' faults with their message and hint, ours with a
    /// generic message (the details go to the log).
    fn body(&self) -> ErrorBody;

    /// Seconds to wait before asking again, sent as `Retry-After`.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// Implements actix's `ResponseError` for a type that is a [`WireError`]:
/// one shape, one status table and one logging rule for every service.
#[macro_export]
macro_rules! responds_in_wire_shape {
    ($error:ty) => {
        impl $crate::error::ResponseError for $error {
            fn status_code(&self) -> $crate::error::StatusCode {
                $crate::error::status_of(&$crate::error::WireError::body(self))
            }

            fn error_response(&self) -> $crate::error::HttpResponse {
                $crate::error::response(self)
            }
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No verified identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The identity provider could not be reached to check a token.
    #[error("{0}")]
    IdentityUnavailable(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A config file, certificate or argument that does not work.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Ours, not the caller's.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path (or what) it happened at.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl WireError for Error {
    fn body(&self) -> ErrorBody {
        let (code, message, hint) = match self {
            Self::Unauthenticated(m) => (
                ErrorCode::Unauthenticated,
                m.clone(),
                Some(
                    "sign in again (bonebank login) and send the token as Authorization: Bearer"
                        .into(),
                ),
            ),
            Self::Forbidden(m) => (ErrorCode::Forbidden, m.clone(), None),
            Self::IdentityUnavailable(m) => (ErrorCode::IdentityUnavailable, m.clone(), None),
            Self::BadRequest(m) => (ErrorCode::BadRequest, m.clone(), None),
            Self::Usage(_) | Self::Io { .. } | Self::Internal(_) => (
                ErrorCode::Internal,
                "internal error; the service's log has the details".into(),
                None,
            ),
        };
        ErrorBody {
            code,
            message,
            hint,
            ticket: None,
        }
    }
}

crate::responds_in_wire_shape!(Error);

/// The HTTP status of an error body.
pub fn status_of(body: &ErrorBody) -> StatusCode {
    StatusCode::from_u16(body.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An error as every bonebank service sends it: the body with its status;
/// for internal errors, the details go to the log only.
pub fn response(error: &impl WireError) -> HttpResponse {
    respond(error.body(), error, error.retry_after())
}

fn respond(
    body: ErrorBody,
    error: &dyn std::fmt::Display,
    retry_after: Option<u64>,
) -> HttpResponse {
    if body.code == ErrorCode::Internal {
        tracing::error!(error = %error, "request failed");
    }
    let mut response = HttpResponse::build(status_of(&body));
    if body.code == ErrorCode::Unauthenticated {
        response.insert_header(("WWW-Authenticate", "Bearer error=\"invalid_token\""));
    }
    if let Some(seconds) = retry_after {
        response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
    }
    response.json(body)
}

/// How a route reads its JSON body: at most `limit` bytes, and a body that
/// does not parse is a 400 in the wire shape that names what the route
/// expects (`what`, e.g. "query request"), with the parser's reason and
/// `hint`. A service sets one for the whole app and overrides it on a
/// resource whose body is something else.
pub fn json_config(
    limit: usize,
    what: &'static str,
    hint: Option<&'static str>,
) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |e, _| {
            rejection(
                ErrorCode::BadRequest,
                format!("the request body is not a valid {what}: {e}"),
                hint,
            )
        })
}

/// Query strings that do not parse are answered in the wire shape: 400,
/// naming what is wrong.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        rejection(
            ErrorCode::BadRequest,
            format!("the query string is not understood: {e}"),
            None,
        )
    })
}

/// Path segments that do not parse (an id that is not a number) name no
/// resource: 404 in the wire shape.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|e, _| {
        rejection(ErrorCode::NotFound, format!("no such resource: {e}"), None)
    })
}

/// An extractor's refusal as every bonebank service answers.
/// An error answer in the wire shape, for a refusal made outside any
/// service's own error type (e.g. [`crate::openapi`]'s fallback).
pub fn answer(body: ErrorBody) -> HttpResponse {
    let message = body.message.clone();
    respond(body, &message, None)
}

/// Whether a state database's error is a full disk (SQLite's
/// `SQLITE_FULL`: "database or disk is full").
pub fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

/// Whether a file's error is a full disk or quota.
pub fn is_full_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn rejection(code: ErrorCode, message: String, hint: Option<&str>) -> actix_web::Error {
    let body = ErrorBody {
        code,
        message,
        hint: hint.map(str::to_owned),
        ticket: None,
    };
    let response = respond(body.clone(), &body.message, None);
    actix_web::error::InternalError::from_response(body.message, response).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_resource_names_its_own_body() {
        use actix_web::{App, test};
        async fn take(_: web::Json<serde_json::Value>) -> HttpResponse {
            HttpResponse::Ok().finish()
        }
        let app = test::init_service(
            App::new()
                .app_data(json_config(1024, "query request", Some("a hint")))
                .route("/q", web::post().to(take))
                .service(
                    web::resource("/d")
                        .app_data(json_config(1024, "steward's decision", None))
                        .route(web::post().to(take)),
                ),
        )
        .await;
        for (path, what, hint) in [
            ("/q", "query request", Some("a hint")),
            ("/d", "steward's decision", None),
        ] {
            let req = test::TestRequest::post()
                .uri(path)
                .insert_header(("content-type", "application/json"))
                .set_payload("{not json")
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let body: ErrorBody = test::read_body_json(resp).await;
            assert!(
                body.message
                    .starts_with(&format!("the request body is not a valid {what}: ")),
                "{body:?}"
            );
            assert_eq!(body.hint.as_deref(), hint);
        }
    }

    #[actix_web::test]
    async fn query_strings_and_path_segments_that_do_not_parse_answer_in_the_wire_shape() {
        use actix_web::{App, test};
        #[derive(serde::Deserialize)]
        struct Search {
            #[allow(dead_code)]
            q: String,
        }
        async fn search(_: web::Query<Search>) -> HttpResponse {
            HttpResponse::Ok().finish()
        }
        async fn entry(_: web::Path<i64>) -> HttpResponse {
            HttpResponse::Ok().finish()
        }
        let app = test::init_service(
            App::new()
                .app_data(query_config())
                .app_data(path_config())
                .route("/search", web::get().to(search))
                .route("/entries/{id}", web::get().to(entry)),
        )
        .await;
        for (uri, status, code) in [
            ("/search", StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ("/entries/seven", StatusCode::NOT_FOUND, ErrorCode::NotFound),
        ] {
            let resp =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.status(), status, "{uri}");
            let body: ErrorBody = test::read_body_json(resp).await;
            assert_eq!(body.code, code, "{uri}: {body:?}");
        }
        let ok = test::TestRequest::get().uri("/entries/7").to_request();
        assert_eq!(test::call_service(&app, ok).await.status(), StatusCode::OK);
    }

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let e = Error::Usage("/etc/secret/path is wrong".into());
        let body = e.body();
        assert_eq!(body.code, ErrorCode::Internal);
        assert!(!body.message.contains("secret"));
        assert_eq!(status_of(&body), StatusCode::INTERNAL_SERVER_ERROR);
        let e = Error::Unauthenticated("expired".into());
        assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
    }
}
