//! Integration tests of the node's data commands on real files in temp dirs.

mod api;
mod approval;
mod audit;
mod cli;
mod common;
mod datadir;
mod generate;
mod identity;
mod ledger;
mod noise;
mod refusals;
mod roundtrip;
mod sensitivity;
mod validation;
