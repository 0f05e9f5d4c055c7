//! Integration tests of the node's data commands on real files in temp dirs.

mod api;
mod approval;
mod audit;
mod backup;
mod catalogue;
mod cli;
mod common;
mod datadir;
mod doctor;
mod fhir;
mod generate;
mod identity;
mod ledger;
mod limits;
mod noise;
mod policy_paths;
mod refusals;
mod roundtrip;
mod sample_bounds;
mod sensitivity;
mod upgrade;
mod validation;
