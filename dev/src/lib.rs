//! bonebank's development tools, none of which runs at a real site: the
//! one-command [`demo`], a whole network on one machine ([`local`], used by
//! the demo, the benchmarks and the end-to-end tests), the development
//! [`pki`] and identity provider ([`devidp`]), the accuracy evaluation
//! ([`eval`]) and the benchmarks ([`bench`]).

pub mod bench;
pub mod catalogue_eval;
pub mod cli;
pub mod demo;
pub mod devidp;
mod error;
pub mod eval;
pub mod local;
pub mod pki;
pub mod truth;

pub use error::{Error, Result};
