//! `bonebank`, the researcher's command line, and the pieces the demo and the
//! tests use too: the coordinator's HTTP [`client`], the device-flow
//! [`login`] with its token cache, and the [`render`]ing of answers as
//! tables.

pub mod cli;
pub mod client;
pub mod login;
pub mod render;
