//! Benchmarks on this machine: one node ([`node`]), an import, the
//! network of nodes and a coordinator ([`network`]), and the catalogue
//! ([`catalogue`]).

pub mod catalogue;
pub mod network;
pub mod node;
pub mod soak;
