//! A bonebank node: one biobank site's server and admin commands. This crate
//! holds the data directory, import with validation, export and synthetic
//! site data; `main.rs` only parses the command line and calls in here.

pub mod bench;
pub mod cli;
pub mod dataset;
mod error;
pub mod export;
pub mod generate;
pub mod import;
mod progress;

pub use error::{Error, Result};
