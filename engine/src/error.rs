//! What can go wrong reading a site's data or counting over it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The site has no data yet.
    #[error("this site has not imported any data yet")]
    NoData,
    /// The question's plan is estimated, from its shape and the dataset's
    /// row count, to take longer than the limit (milliseconds).
    #[error("the question's work is estimated at more than {0} ms")]
    TooSlow(u64),
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
    /// Stored data that does not fit what it must be.
    #[error("{0}")]
    Usage(String),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Ours: a failure of the engine itself.
    #[error("query engine: {0}")]
    Engine(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A DataFusion failure. Filters are built from checked queries only, so
    /// a failure here is ours, not the user's.
    pub fn from_df(e: datafusion_common::DataFusionError) -> Self {
        Self::Engine(e.to_string())
    }

    /// Wraps an I/O error with the path it happened at.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
