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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    /// The loopback rule lets development settings through on this machine
    /// only: a name that merely starts like one is not loopback.
    #[test]
    fn only_this_machines_addresses_are_loopback() {
        for here in [
            "http://localhost:7109",
            "http://127.0.0.1:7100/x",
            "http://127.8.9.10",
            "http://[::1]:8080",
        ] {
            assert!(is_loopback(&url(here)), "{here}");
        }
        for away in [
            "http://localhost.example.org",
            "http://0.0.0.0:7100",
            "http://10.0.0.1",
            "https://login.example.org",
            "http://[::2]",
            "file:///etc/passwd",
        ] {
            assert!(!is_loopback(&url(away)), "{away}");
        }
    }

    #[test]
    fn an_error_chain_names_every_source_on_one_line() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("discovery failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&e), "discovery failed: connection refused");
    }

    #[test]
    fn a_missing_or_unreadable_ca_names_the_setting() {
        let e = issuer_client(Some(Path::new("/nonexistent/login-ca.crt"))).unwrap_err();
        assert!(e.starts_with("oidc.ca /nonexistent/login-ca.crt"), "{e}");
        issuer_client(None).unwrap();
    }

    /// The device and end-session endpoints, which the core metadata
    /// leaves out, are read from discovery.
    #[test]
    fn the_extra_discovery_fields_are_read() {
        let extra: discovery::ExtraMetadata = serde_json::from_value(serde_json::json!({
            "device_authorization_endpoint": "https://login.example.org/device",
            "end_session_endpoint": "https://login.example.org/logout",
            "issuer": "https://login.example.org"
        }))
        .unwrap();
        assert_eq!(
            extra.device_authorization_endpoint.unwrap().as_str(),
            "https://login.example.org/device"
        );
        assert_eq!(
            extra.end_session_endpoint.as_deref(),
            Some("https://login.example.org/logout")
        );
        let none: discovery::ExtraMetadata = serde_json::from_str("{}").unwrap();
        assert!(none.device_authorization_endpoint.is_none());
    }
}
