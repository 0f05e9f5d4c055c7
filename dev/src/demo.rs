//! `bonebank-dev demo`: the whole network on this machine in one
//! command.

use std::path::PathBuf;
use std::time::Duration;

use bonebank_schemas::wire::FederatedRequest;

use crate::local::{self, LocalNetwork};
use crate::{Error, Result};
use bonebank_cli::client::Client;
use bonebank_cli::render;

/// The question the demo asks first.
pub const EXAMPLE_SQL: &str = "SELECT sample_type, COUNT(DISTINCT donor_id) AS donors, COUNT(*) AS samples \
FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 AND diagnosis LIKE 'S72%' \
GROUP BY sample_type";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where data, certificates and state go; a temporary directory if absent.
    pub dir: Option<PathBuf>,
    pub donors: u64,
    pub deadline_ms: u64,
    /// Sites whose nodes connect out to the coordinator.
    pub outbound: Vec<bonebank_schemas::SiteId>,
}

pub async fn run(options: DemoOptions) -> Result<()> {
    let (root, _tmp) = match &options.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d).map_err(Error::io(d))?.next().is_some() {
                return Err(Error::Usage(format!(
                    "{} is not empty; give the demo a new directory",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d).map_err(Error::io(d))?;
            (d.clone(), None)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("bonebank-demo-")
                .tempdir()
                .map_err(Error::io(std::env::temp_dir()))?;
            (tmp.path().to_owned(), Some(tmp))
        }
    };
    println!("bonebank demo in {}", root.display());
    let sites = local::demo_sites();
    if let Some(other) = options.outbound.iter().find(|s| !sites.contains(s)) {
        return Err(Error::Usage(format!(
            "--outbound {other}: the demo's sites are {}",
            sites
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (i, site) in sites.iter().enumerate() {
        println!("  generating {} donors for {site} …", options.donors);
        let (root, site) = (root.clone(), site.clone());
        let donors = options.donors;
        tokio::task::spawn_blocking(move || {
            local::generate_site(&root, &site, donors, 1 + i as u64)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    }
    println!(
        "  creating a development CA and certificates in {}",
        root.join("pki").display()
    );
    let network = LocalNetwork::start_mixed(
        &root,
        &sites,
        &options.outbound,
        local::demo_policy,
        options.deadline_ms,
    )
    .await?;
    for (config, node) in &network.nodes {
        match &config.outbound {
            Some(out) => println!(
                "  node {} connects out to {} (outbound mode: mutual TLS, no inbound port needed)",
                config.site_id, out.coordinator
            ),
            None => println!("  node {} on {} (mutual TLS)", config.site_id, node.url()),
        }
    }
    let url = network.coordinator.url();
    println!();
    let idp = network
        .idp
        .as_ref()
        .expect("the demo runs the development provider");
    println!(
        "  DEVELOPMENT identity provider on {} (anyone here can sign in as a demo user; never use it at a site)",
        idp.issuer()
    );
    println!("  demo users:");
    for user in idp.users() {
        let of = if user.sites.is_empty() {
            format!("project {}", user.project.as_deref().unwrap_or("-"))
        } else {
            format!("steward of {}", user.sites.join(", "))
        };
        println!("    {:<16} {} ({of})", user.name, user.role);
    }
    println!();
    println!("coordinator: {url}");
    println!("  researchers' app: open {url}/ in a browser and sign in as alice or ingrid");
    println!();
    println!("stewards' pages (sign in as the site's steward):");
    for (config, node) in &network.nodes {
        if let Some(pages) = &node.steward_pages {
            println!("  {}: {}/", config.site_id, pages.url());
        }
    }
    println!();
    println!("Ask it from another terminal:");
    println!("  cargo run -q --bin bonebank -- login --coordinator {url} --user alice");
    println!("  cargo run -q --bin bonebank -- query --coordinator {url} --sql \"{EXAMPLE_SQL}\"");
    println!("  cargo run -q --bin bonebank -- sites --coordinator {url}");
    println!();
    println!("The example query, asked as alice:");
    let alice = idp
        .users()
        .iter()
        .find(|u| u.name == "alice")
        .expect("alice is a demo user");
    let client =
        Client::new(&url, idp.token_for(alice)).map_err(|e| Error::Internal(e.to_string()))?;
    // Each site measures its catalogue when the coordinator first asks for
    // it; the example waits for them, so that it finds them (it asks fresh
    // all the same: its age range, 50 to 70, cuts the catalogue's bands).
    if let Err(e) = network.wait_for_catalogues(Duration::from_secs(120)).await {
        println!("({e})");
    }
    let request = FederatedRequest {
        sql: Some(EXAMPLE_SQL.into()),
        query: None,
        loss: None,
        sites: None,
        fresh: false,
        purpose: None,
    };
    match client.query(&request).await {
        Ok(result) => println!("{}", render::result(&result)),
        Err(e) => println!("the example query failed: {e}"),
    }
    println!("Running until Ctrl-C.");
    tokio::signal::ctrl_c()
        .await
        .map_err(Error::io("signal handler"))?;
    println!("stopping");
    network.coordinator.stop().await;
    for (_, node) in network.nodes {
        node.stop().await;
    }
    Ok(())
}
