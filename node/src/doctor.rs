//! `bonebank-node doctor`: the checks a site's operator runs before calling
//! for help. Each finding is one line that says what is wrong and what to
//! do; the command exits non-zero when any check fails. The checks node
//! and coordinator share are in `bonebank_service::doctor`.

use bonebank_engine::dataset::DataDir;
pub use bonebank_service::doctor::Finding;
use bonebank_service::doctor::{self as shared, fail, ok};

use crate::config::NodeConfig;
use crate::store::STATE_VERSION;

/// Every check of a node whose config loaded.
pub async fn run(config: &NodeConfig) -> Vec<Finding> {
    let mut out = vec![ok(
        "config",
        format!("site {}, the config loads", config.site_id),
    )];
    match &config.tls {
        None => out.push(ok(
            "certificates",
            "no [tls]: plain HTTP, which the node allows on loopback only",
        )),
        Some(tls) => {
            out.push(shared::certificate(
                "certificate",
                &tls.certificate,
                &tls.key,
            ));
            out.push(shared::ca(
                "trusted CA",
                &tls.client_ca,
                "the coordinator's CA",
            ));
            out.push(match std::fs::read_to_string(&tls.coordinator_grant_key) {
                Ok(pem) if pem.contains("PUBLIC KEY") => {
                    ok("grant key", tls.coordinator_grant_key.display().to_string())
                }
                Ok(_) | Err(_) => fail(
                    "grant key",
                    format!(
                        "{} is not a PEM public key; ask the coordinator's operator for its grant key (PEM)",
                        tls.coordinator_grant_key.display()
                    ),
                ),
            });
        }
    }
    out.push(shared::oidc(&config.oidc).await);
    match crate::link::reach(config).await {
        Ok(None) => {}
        Err(e) => out.push(fail(
            "coordinator",
            format!(
                "{e}; check [outbound], the proxy, and that the firewall lets this node out to it"
            ),
        )),
        Ok(Some((url, date))) => {
            out.push(ok("coordinator", format!("{url} answers over mutual TLS")));
            out.push(shared::clock("clock", date.as_deref(), "the coordinator's"));
        }
    }
    if let Some(notify) = &config.notify {
        if let Some(email) = &notify.email {
            out.push(shared::email("notices (email)", email).await);
        }
        if let Some(webhook) = &notify.webhook {
            out.push(shared::webhook("notices (webhook)", webhook));
        }
    }
    out.push(shared::disk("disk (data)", &config.data_dir));
    out.push(shared::disk("disk (state)", &config.state_dir));
    out.push(data(config));
    out.push(state(config));
    out
}

/// The data directory: a current dataset version whose files are all there
/// with the checksums the manifest records.
fn data(config: &NodeConfig) -> Finding {
    const CHECK: &str = "data";
    let manifest = match DataDir::new(&config.data_dir).manifest() {
        Ok(m) => m,
        Err(e) => return fail(CHECK, e.to_string()),
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
    let (conn, version) = match shared::state_version(CHECK, &db, STATE_VERSION) {
        Err(finding) => return finding,
        Ok(None) => return ok(CHECK, format!("{} is made on first start", db.display())),
        Ok(Some(open)) => open,
    };
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
