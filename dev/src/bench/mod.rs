//! Benchmarks on this machine: one node ([`node`]), an import, and the
//! network of nodes and a coordinator ([`network`]).

pub mod network;
pub mod node;
pub mod soak;
