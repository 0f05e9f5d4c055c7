//! The bonebank coordinator: takes a researcher's question, checks it against
//! the shared language, asks the sites' nodes over mutual TLS with one
//! deadline, and merges their noisy answers into per-site values and a total
//! with a 95% interval. It signs researchers in through the browser, keeps
//! their history, and never links the node's engine: DataFusion and OpenDP
//! stay at the sites.

pub mod api;
pub mod auth;
pub mod backup;
pub mod beacon;
pub mod catalogues;
pub mod cli;
pub mod config;
pub mod doctor;
mod error;
pub mod fanout;
pub mod history;
pub mod interval;
pub mod link;
pub mod merge;
pub mod negotiator;
pub mod notify;
pub mod server;
pub mod service;
pub mod state;

pub use error::{Error, Result};
