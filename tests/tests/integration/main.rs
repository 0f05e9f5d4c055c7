//! The workspace's end-to-end tests, in one binary (one link, one ~2 GB
//! file instead of four): docs against the code, the synthetic sites, a
//! federated network on loopback, and identity against a real OpenID
//! Connect provider.

mod docs;
mod federation;
mod oidc;
mod sites;
