//! A whole network on one machine: synthetic data per site, a development
//! PKI, nodes on loopback ports chosen by the system, and a coordinator in
//! front. Used by `demo`, the benchmark and the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::devidp::{self, DevProvider, DevUser};
use bonebank_node::config::{NodeConfig, StewardPages};
use bonebank_node::dataset::DataDir;
use bonebank_node::generate::{self, Profile, ProfileKind, Spec};
use bonebank_node::limits::WorkLimits;
use bonebank_node::server::{self, RunningNode};
use bonebank_query::policy::{Action, Policy, Rule};
use bonebank_schemas::Role;
use bonebank_schemas::SiteId;
use bonebank_service::oidc::OidcSettings;
use bonebank_service::tls::NodeTls;

use crate::Result;
use crate::pki::{self, PkiDir};
use bonebank_coordinator::config::{
    ClientTls, CoordinatorConfig, LinkListener, LoginConfig, SiteEndpoint,
};
use bonebank_coordinator::server::RunningCoordinator;
use bonebank_node::config::Outbound;

/// The three demo sites.
pub fn demo_sites() -> Vec<SiteId> {
    [SiteId::LUEBECK, SiteId::ODENSE, SiteId::NAESTVED]
        .iter()
        .map(|s| SiteId::parse(s).expect("demo site ids are valid"))
        .collect()
}

/// The demo's policy at `site`: the defaults, and at Odense questions of
/// industry partners wait for a data steward, so that the demo shows the
/// approval flow next to sites that answer at once.
pub fn demo_policy(site: &SiteId) -> Policy {
    let mut policy = Policy::default();
    if site.as_str() == SiteId::ODENSE {
        policy.rules.push(Rule {
            role: Some(Role::Industry),
            projects: None,
            measures: None,
            min_dimensions: None,
            dimensions: None,
            loss_above: None,
            action: Action::Approve,
            reason: None,
            approvals_required: None,
        });
    }
    policy
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
/// development coordinator on its allow-list, trusting tokens as `oidc` says.
pub fn node_config(
    root: &Path,
    pki: &PkiDir,
    site: &SiteId,
    policy: Policy,
    oidc: OidcSettings,
    limits: WorkLimits,
) -> NodeConfig {
    let base = root.join(site.to_string());
    NodeConfig {
        site_id: site.clone(),
        data_dir: base.join("data"),
        state_dir: base.join("state"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        oidc,
        tls: Some(NodeTls {
            certificate: pki.node_cert(site),
            key: pki.node_key(site),
            client_ca: pki.ca_cert(),
            allowed_clients: vec![pki::COORDINATOR_NAME.into()],
            coordinator_grant_key: pki.grant_public_key(),
        }),
        policy,
        limits,
        // Plain HTTP on loopback: a browser on this machine does not trust
        // the development CA; a site serves them over HTTPS (the default).
        steward_pages: Some(StewardPages {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: false,
            public_url: None,
            client_id: devidp::STEWARD_CLIENT_ID.into(),
            client_secret_file: None,
            scopes: vec!["offline_access".into()],
            resource: None,
        }),
        outbound: None,
        notify: None,
    }
}

/// A coordinator config for nodes at `nodes`, checked by their development
/// PKI names; `None` for a site whose node connects out (the config then
/// has a link listener on loopback).
pub fn coordinator_config(
    root: &Path,
    pki: &PkiDir,
    nodes: &[(SiteId, Option<SocketAddr>)],
    deadline_ms: u64,
    identity: &Identity,
) -> CoordinatorConfig {
    let link = nodes
        .iter()
        .any(|(_, a)| a.is_none())
        .then(|| LinkListener {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            certificate: None,
            key: None,
            heartbeat_ms: 2_000,
        });
    CoordinatorConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        state_dir: root.join("coordinator"),
        deadline_ms,
        oidc: identity.oidc.clone(),
        login: identity.login.clone(),
        tls: ClientTls {
            ca: pki.ca_cert(),
            certificate: pki.coordinator_cert(),
            key: pki.coordinator_key(),
            grant_key: pki.grant_key(),
        },
        sites: nodes
            .iter()
            .map(|(id, addr)| SiteEndpoint {
                id: id.clone(),
                url: addr.map(|a| format!("https://{a}")),
                server_name: Some(pki::node_name(id)),
                // Made-up Directory ids in the Directory's shape, so that
                // the demo can build Negotiator requests.
                directory_collection: Some(format!(
                    "bbmri-eric:ID:{}_DEMO:collection:bonebank",
                    id.as_str().replace('-', "_")
                )),
            })
            .collect(),
        link,
        negotiator: None,
        notify: None,
    }
}

/// The `[outbound]` section of a node that connects out to the coordinator
/// whose link listener is at `link_url`.
pub fn outbound_to(link_url: &str) -> Outbound {
    Outbound {
        coordinator: link_url.to_owned(),
        server_name: Some(pki::COORDINATOR_NAME.into()),
        proxy: None,
        proxy_ca: None,
    }
}

/// Whom a local network trusts for identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub oidc: OidcSettings,
    pub login: LoginConfig,
}

impl Identity {
    /// The development provider's settings, with its demo clients.
    pub fn development(idp: &DevProvider) -> Self {
        Self {
            oidc: idp.settings(),
            login: LoginConfig {
                client_id: devidp::WEB_CLIENT_ID.into(),
                client_secret_file: None,
                cli_client_id: devidp::CLI_CLIENT_ID.into(),
                public_url: None,
                scopes: vec!["offline_access".into()],
                resource: None,
                development: true,
            },
        }
    }
}

/// The development provider on loopback, with the demo users of `sites`.
fn development_identity(sites: &[SiteId]) -> Result<(DevProvider, Identity)> {
    let site_names: Vec<String> = sites.iter().map(ToString::to_string).collect();
    let idp = DevProvider::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        devidp::DEMO_AUDIENCE,
        devidp::demo_users(&site_names),
        DEV_TOKEN_TTL,
    )?;
    let identity = Identity::development(&idp);
    Ok((idp, identity))
}

/// How long the development provider's access tokens last.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A running network.
#[derive(Debug)]
pub struct LocalNetwork {
    pub root: PathBuf,
    pub pki: PkiDir,
    pub nodes: Vec<(NodeConfig, RunningNode)>,
    pub coordinator: RunningCoordinator,
    pub coordinator_config: CoordinatorConfig,
    /// The development identity provider, unless the network was started
    /// with another one.
    pub idp: Option<DevProvider>,
}

impl LocalNetwork {
    /// Starts a node per site (data must already be generated under `root`)
    /// and a coordinator. Must run inside a Tokio runtime.
    pub fn start(root: &Path, sites: &[SiteId], policy: &Policy, deadline_ms: u64) -> Result<Self> {
        Self::start_with(root, sites, |_| policy.clone(), deadline_ms)
    }

    /// Like [`LocalNetwork::start`], with nodes that do not limit how many
    /// questions one user asks at once or per minute: a benchmark's clients
    /// all share one user.
    pub fn start_unthrottled(
        root: &Path,
        sites: &[SiteId],
        policy: &Policy,
        deadline_ms: u64,
    ) -> Result<Self> {
        Self::start_with_limits(
            root,
            sites,
            |_| policy.clone(),
            deadline_ms,
            WorkLimits::unthrottled(),
        )
    }

    /// Like [`LocalNetwork::start`], with each site's own policy.
    pub fn start_with(
        root: &Path,
        sites: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
    ) -> Result<Self> {
        Self::start_with_limits(root, sites, policy, deadline_ms, WorkLimits::default())
    }

    fn start_with_limits(
        root: &Path,
        sites: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
        limits: WorkLimits,
    ) -> Result<Self> {
        let (idp, identity) = development_identity(sites)?;
        let mut network = Self::start_nodes(root, sites, policy, deadline_ms, identity, limits)?;
        network.idp = Some(idp);
        Ok(network)
    }

    /// Like [`LocalNetwork::start_with`], trusting another identity provider.
    pub fn start_with_identity(
        root: &Path,
        sites: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
        identity: Identity,
    ) -> Result<Self> {
        Self::start_nodes(
            root,
            sites,
            policy,
            deadline_ms,
            identity,
            WorkLimits::default(),
        )
    }

    fn start_nodes(
        root: &Path,
        sites: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
        identity: Identity,
        limits: WorkLimits,
    ) -> Result<Self> {
        Self::start_nodes_out(root, sites, &[], policy, deadline_ms, identity, limits)
    }

    /// Like [`LocalNetwork::start_with`], with the nodes of `outbound`
    /// connecting out to the coordinator (as behind a firewall) instead of
    /// being connected to; returns once they are connected.
    pub async fn start_mixed(
        root: &Path,
        sites: &[SiteId],
        outbound: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
    ) -> Result<Self> {
        let (idp, identity) = development_identity(sites)?;
        let mut network = Self::start_nodes_out(
            root,
            sites,
            outbound,
            policy,
            deadline_ms,
            identity,
            WorkLimits::default(),
        )?;
        network.idp = Some(idp);
        network
            .wait_connected(outbound, Duration::from_secs(20))
            .await?;
        Ok(network)
    }

    fn start_nodes_out(
        root: &Path,
        sites: &[SiteId],
        outbound: &[SiteId],
        policy: impl Fn(&SiteId) -> Policy,
        deadline_ms: u64,
        identity: Identity,
        limits: WorkLimits,
    ) -> Result<Self> {
        let pki = PkiDir::new(root.join("pki"));
        if !pki.ca_cert().exists() {
            pki.init(sites)?;
        }
        let config_of = |site: &SiteId| {
            node_config(
                root,
                &pki,
                site,
                policy(site),
                identity.oidc.clone(),
                limits,
            )
        };
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for site in sites {
            if outbound.contains(site) {
                addrs.push((site.clone(), None));
                continue;
            }
            let config = config_of(site);
            let running = server::start(&config, server::state(&config)?)?;
            addrs.push((site.clone(), Some(running.addr)));
            nodes.push((config, running));
        }
        let coordinator_config = coordinator_config(root, &pki, &addrs, deadline_ms, &identity);
        let coordinator = bonebank_coordinator::server::start(&coordinator_config)?;
        for site in outbound {
            let mut config = config_of(site);
            let link = coordinator.link.as_ref().expect("a link listener");
            config.outbound = Some(outbound_to(&link.url()));
            let running = server::start(&config, server::state(&config)?)?;
            nodes.push((config, running));
        }
        // In the order of `sites`.
        nodes.sort_by_key(|(c, _)| sites.iter().position(|s| *s == c.site_id));
        Ok(Self {
            root: root.to_owned(),
            pki,
            nodes,
            coordinator,
            coordinator_config,
            idp: None,
        })
    }

    /// Waits until the nodes of `sites`, which connect out, are connected.
    pub async fn wait_connected(&self, sites: &[SiteId], within: Duration) -> Result<()> {
        let Some(links) = &self.coordinator.links else {
            return Ok(());
        };
        let until = std::time::Instant::now() + within;
        for site in sites {
            let link = links.site(site).expect("a site that connects out");
            while !link.connected() {
                if std::time::Instant::now() > until {
                    return Err(crate::Error::Usage(format!(
                        "the node of {site} did not connect out within {within:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Waits until the coordinator holds every node's catalogue (a node
    /// measures it when first asked, which the coordinator does as it
    /// starts), so that questions after it are answered from them.
    pub async fn wait_for_catalogues(&self, within: Duration) -> Result<()> {
        let until = std::time::Instant::now() + within;
        loop {
            let held = self.coordinator.catalogues.held();
            if held == self.nodes.len() {
                return Ok(());
            }
            if std::time::Instant::now() > until {
                return Err(crate::Error::Usage(format!(
                    "the coordinator held {held} of {} catalogues after {within:?}",
                    self.nodes.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An access token from the development provider for any user (tests
    /// and the benchmark); panics if the network uses another provider.
    pub fn token(&self, user: &DevUser) -> String {
        self.idp
            .as_ref()
            .expect("a network with the development identity provider")
            .token_for(user)
    }
}
