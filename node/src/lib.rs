//! A bonebank node: one biobank site's server and admin commands: the data
//! directory, import with validation, synthetic site data, and the query
//! server that answers with differentially private aggregates. `main.rs`
//! only parses the command line and calls in here.

pub mod api;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod config;
pub mod doctor;
mod error;
pub mod export;
pub mod generate;
pub mod limits;
pub mod link;
pub mod notify;
pub mod pages;
pub mod privacy;
pub mod report;
pub mod server;
pub mod service;
pub mod store;

pub use bonebank_engine::dataset;
pub use error::{Error, Result};

/// The counting engine, a crate of its own (`engine/`).
pub use bonebank_engine as engine;
/// The import, a crate of its own (`import/`).
pub use bonebank_import as import;
pub use bonebank_import::{problems, progress};
