//! The checks node and coordinator share in `doctor`: a finding per check,
//! one line each, saying what is wrong and what to do. Each service adds
//! its own (the node its data and audit log, the coordinator its sites).

use std::path::Path;
use std::time::Duration;

use crate::oidc::OidcSettings;

/// A certificate that ends within this many days is a problem now.
pub const RENEW_DAYS: i64 = 30;
/// Less free space than this (bytes) on a data or state file system.
pub const MIN_FREE: u64 = 1 << 30;
/// A clock further than this from another service's (seconds): tokens and
/// grants are checked against the time.
pub const MAX_SKEW: i64 = 60;

/// One check's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    /// What was found, and for a problem what to do.
    pub says: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}: {}", self.check, self.says)
    }
}

pub fn ok(check: impl Into<String>, says: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        ok: true,
        says: says.into(),
    }
}

pub fn fail(check: impl Into<String>, says: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        ok: false,
        says: says.into(),
    }
}

/// Prints the findings, one line each; an error naming how many failed.
pub fn report(findings: &[Finding]) -> crate::Result<()> {
    for f in findings {
        println!("{f}");
    }
    match findings.iter().filter(|f| !f.ok).count() {
        0 => Ok(()),
        n => Err(crate::Error::Usage(format!(
            "{n} of {} checks failed",
            findings.len()
        ))),
    }
}

fn day(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A service's own certificate: its chain and key load as the service
/// loads them, it carries DNS names, and it is valid for more than 30 days.
pub fn certificate(check: &str, certificate: &Path, key: &Path) -> Finding {
    if let Err(e) = crate::tls::reload::OwnCert::new(certificate, key) {
        return fail(
            check,
            format!("{e}; install the certificate chain and its key (PEM) where the config says"),
        );
    }
    let chain = crate::tls::read_certificates(certificate).unwrap_or_default();
    let Some(leaf) = chain.first() else {
        return fail(
            check,
            format!("{} holds no certificate", certificate.display()),
        );
    };
    if let Err(e) = crate::tls::check_validity(leaf, certificate) {
        return fail(check, e.to_string());
    }
    let ends = crate::tls::reload::not_after(leaf).unwrap_or(0);
    let days = (ends - chrono::Utc::now().timestamp()) / 86_400;
    let names = crate::tls::reload::dns_names(leaf);
    if days < RENEW_DAYS {
        fail(
            check,
            format!(
                "{} ends on {} (in {days} days); renew it now (it is picked up without a restart)",
                certificate.display(),
                day(ends)
            ),
        )
    } else if names.is_empty() {
        fail(
            check,
            format!(
                "{} names no DNS name (subjectAltName); ask for one with the name it is reached by",
                certificate.display()
            ),
        )
    } else {
        ok(
            check,
            format!(
                "{} certificate(s) in the chain, for {}, valid until {} ({days} days), matching its key",
                chain.len(),
                names.join(", "),
                day(ends)
            ),
        )
    }
}

/// A CA file: readable, with at least one certificate.
pub fn ca(check: &str, path: &Path, whose: &str) -> Finding {
    match crate::tls::read_roots(path) {
        Ok(roots) if !roots.is_empty() => ok(
            check,
            format!("{}: {} certificate(s)", path.display(), roots.len()),
        ),
        Ok(_) => fail(
            check,
            format!(
                "{} holds no certificate; put {whose} there (PEM)",
                path.display()
            ),
        ),
        Err(e) => fail(check, format!("{e}; put {whose} there (PEM)")),
    }
}

/// The identity provider's discovery document (for the configured issuer)
/// and its signing keys, fetched as the service fetches them.
pub async fn oidc(settings: &OidcSettings) -> Finding {
    const CHECK: &str = "identity provider";
    let issuer = settings.issuer.trim_end_matches('/');
    let client = match crate::oidc::issuer_client(settings.ca.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(CHECK, e.to_string()),
    };
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("{url}: HTTP {}", r.status()));
            }
            r.json::<serde_json::Value>()
                .await
                .map_err(|e| format!("{url}: {e}"))
        }
    };
    let discovery = match get(format!("{issuer}/.well-known/openid-configuration")).await {
        Ok(d) => d,
        Err(e) => {
            return fail(
                CHECK,
                format!(
                    "{e}; check oidc.issuer and that this machine reaches it (proxy, firewall, oidc.ca)"
                ),
            );
        }
    };
    if discovery["issuer"]
        .as_str()
        .map(|i| i.trim_end_matches('/'))
        != Some(issuer)
    {
        return fail(
            CHECK,
            format!(
                "the provider calls itself {} but oidc.issuer is {issuer}; write the provider's own issuer in the config",
                discovery["issuer"]
            ),
        );
    }
    let Some(jwks) = discovery["jwks_uri"].as_str() else {
        return fail(
            CHECK,
            "the discovery document has no jwks_uri; ask the provider's operator",
        );
    };
    match get(jwks.to_owned()).await {
        Ok(keys) if keys["keys"].as_array().is_some_and(|k| !k.is_empty()) => ok(
            CHECK,
            format!(
                "{issuer}: discovery and {} signing key(s)",
                keys["keys"].as_array().map_or(0, Vec::len)
            ),
        ),
        Ok(_) => fail(
            CHECK,
            format!("{jwks} lists no keys; ask the provider's operator"),
        ),
        Err(e) => fail(
            CHECK,
            format!("{e}; the provider's keys must be reachable from this machine"),
        ),
    }
}

/// How far this clock is from another service's `Date` header (seconds;
/// positive: this clock is ahead), as a finding.
pub fn clock(check: &str, date: Option<&str>, whose: &str) -> Finding {
    let skew = date
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|d| chrono::Utc::now().timestamp() - d.timestamp());
    match skew {
        Some(s) if s.abs() > MAX_SKEW => fail(
            check,
            format!(
                "{s} s from {whose}; set up time synchronisation (e.g. systemd-timesyncd or chrony)"
            ),
        ),
        Some(s) => ok(check, format!("{s} s from {whose}")),
        None => fail(check, format!("{whose} sent no Date to compare with")),
    }
}

/// Free space on a directory's file system.
pub fn disk(check: &str, dir: &Path) -> Finding {
    match rustix::fs::statvfs(dir) {
        Err(e) => fail(
            check,
            format!(
                "{}: {e}; create it, or fix the path in the config",
                dir.display()
            ),
        ),
        Ok(fs) => {
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            let total = fs.f_blocks.saturating_mul(fs.f_frsize).max(1);
            let gib = free as f64 / f64::from(1u32 << 30);
            let says = format!(
                "{}: {gib:.1} GiB free ({:.0}%)",
                dir.display(),
                100.0 * free as f64 / total as f64
            );
            if free < MIN_FREE {
                fail(
                    check,
                    format!("{says}; free space: the service refuses answers it cannot record"),
                )
            } else {
                ok(check, says)
            }
        }
    }
}

/// A state database's schema version against what this bonebank reads;
/// the open database where it is readable and not newer.
pub fn state_version(
    check: &str,
    db: &Path,
    current: u32,
) -> Result<Option<(rusqlite::Connection, u32)>, Finding> {
    if !db.exists() {
        return Ok(None);
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| {
                fail(
                    check,
                    format!("{}: {e}; restore it from a backup", db.display()),
                )
            })?;
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| {
            fail(
                check,
                format!("{}: {e}; restore it from a backup", db.display()),
            )
        })?;
    if version > current {
        return Err(fail(
            check,
            format!(
                "{} is of state version {version}, newer than this bonebank's {current}; run the bonebank that wrote it",
                db.display()
            ),
        ));
    }
    Ok(Some((conn, version)))
}

/// The mail server notices go through: it answers, with TLS where asked
/// (nothing is sent).
pub async fn email(check: &str, settings: &crate::notify::EmailSettings) -> Finding {
    let mailer = match crate::notify::Mailer::new(settings) {
        Ok(m) => m,
        Err(e) => return fail(check, e.to_string()),
    };
    match mailer.test().await {
        Ok(()) => ok(check, format!("{} answers", settings.smtp)),
        Err(why) => fail(
            check,
            format!(
                "{}: {why}; check the address, the port, TLS and the firewall",
                settings.smtp
            ),
        ),
    }
}

/// The webhook's settings: an address it may post to and a secret that
/// reads (nothing is posted: a test event would reach people).
pub fn webhook(check: &str, settings: &crate::notify::WebhookSettings) -> Finding {
    match crate::notify::Webhook::new(settings) {
        Ok(_) => ok(
            check,
            format!("{} with a secret of 16 characters or more", settings.url),
        ),
        Err(e) => fail(check, e.to_string()),
    }
}
