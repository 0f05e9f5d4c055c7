//! The node's error type. A refused import (the user's file) is kept apart from
//! failures of the machine (disk, a damaged manifest) so each gets the message
//! its reader can act on.

use std::path::PathBuf;

use bonebank_query::Refusal;

use bonebank_import::Problems;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input had problems; nothing was changed.
    #[error("{0}")]
    Refused(Problems),
    /// The query uses something outside the supported subset.
    #[error("{0}")]
    QueryRefused(Refusal),
    /// The site's policy does not allow the query.
    #[error("{0}")]
    PolicyRefused(Refusal),
    /// Running the query would overspend the named account.
    #[error("the query would exceed the {0:?} privacy budget")]
    BudgetExhausted(Account),
    /// The query waits for a steward; `audited` says whether its audit entry
    /// was written with the ticket.
    #[error("waiting for approval by a data steward of {site} (ticket {ticket})")]
    Pending {
        site: String,
        ticket: String,
        audited: bool,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// One user or project asked too much at once or too fast; ask again
    /// after `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The question's plan is estimated, from its shape and the dataset's
    /// row count, to take longer than the site's limit (milliseconds): it
    /// was turned away before any data was read, and nothing was charged.
    #[error(
        "this site takes questions whose work is estimated at {0} ms at most; this one's, from its shape and the size of the data, is more, so it was not run and nothing was charged"
    )]
    TooSlow(u64),
    /// The site has no data yet.
    #[error("this site has not imported any data yet")]
    NoData,
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint.
    #[error("not found")]
    NotFound,
    /// No ticket with this id, or none the caller may see.
    #[error("{0}")]
    NoTicket(String),
    /// The site has published no catalogue (yet); the message says why.
    #[error("{0}")]
    NoCatalogue(String),
    /// No verified identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The identity provider could not be reached to check a token.
    #[error("{0}")]
    IdentityUnavailable(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another import holds the data directory.
    #[error("{} is in use by another import or generate; try again when it has finished", .0.display())]
    Busy(PathBuf),
    /// The manifest is unreadable: the data directory needs an operator's look.
    #[error("the manifest {} is damaged ({message}); restore it from a backup", path.display())]
    DamagedManifest { path: PathBuf, message: String },
    /// A command was given arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("query engine: {0}")]
    Engine(String),
    #[error("state database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("noise: {0}")]
    Noise(String),
    /// The audit log does not check out.
    #[error("{0}")]
    AuditBroken(Broken),
    /// A certificate could not be made.
    #[error("certificate generation: {0}")]
    Certificate(String),
}

/// Which privacy budget a query would overrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    User,
    Project,
    Site,
}

/// The first entry of the audit log that does not check out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at entry {seq}: {why}")]
pub struct Broken {
    pub seq: i64,
    pub why: String,
}

impl Error {
    /// Wraps an I/O error with the path it happened at.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<bonebank_service::Error> for Error {
    fn from(e: bonebank_service::Error) -> Self {
        use bonebank_service::Error as Frame;
        match e {
            Frame::Unauthenticated(m) => Self::Unauthenticated(m),
            Frame::Forbidden(m) => Self::Forbidden(m),
            Frame::IdentityUnavailable(m) => Self::IdentityUnavailable(m),
            Frame::BadRequest(m) => Self::BadRequest(m),
            Frame::Usage(m) => Self::Usage(m),
            Frame::Io { path, source } => Self::Io { path, source },
            Frame::Internal(m) => Self::Engine(m),
        }
    }
}

impl From<bonebank_engine::Error> for Error {
    fn from(e: bonebank_engine::Error) -> Self {
        use bonebank_engine::Error as Data;
        match e {
            Data::NoData => Self::NoData,
            Data::TooSlow(ms) => Self::TooSlow(ms),
            Data::Io { path, source } => Self::Io { path, source },
            Data::Busy(path) => Self::Busy(path),
            Data::DamagedManifest { path, message } => Self::DamagedManifest { path, message },
            Data::Usage(m) => Self::Usage(m),
            Data::Parquet(e) => Self::Parquet(e),
            Data::Arrow(e) => Self::Arrow(e),
            Data::Engine(m) => Self::Engine(m),
        }
    }
}

impl From<bonebank_import::Error> for Error {
    fn from(e: bonebank_import::Error) -> Self {
        use bonebank_import::Error as Import;
        match e {
            Import::Refused(problems) => Self::Refused(problems),
            Import::Usage(m) => Self::Usage(m),
            Import::Io { path, source } => Self::Io { path, source },
            Import::Data(e) => e.into(),
            Import::Parquet(e) => Self::Parquet(e),
            Import::Arrow(e) => Self::Arrow(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
