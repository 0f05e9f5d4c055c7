//! `bonebank-coordinator doctor`: the config, the coordinator's
//! certificate, the CA of the nodes and the grant key, the identity
//! provider, every site it reaches (and the site's clock), free space and
//! the history's version. One line per check; non-zero exit on any failure.

use std::time::Duration;

pub use bonebank_service::doctor::Finding;
use bonebank_service::doctor::{self as shared, fail, ok};
use bonebank_service::tls;

use crate::config::CoordinatorConfig;

/// The history database's schema version (see `History::open`).
pub const HISTORY_VERSION: u32 = 2;

/// Every check of a coordinator whose config loaded.
pub async fn run(config: &CoordinatorConfig) -> Vec<Finding> {
    let mut out = vec![ok(
        "config",
        format!("{} sites, the config loads", config.sites.len()),
    )];
    out.push(shared::certificate(
        "certificate",
        &config.tls.certificate,
        &config.tls.key,
    ));
    out.push(shared::ca(
        "nodes' CA",
        &config.tls.ca,
        "the CA that signs the nodes' certificates",
    ));
    out.push(match std::fs::read_to_string(&config.tls.grant_key) {
        Ok(pem) if pem.contains("PRIVATE KEY") => ok("grant key", config.tls.grant_key.display().to_string()),
        Ok(_) | Err(_) => fail(
            "grant key",
            format!(
                "{} is not a PEM private key; make one with `openssl genpkey -algorithm ed25519` and give each node its public key",
                config.tls.grant_key.display()
            ),
        ),
    });
    out.push(shared::oidc(&config.oidc).await);
    for site in &config.sites {
        out.extend(reach(config, site).await);
    }
    if let Some(notify) = &config.notify {
        out.push(shared::email("notices (email)", &notify.email).await);
    }
    out.push(shared::disk("disk (state)", &config.state_dir));
    let db = config.history_db();
    out.push(match shared::state_version("state", &db, HISTORY_VERSION) {
        Err(finding) => finding,
        Ok(None) => ok("state", format!("{} is made on first start", db.display())),
        Ok(Some((_, version))) => ok(
            "state",
            format!("{} (history version {version})", db.display()),
        ),
    });
    out
}

/// A site reached as questions reach it (the coordinator's certificate,
/// the nodes' CA, the name its certificate must carry), and its clock.
async fn reach(config: &CoordinatorConfig, site: &crate::config::SiteEndpoint) -> Vec<Finding> {
    let check = format!("site {}", site.id);
    let Some(url) = &site.url else {
        return vec![ok(
            check,
            "connects out to [link]; whether it is connected shows in GET /v1/sites while the coordinator runs",
        )];
    };
    let client = tls::client_config_for(&tls::ClientFiles {
        ca: &config.tls.ca,
        extra_ca: None,
        certificate: &config.tls.certificate,
        key: &config.tls.key,
        server_name: site.server_name.as_deref(),
    })
    .map_err(|e| e.to_string())
    .and_then(|tls| {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())
    });
    let client = match client {
        Ok(c) => c,
        Err(e) => return vec![fail(check, e)],
    };
    let health = format!("{}/health", url.trim_end_matches('/'));
    match client
        .get(&health)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Err(e) => vec![fail(
            check,
            format!(
                "{health}: {e}; check the site's url and server_name, that its node runs, and that the firewall lets the coordinator in (or use outbound mode)"
            ),
        )],
        Ok(r) if !r.status().is_success() => {
            vec![fail(check, format!("{health}: HTTP {}", r.status()))]
        }
        Ok(r) => {
            let date = r
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|d| d.to_str().ok())
                .map(str::to_owned);
            vec![
                ok(check.clone(), format!("{url} answers over mutual TLS")),
                shared::clock(
                    &format!("clock ({})", site.id),
                    date.as_deref(),
                    &format!("{}'s", site.id),
                ),
            ]
        }
    }
}
