//! Telling people that something happened: email over SMTP and signed
//! webhooks. A node tells its stewards that questions wait; a coordinator
//! tells requesters that a question was decided. Messages say only what
//! happened and where to look, never a count or a data value, so that a
//! notification can go through a mail relay or a chat tool safely.
//!
//! A webhook is a `POST` of a JSON event with two headers:
//! - `X-Bonebank-Timestamp`: Unix seconds when it was sent;
//! - `X-Bonebank-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with
//!   the shared secret, of the timestamp, a `.`, and the body.
//!
//! A receiver recomputes the HMAC and refuses a timestamp older than a few
//! minutes, so that a recorded request cannot be replayed later
//! ([`verify_signature`] does both).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};

/// How to send email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server as a URL: `smtps://mail.example:465` (TLS from the
    /// start) or `smtp://mail.example:587?tls=required` (STARTTLS). Plain
    /// `smtp://` without TLS is allowed to a loopback relay only.
    pub smtp: String,
    /// The sender, e.g. `bonebank DE-LUE <bonebank@uksh.example>`.
    pub from: String,
    /// The SMTP user, where the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding that user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the server's certificate, for a
    /// relay with a certificate of the site's own CA; the public web roots
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl EmailSettings {
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.password_file, &mut self.ca]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
    }
}

/// Where to post webhook events, and the secret they are signed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// An `https://` URL (`http://` to loopback only).
    pub url: String,
    /// A file holding the shared secret (at least 16 characters).
    pub secret_file: PathBuf,
    /// Attempts per event before giving up until the next check.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_attempts() -> u32 {
    4
}

impl WebhookSettings {
    pub fn resolve(&mut self, base: &Path) {
        self.secret_file = base.join(&self.secret_file);
    }
}

/// Sends email through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    pub fn new(settings: &EmailSettings) -> Result<Self> {
        let url = reqwest::Url::parse(&settings.smtp)
            .map_err(|e| Error::Usage(format!("email.smtp {:?}: {e}", settings.smtp)))?;
        let encrypted = url.scheme() == "smtps"
            || url
                .query_pairs()
                .any(|(k, v)| k == "tls" && (v == "required" || v == "opportunistic"));
        let loopback = crate::is_loopback(&url);
        match url.scheme() {
            "smtp" | "smtps" => {}
            other => {
                return Err(Error::Usage(format!(
                    "email.smtp must be an smtps:// or smtp:// URL, not {other}://"
                )));
            }
        }
        if !encrypted && !loopback {
            return Err(Error::Usage(format!(
                "email.smtp {:?} sends without TLS; use smtps://… or add ?tls=required (plain SMTP is allowed to a loopback relay only)",
                settings.smtp
            )));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp)
            .map_err(|e| Error::Usage(format!("email.smtp {:?}: {e}", settings.smtp)))?
            .timeout(Some(Duration::from_secs(20)));
        if let (Some(ca), true) = (&settings.ca, encrypted) {
            let pem = std::fs::read(ca).map_err(Error::io(ca))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| Error::Usage(format!("email.ca {}: {e}", ca.display())))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let parameters = TlsParameters::builder(host)
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| Error::Usage(format!("email.ca {}: {e}", ca.display())))?;
            builder = builder.tls(if url.scheme() == "smtps" {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            });
        }
        if let Some(user) = &settings.user {
            let password = crate::config::read_secret(settings.password_file.as_deref())?
                .ok_or_else(|| Error::Usage("email.user needs email.password_file".into()))?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from = settings
            .from
            .parse()
            .map_err(|e| Error::Usage(format!("email.from {:?}: {e}", settings.from)))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Whether the server answers: connects, says hello, and (with TLS)
    /// checks its certificate, sending nothing.
    pub async fn test(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the server did not answer".into()),
            Err(e) => Err(crate::error_chain(&e)),
        }
    }

    /// Sends one plain-text message to each address in `to` (one message
    /// each, so that requesters never see each other's addresses).
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Result<(), String> {
        for address in to {
            let to: Mailbox = address
                .parse()
                .map_err(|e| format!("the address {address:?}: {e}"))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(body.to_owned())
                .map_err(|e| format!("the message to {address}: {e}"))?;
            self.transport
                .send(message)
                .await
                .map_err(|e| format!("sending to {address}: {}", crate::error_chain(&e)))?;
        }
        Ok(())
    }
}

/// Posts signed events to one receiver.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Vec<u8>,
    attempts: u32,
    http: reqwest::Client,
    /// The first wait between attempts; each later wait is twice the last.
    backoff: Duration,
}

impl Webhook {
    pub fn new(settings: &WebhookSettings) -> Result<Self> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| Error::Usage(format!("webhook.url {:?}: {e}", settings.url)))?;
        let loopback = crate::is_loopback(&url);
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(Error::Usage(format!(
                "webhook.url {:?} must be https:// (http:// to loopback only)",
                settings.url
            )));
        }
        let secret = crate::config::read_secret(Some(&settings.secret_file))?.unwrap_or_default();
        if secret.len() < 16 {
            return Err(Error::Usage(format!(
                "the webhook secret in {} is shorter than 16 characters",
                settings.secret_file.display()
            )));
        }
        Ok(Self {
            url,
            secret: secret.into_bytes(),
            attempts: settings.attempts.max(1),
            http: crate::oidc::issuer_client(None)?,
            backoff: Duration::from_secs(1),
        })
    }

    /// Posts `event`, signed, trying again with backoff on a failure to
    /// connect, a 5xx, a 408 or a 429. Each attempt is signed afresh, with
    /// its own timestamp.
    pub async fn post(&self, event: &serde_json::Value) -> Result<(), String> {
        let body = serde_json::to_vec(event).expect("events serialise");
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            let timestamp = crate::unix_now().to_string();
            let sent = self
                .http
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Bonebank-Timestamp", &timestamp)
                .header(
                    "X-Bonebank-Signature",
                    signature(&self.secret, &timestamp, &body),
                )
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    last = format!("the receiver answered HTTP {status}");
                    let again = status.is_server_error()
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    if !again {
                        break;
                    }
                }
                Err(e) => last = crate::error_chain(&e),
            }
        }
        Err(format!("webhook {}: {last}", self.url))
    }
}

/// The HMAC-SHA256 of the timestamp, a `.` and the body.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Bonebank-Signature` of `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// How old a webhook's timestamp may be when it arrives.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Whether a received webhook is genuine and fresh: its signature matches
/// (compared in constant time) and its timestamp is within
/// [`WEBHOOK_TOLERANCE`] of `now` (Unix seconds).
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: u64,
) -> bool {
    let Ok(sent) = timestamp.parse::<u64>() else {
        return false;
    };
    if sent.abs_diff(now) > WEBHOOK_TOLERANCE.as_secs() {
        return false;
    }
    let Some(hex_mac) = signature_header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_timestamp_and_body() {
        // Against an HMAC computed over the joined bytes in one piece.
        let secret = b"Jefe";
        let sig = signature(secret, "1700000000", b"{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(sig.len(), "sha256=".len() + 64);
    }

    #[test]
    fn a_receiver_refuses_a_changed_body_a_wrong_key_and_an_old_timestamp() {
        let secret: &[u8] = b"0123456789abcdef";
        let body: &[u8] = br#"{"event":"questions_waiting"}"#;
        let sig = signature(secret, "1700000000", body);
        let sent = "1700000000";
        // (secret, timestamp, signature, body, now, accepted)
        type Case<'a> = (&'a [u8], &'a str, &'a str, &'a [u8], u64, bool);
        let cases: [Case<'_>; 6] = [
            (secret, sent, &sig, body, 1_700_000_010, true),
            (secret, sent, &sig, b"{}", 1_700_000_010, false),
            (b"another secret!!", sent, &sig, body, 1_700_000_010, false),
            // The same request replayed ten minutes later.
            (secret, sent, &sig, body, 1_700_000_600, false),
            // A timestamp changed to look fresh breaks the signature.
            (secret, "1700000590", &sig, body, 1_700_000_600, false),
            (secret, sent, "md5=00", body, 1_700_000_010, false),
        ];
        for (i, (key, ts, sig, body, now, accepted)) in cases.into_iter().enumerate() {
            assert_eq!(
                verify_signature(key, ts, sig, body, now),
                accepted,
                "case {i}"
            );
        }
    }

    #[test]
    fn plain_smtp_is_refused_except_to_loopback() {
        let settings = |smtp: &str| EmailSettings {
            smtp: smtp.into(),
            from: "bonebank <bonebank@site.example>".into(),
            user: None,
            password_file: None,
            ca: None,
        };
        let e = Mailer::new(&settings("smtp://mail.site.example:25")).unwrap_err();
        assert!(e.to_string().contains("without TLS"), "{e}");
        Mailer::new(&settings("smtp://mail.site.example:587?tls=required")).unwrap();
        Mailer::new(&settings("smtps://mail.site.example")).unwrap();
        Mailer::new(&settings("smtp://127.0.0.1:2525")).unwrap();
        let e = Mailer::new(&settings("http://mail.site.example")).unwrap_err();
        assert!(e.to_string().contains("smtps://"), "{e}");
    }
}
