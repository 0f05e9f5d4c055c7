//! The coordinator's error type, and how each error looks on the wire.

use bonebank_schemas::wire::{ErrorBody, ErrorCode};
use bonebank_service::error::WireError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is outside the supported subset.
    #[error("{message}")]
    QueryRefused { message: String, hint: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's history has no answer with this id.
    #[error("there is no question {0} in your history")]
    NotInHistory(i64),
    /// A config, a certificate or an argument that does not work.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Service(#[from] bonebank_service::Error),
    #[error("history database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The request does not fit this coordinator's state or setup.
    #[error("{0}")]
    Conflict(String),
    /// Another service (a Negotiator) failed; the message is for the user.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl WireError for Error {
    /// The error as researchers see it; internal details stay in the log.
    fn body(&self) -> ErrorBody {
        let (code, message, hint) = match self {
            Self::QueryRefused { message, hint } => {
                (ErrorCode::QueryRefused, message.clone(), Some(hint.clone()))
            }
            Self::BadRequest(m) => (ErrorCode::BadRequest, m.clone(), None),
            Self::Conflict(m) => (ErrorCode::Conflict, m.clone(), None),
            Self::Unauthenticated(m) => (
                ErrorCode::Unauthenticated,
                m.clone(),
                Some("sign in: run `bonebank login --coordinator URL`, or open /auth/login in a browser".into()),
            ),
            Self::Service(
                e @ (bonebank_service::Error::Unauthenticated(_)
                | bonebank_service::Error::Forbidden(_)
                | bonebank_service::Error::IdentityUnavailable(_)
                | bonebank_service::Error::BadRequest(_)),
            ) => {
                let body = e.body();
                (body.code, body.message, body.hint)
            }
            Self::NotInHistory(_) => (
                ErrorCode::NotFound,
                self.to_string(),
                Some("GET /v1/history lists the ids of your earlier questions".into()),
            ),
            Self::Upstream(m) => (
                ErrorCode::UpstreamFailed,
                m.clone(),
                Some("download the request and send it to the Negotiator by hand, or try again later".into()),
            ),
            Self::Database(e) if bonebank_service::error::is_full(e) => (
                ErrorCode::StorageFull,
                "the coordinator's storage is full, so it could not keep this answer in your history; \
                 the sites that answered charged your budget for it"
                    .into(),
                Some(
                    "ask the same question again later: each site remembers its release and gives it again free"
                        .into(),
                ),
            ),
            _ => (
                ErrorCode::Internal,
                "the coordinator failed; the details are in its log".into(),
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

bonebank_service::responds_in_wire_shape!(Error);
