//! The frame every bonebank HTTP service stands in, node and coordinator
//! alike: who is calling ([`identity`]: the bearer token checked by an
//! [`oidc::TokenVerifier`], or a browser's session ([`browser`]), the
//! [`Caller`] and [`Steward`] extractors), TLS
//! ([`tls`]), errors in the wire shape ([`error`]), config files
//! ([`config`]) and a running server's handle ([`server`]). The OpenID
//! Connect client side, which the CLI shares, is the `bonebank-login`
//! crate, re-exported here. Nothing here knows about data or noise.

pub mod backup;
pub mod browser;
pub mod config;
pub mod doctor;
pub mod error;
pub mod grant;
pub mod identity;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod server;
pub mod state;
pub mod tls;

pub use bonebank_login::{discovery, error_chain, is_loopback, unix_now};
pub use error::{Error, Result};
pub use identity::{Caller, Steward, StewardedSite};
pub use server::RunningServer;

/// Text made safe to put into HTML, in element content or a quoted
/// attribute.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Logs to stderr, filtered by `BONEBANK_LOG` (e.g. `info`,
/// `bonebank_node=debug`), or by `default` when it is not set. Every
/// bonebank command calls this first.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BONEBANK_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}
