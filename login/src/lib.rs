//! The OpenID Connect client side, shared by the researcher's CLI (device
//! flow) and the services' browser logins (authorization code): discovery
//! ([`discovery`]), the HTTP client that talks to an identity provider
//! ([`issuer_client`]), which addresses count as this machine
//! ([`is_loopback`]), and the clock tokens and sessions are timed by. It
//! holds no server code, so the CLI links no web framework.

pub mod discovery;

use std::path::Path;
use std::time::Duration;

pub use discovery::error_chain;

/// An HTTP client for talking to an identity provider: no redirects (the
/// `openidconnect` docs warn that following them opens up SSRF), short
/// timeouts, the public web roots plus `ca` if given. The error says what
/// went wrong, naming the setting `oidc.ca`.
pub fn issuer_client(ca: Option<&Path>) -> Result<reqwest::Client, String> {
    install_default_provider();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("oidc.ca {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("oidc.ca {}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| format!("HTTP client for the identity provider: {e}"))
}

/// Makes ring the process-wide default TLS provider, for HTTP clients built
/// without a TLS config of their own (reqwest needs one even for plain
/// HTTP). Safe to call more than once.
pub fn install_default_provider() {
    let _ =
        rustls::crypto::CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}

/// Whether `url` names this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Seconds since the Unix epoch: the one clock behind sessions, ledgers,
/// tickets and tokens' lifetimes.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
