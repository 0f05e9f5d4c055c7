//! The coordinator's configuration: one TOML file, every key overridable by
//! an environment variable `BONEBANK_COORDINATOR_<KEY>` (nested keys with
//! `__`). Relative paths are resolved against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bonebank_node::config::IdentityMode;
use bonebank_schemas::SiteId;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address researchers connect to; port 0 lets the system choose.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the coordinator keeps its query history (SQLite).
    pub state_dir: PathBuf,
    /// How long a question waits for the sites, in milliseconds. Sites that
    /// have not answered by then are reported as timed out.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// How researchers are identified.
    #[serde(default)]
    pub identity: IdentityMode,
    /// The coordinator's side of mutual TLS with the nodes.
    pub tls: ClientTls,
    /// The sites of the network.
    pub sites: Vec<SiteEndpoint>,
}

/// The coordinator's certificate, and the CA it checks nodes against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The CA that signs node certificates (PEM).
    pub ca: PathBuf,
    /// The coordinator's client certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// Where a site's node is, and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEndpoint {
    pub id: SiteId,
    /// The node's base URL; always `https://`.
    pub url: String,
    /// The DNS name the node's certificate must be valid for; the URL's host
    /// when absent. Lets a node be reached by address and still be checked by
    /// name.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_deadline() -> u64 {
    3_000
}

impl CoordinatorConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let mut config: Self = bonebank_node::config::read_toml(path, "BONEBANK_COORDINATOR_")?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.state_dir,
            &mut config.tls.ca,
            &mut config.tls.certificate,
            &mut config.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<()> {
        if self.identity == IdentityMode::Development && !self.listen.ip().is_loopback() {
            return Err(Error::Usage(format!(
                "identity = \"development\" trusts unverified headers and is refused on {}; listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.sites.is_empty() {
            return Err(Error::Usage("the config lists no [[sites]]".into()));
        }
        if self.deadline_ms == 0 || self.deadline_ms > 120_000 {
            return Err(Error::Usage(
                "deadline_ms must be between 1 and 120000".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for site in &self.sites {
            if !seen.insert(site.id.to_string()) {
                return Err(Error::Usage(format!("site {} is listed twice", site.id)));
            }
            let url = reqwest::Url::parse(&site.url)
                .map_err(|e| Error::Usage(format!("site {}: url {:?}: {e}", site.id, site.url)))?;
            if url.scheme() != "https" {
                return Err(Error::Usage(format!(
                    "site {}: {} is not https; nodes are reached over mutual TLS only",
                    site.id, site.url
                )));
            }
            if url.host_str().is_none() {
                return Err(Error::Usage(format!("site {}: url has no host", site.id)));
            }
        }
        Ok(())
    }

    /// The SQLite file of the query history.
    pub fn history_db(&self) -> PathBuf {
        self.state_dir.join("coordinator.sqlite")
    }
}
