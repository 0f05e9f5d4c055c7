//! Integration tests of the node's data commands on real files in temp dirs.

mod cli;
mod common;
mod datadir;
mod generate;
mod roundtrip;
mod validation;
