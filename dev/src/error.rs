//! The development tools' error: their own failures, and those of the
//! services they start.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments or a directory that do not work.
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// A benchmark's or the demo's own step failed.
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Node(#[from] bonebank_node::Error),
    #[error("{0}")]
    Coordinator(#[from] bonebank_coordinator::Error),
    #[error("{0}")]
    Service(#[from] bonebank_service::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path (or what) it happened at.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<bonebank_node::import::Error> for Error {
    fn from(e: bonebank_node::import::Error) -> Self {
        Self::Node(e.into())
    }
}

impl From<bonebank_node::engine::Error> for Error {
    fn from(e: bonebank_node::engine::Error) -> Self {
        Self::Node(e.into())
    }
}
