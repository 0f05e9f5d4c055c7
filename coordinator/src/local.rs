//! A whole network on one machine: synthetic data per site, a development
//! PKI, nodes on loopback ports chosen by the system, and a coordinator in
//! front. Used by `demo`, the benchmark and the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bonebank_node::config::{IdentityMode, NodeConfig};
use bonebank_node::dataset::DataDir;
use bonebank_node::generate::{self, Profile, ProfileKind, Spec};
use bonebank_node::policy::Policy;
use bonebank_node::server::{self, RunningNode};
use bonebank_node::tls::NodeTls;
use bonebank_schemas::SiteId;

use crate::Result;
use crate::config::{ClientTls, CoordinatorConfig, SiteEndpoint};
use crate::pki::{self, PkiDir};
use crate::server::RunningCoordinator;

/// The three demo sites.
pub fn demo_sites() -> Vec<SiteId> {
    [SiteId::LUEBECK, SiteId::ODENSE, SiteId::NAESTVED]
        .iter()
        .map(|s| SiteId::parse(s).expect("demo site ids are valid"))
        .collect()
}

/// Generates `donors` synthetic donors for `site` into `root/<site>/data`.
pub fn generate_site(root: &Path, site: &SiteId, donors: u64, seed: u64) -> Result<DataDir> {
    generate_site_with(root, site, donors, None, seed)
}

/// Like [`generate_site`], stopping at `max_samples` samples; sites other
/// than the demo sites get the fracture-surgery profile.
pub fn generate_site_with(
    root: &Path,
    site: &SiteId,
    donors: u64,
    max_samples: Option<u64>,
    seed: u64,
) -> Result<DataDir> {
    let profile = Profile::for_site(site, None)
        .or_else(|_| Profile::for_site(site, Some(ProfileKind::Fracture)))?;
    let spec = Spec {
        profile,
        site: site.clone(),
        donors,
        seed,
        max_samples,
    };
    let dir = DataDir::new(root.join(site.to_string()).join("data"));
    generate::into_data_dir(&spec, &dir)?;
    Ok(dir)
}

/// A node config for `site` under `root`, with mutual TLS from `pki` and the
/// development coordinator on its allow-list.
pub fn node_config(root: &Path, pki: &PkiDir, site: &SiteId, policy: Policy) -> NodeConfig {
    let base = root.join(site.to_string());
    NodeConfig {
        site_id: site.clone(),
        data_dir: base.join("data"),
        state_dir: base.join("state"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        identity: IdentityMode::Development,
        tls: Some(NodeTls {
            certificate: pki.node_cert(site),
            key: pki.node_key(site),
            client_ca: pki.ca_cert(),
            allowed_clients: vec![pki::COORDINATOR_NAME.into()],
        }),
        policy,
    }
}

/// A coordinator config for nodes at `nodes`, checked by their development
/// PKI names.
pub fn coordinator_config(
    root: &Path,
    pki: &PkiDir,
    nodes: &[(SiteId, SocketAddr)],
    deadline_ms: u64,
) -> CoordinatorConfig {
    CoordinatorConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        state_dir: root.join("coordinator"),
        deadline_ms,
        identity: IdentityMode::Development,
        tls: ClientTls {
            ca: pki.ca_cert(),
            certificate: pki.coordinator_cert(),
            key: pki.coordinator_key(),
        },
        sites: nodes
            .iter()
            .map(|(id, addr)| SiteEndpoint {
                id: id.clone(),
                url: format!("https://{addr}"),
                server_name: Some(pki::node_name(id)),
            })
            .collect(),
    }
}

/// A running network.
#[derive(Debug)]
pub struct LocalNetwork {
    pub root: PathBuf,
    pub pki: PkiDir,
    pub nodes: Vec<(NodeConfig, RunningNode)>,
    pub coordinator: RunningCoordinator,
    pub coordinator_config: CoordinatorConfig,
}

impl LocalNetwork {
    /// Starts a node per site (data must already be generated under `root`)
    /// and a coordinator. Must run inside a Tokio runtime.
    pub fn start(root: &Path, sites: &[SiteId], policy: &Policy, deadline_ms: u64) -> Result<Self> {
        Self::start_with(root, sites, |_| policy.clone(), deadline_ms)
    }

    /// Like [`LocalNetwork::start`], with each site's own policy.
    pub fn start_with(
        root: &Path,
        sites: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
    ) -> Result<Self> {
        let pki = PkiDir::new(root.join("pki"));
        if !pki.ca_cert().exists() {
            pki.init(sites)?;
        }
        let mut nodes = Vec::new();
        for site in sites {
            let config = node_config(root, &pki, site, policy(site));
            let running = server::start(&config, server::state(&config)?)?;
            nodes.push((config, running));
        }
        let addrs: Vec<_> = nodes
            .iter()
            .map(|(c, n)| (c.site_id.clone(), n.addr))
            .collect();
        let coordinator_config = coordinator_config(root, &pki, &addrs, deadline_ms);
        let coordinator = crate::server::start(&coordinator_config)?;
        Ok(Self {
            root: root.to_owned(),
            pki,
            nodes,
            coordinator,
            coordinator_config,
        })
    }
}
