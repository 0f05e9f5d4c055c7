//! What can go wrong in an import. A refused input (the operator's file) is
//! kept apart from failures of the machine, so each gets the message its
//! reader can act on.

use std::path::PathBuf;

use crate::problems::Problems;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input had problems; nothing was changed.
    #[error("{0}")]
    Refused(Problems),
    /// The command was given inputs that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data directory could not take the new version.
    #[error(transparent)]
    Data(#[from] bonebank_engine::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// Wraps an I/O error with the path it happened at.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
