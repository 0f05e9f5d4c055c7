//! The bonebank coordinator: takes a researcher's question, checks it against
//! the shared schema, asks the sites' nodes over mutual TLS with one
//! deadline, and merges their noisy answers into per-site values and a total
//! with a 95% interval. Also the development PKI, the one-command demo and
//! the client behind the `bonebank` CLI.

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
mod error;
pub mod eval;
pub mod fanout;
pub mod history;
pub mod interval;
pub mod local;
pub mod login;
pub mod merge;
pub mod oidc;
pub mod render;
pub mod server;
pub mod service;

pub use bonebank_node::pki;
pub use error::{Error, Result};
