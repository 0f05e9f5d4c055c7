//! `bonebank-node doctor`: the checks a site's operator runs before calling
//! for help. Each finding is one line that says what is wrong and what to
//! do; the command exits non-zero when any check fails.

use std::path::Path;
use std::time::Duration;

use bonebank_engine::dataset::DataDir;
use rusqlite::{Connection, OpenFlags};

use crate::config::NodeConfig;
use crate::store::STATE_VERSION;

/// A certificate that ends within this many days is a problem now.
const RENEW_DAYS: i64 = 30;
/// Less free space than this (bytes) on the data or state file system.
const MIN_FREE: u64 = 1 << 30;
/// A clock further than this from the coordinator's (seconds): tokens and
/// grants are checked against the time.
const MAX_SKEW: i64 = 60;

/// One check's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
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

fn ok(check: &'static str, says: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: true,
        says: says.into(),
    }
}

fn fail(check: &'static str, says: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: false,
        says: says.into(),
    }
}

/// Every check of a node whose config loaded.
pub async fn run(config: &NodeConfig) -> Vec<Finding> {
    let mut out = vec![ok(
        "config",
        format!("site {}, the config loads", config.site_id),
    )];
    out.extend(certificates(config));
    out.push(oidc(config).await);
    out.extend(outbound(config).await);
    for (check, dir) in [
        ("disk (data)", &config.data_dir),
        ("disk (state)", &config.state_dir),
    ] {
        out.push(disk(check, dir));
    }
    out.push(data(config));
    out.push(state(config));
    out
}

fn day(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// The node's certificate (readable, matching its key, valid for more than
/// 30 days, with DNS names), the CA it trusts and the grant key.
fn certificates(config: &NodeConfig) -> Vec<Finding> {
    let Some(tls) = &config.tls else {
        return vec![ok(
            "certificates",
            "no [tls]: plain HTTP, which the node allows on loopback only",
        )];
    };
    let mut out = Vec::new();
    match bonebank_service::tls::server_config(tls) {
        Err(e) => out.push(fail(
            "certificate",
            format!("{e}; install the site's certificate chain and its key (PEM) where [tls] says"),
        )),
        Ok(_) => {
            let chain =
                bonebank_service::tls::read_certificates(&tls.certificate).unwrap_or_default();
            let leaf = &chain[0];
            let now = chrono::Utc::now().timestamp();
            let ends = bonebank_service::tls::reload::not_after(leaf).unwrap_or(0);
            let days = (ends - now) / 86_400;
            let names = bonebank_service::tls::reload::dns_names(leaf);
            if let Err(e) = bonebank_service::tls::check_validity(leaf, &tls.certificate) {
                out.push(fail("certificate", e.to_string()));
            } else if days < RENEW_DAYS {
                out.push(fail(
                    "certificate",
                    format!(
                        "{} ends on {} (in {days} days); renew it now (the node picks up a renewed one without a restart)",
                        tls.certificate.display(),
                        day(ends)
                    ),
                ));
            } else if names.is_empty() {
                out.push(fail(
                    "certificate",
                    format!(
                        "{} names no DNS name (subjectAltName); ask for one with the name the coordinator reaches this node by",
                        tls.certificate.display()
                    ),
                ));
            } else {
                out.push(ok(
                    "certificate",
                    format!(
                        "{} certificate(s) in the chain, for {}, valid until {} ({days} days), matching its key",
                        chain.len(),
                        names.join(", "),
                        day(ends)
                    ),
                ));
            }
        }
    }
    out.push(match bonebank_service::tls::read_roots(&tls.client_ca) {
        Ok(roots) if !roots.is_empty() => ok(
            "trusted CA",
            format!(
                "{}: {} certificate(s)",
                tls.client_ca.display(),
                roots.len()
            ),
        ),
        Ok(_) => fail(
            "trusted CA",
            format!(
                "{} holds no certificate; put the coordinator's CA there (PEM)",
                tls.client_ca.display()
            ),
        ),
        Err(e) => fail(
            "trusted CA",
            format!("{e}; put the coordinator's CA there (PEM)"),
        ),
    });
    out.push(match std::fs::read_to_string(&tls.coordinator_grant_key) {
        Ok(pem) if pem.contains("PUBLIC KEY") => ok("grant key", tls.coordinator_grant_key.display().to_string()),
        Ok(_) | Err(_) => fail(
            "grant key",
            format!(
                "{} is not a PEM public key; ask the coordinator's operator for its grant key (PEM)",
                tls.coordinator_grant_key.display()
            ),
        ),
    });
    out
}

/// The identity provider's discovery document and keys.
async fn oidc(config: &NodeConfig) -> Finding {
    const CHECK: &str = "identity provider";
    let issuer = config.oidc.issuer.trim_end_matches('/');
    let client = match bonebank_service::oidc::issuer_client(config.oidc.ca.as_deref()) {
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

/// In outbound mode: the coordinator's link address, reached as the link
/// does, and this clock against the coordinator's.
async fn outbound(config: &NodeConfig) -> Vec<Finding> {
    match crate::link::reach(config).await {
        Ok(None) => Vec::new(),
        Err(e) => vec![fail(
            "coordinator",
            format!(
                "{e}; check [outbound], the proxy, and that the firewall lets this node out to it"
            ),
        )],
        Ok(Some((url, skew))) => {
            let mut out = vec![ok("coordinator", format!("{url} answers over mutual TLS"))];
            out.push(match skew {
                Some(s) if s.abs() > MAX_SKEW => fail(
                    "clock",
                    format!("{s} s from the coordinator's; set up time synchronisation (e.g. systemd-timesyncd or chrony)"),
                ),
                Some(s) => ok("clock", format!("{s} s from the coordinator's")),
                None => fail("clock", "the coordinator sent no Date to compare with"),
            });
            out
        }
    }
}

/// Free space on a directory's file system.
fn disk(check: &'static str, dir: &Path) -> Finding {
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
                    format!("{says}; free space: the node refuses answers it cannot record"),
                )
            } else {
                ok(check, says)
            }
        }
    }
}

/// The data directory: a current dataset version whose files are all there
/// with the checksums the manifest records.
fn data(config: &NodeConfig) -> Finding {
    const CHECK: &str = "data";
    let dir = DataDir::new(&config.data_dir);
    let manifest = match dir.manifest() {
        Ok(m) => m,
        Err(e) => return fail(CHECK, format!("{e}")),
    };
    let Some(version) = manifest.current else {
        return fail(
            CHECK,
            format!(
                "{} holds no dataset yet; import the site's export (bonebank-node import)",
                config.data_dir.display()
            ),
        );
    };
    for (table, file) in &version.tables {
        let path = config.data_dir.join("tables").join(&file.file);
        match bonebank_service::backup::sha256(&path) {
            Err(e) => {
                return fail(
                    CHECK,
                    format!("{e}; restore the data directory from a backup, or import again"),
                );
            }
            Ok(sum) if sum != file.sha256 => {
                return fail(
                    CHECK,
                    format!(
                        "{} ({table}) does not match its checksum in the manifest; restore the data directory from a backup, or import again",
                        path.display()
                    ),
                );
            }
            Ok(_) => {}
        }
    }
    ok(
        CHECK,
        format!(
            "dataset version {} ({} tables, checksums match)",
            version.id,
            version.tables.len()
        ),
    )
}

/// The state database: its version and its audit chain.
fn state(config: &NodeConfig) -> Finding {
    const CHECK: &str = "state";
    let db = config.state_db();
    if !db.exists() {
        return ok(CHECK, format!("{} is made on first start", db.display()));
    }
    let conn = match Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                CHECK,
                format!("{}: {e}; restore it from a backup", db.display()),
            );
        }
    };
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap_or(u32::MAX);
    if version > STATE_VERSION {
        return fail(
            CHECK,
            format!(
                "{} is of state version {version}, newer than this bonebank's {STATE_VERSION}; run the bonebank that wrote it",
                db.display()
            ),
        );
    }
    match crate::audit::verify(&conn) {
        Ok(Ok(intact)) => ok(
            CHECK,
            format!(
                "{} (state version {version}{}): audit log of {} entries intact, head {}",
                db.display(),
                if version < STATE_VERSION {
                    ", upgraded on the next start"
                } else {
                    ""
                },
                intact.entries,
                intact.head
            ),
        ),
        Ok(Err(broken)) => fail(
            CHECK,
            format!(
                "{broken}; keep the file as it is for the data-protection officer, and restore the last backup whose audit log verifies"
            ),
        ),
        Err(e) => fail(CHECK, format!("{}: {e}", db.display())),
    }
}
