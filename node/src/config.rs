//! The node's configuration: one TOML file, every key overridable by an
//! environment variable `BONEBANK_NODE_<KEY>` (nested keys with `__`, e.g.
//! `BONEBANK_NODE_POLICY__MAX_DIMENSIONS=1`). Relative paths are resolved
//! against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bonebank_query::policy::Policy;
use bonebank_schemas::SiteId;
use bonebank_service::config::{key_line, read_toml};
use bonebank_service::oidc::OidcSettings;
use bonebank_service::tls::NodeTls;
use serde::{Deserialize, Serialize};

use crate::limits::WorkLimits;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The site this node serves, e.g. `DE-LUE`.
    pub site_id: SiteId,
    /// The data directory that `bonebank-node import` writes.
    pub data_dir: PathBuf,
    /// Where the node keeps its ledger and remembered releases (SQLite).
    pub state_dir: PathBuf,
    /// Address to listen on; port 0 lets the system choose.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The OIDC provider whose access tokens identify callers. The node
    /// checks every token itself.
    pub oidc: OidcSettings,
    /// Mutual TLS. Without it the node speaks plain HTTP, which it allows on
    /// loopback only (development and tests); a site always sets it.
    #[serde(default)]
    pub tls: Option<NodeTls>,
    #[serde(default)]
    pub policy: Policy,
    /// Each question's plan time, and each user's and project's fair share.
    #[serde(default)]
    pub limits: WorkLimits,
    /// The data stewards' pages (approval queue, budget, audit log, policy)
    /// on a listener of their own; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward_pages: Option<StewardPages>,
    /// Outbound mode, for a site whose firewall lets no connection in: the
    /// node connects out to the coordinator and fetches its questions. The
    /// node's own port can then stay on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Outbound>,
    /// Telling the stewards that questions wait, by email or webhook; off
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyConfig>,
}

/// Where and how the stewards' pages are served. Stewards' browsers have no
/// client certificates, so the pages cannot share the node's port (which
/// admits coordinators only); put `listen` on the site's internal network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StewardPages {
    /// Address to listen on, e.g. an address on the site's internal network.
    pub listen: SocketAddr,
    /// Serve HTTPS with the certificate and key of `[tls]` (asking browsers
    /// for no certificate). `false` serves plain HTTP, on loopback only.
    #[serde(default = "yes")]
    pub https: bool,
    /// The pages' address as stewards' browsers reach it; the sign-in's
    /// redirect URI is `<public_url>/auth/callback`. `https://<listen>` (or
    /// `http://` without https) if absent.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The pages' client at the site's identity provider (authorization
    /// code with PKCE; the same provider as `[oidc]`).
    pub client_id: String,
    /// A file holding that client's secret, for a confidential client.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to ask for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A resource indicator (RFC 8707), for providers that need one.
    #[serde(default)]
    pub resource: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_scopes() -> Vec<String> {
    vec!["offline_access".into()]
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl NodeConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let mut config: Self = read_toml(path, "BONEBANK_NODE_")?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.data_dir, &mut config.state_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(tls) = &mut config.tls {
            tls.resolve(base);
        }
        if let Some(secret) = config
            .steward_pages
            .as_mut()
            .and_then(|p| p.client_secret_file.as_mut())
            && secret.is_relative()
        {
            *secret = base.join(&*secret);
        }
        if let Some(ca) = config.outbound.as_mut().and_then(|o| o.proxy_ca.as_mut())
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
        config.oidc.resolve(base);
        if let Some(notify) = &mut config.notify {
            notify.resolve(base);
        }
        if let Err((rule, why)) = config.policy.validate_rules() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = rule_line(&text, rule).map_or(String::new(), |l| format!(" line {l}"));
            return Err(Error::Usage(format!(
                "config {}{line}: policy rule {rule}: {why}",
                path.display()
            )));
        }
        if let Err(why) = config
            .policy
            .validate()
            .and_then(|()| stated(&config.policy))
        {
            // Messages start with the key at fault, e.g. "policy.epsilon must …".
            let key: String = why
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let line = key_line(&std::fs::read_to_string(path).unwrap_or_default(), &key)
                .map_or(String::new(), |l| format!(" line {l}"));
            return Err(Error::Usage(format!(
                "config {}{line}: {why}",
                path.display()
            )));
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: the policy, the OIDC settings, and that
    /// plain HTTP is used on loopback only.
    pub fn validate(&self) -> Result<()> {
        self.policy
            .validate()
            .and_then(|()| stated(&self.policy))
            .map_err(Error::Usage)?;
        self.policy
            .validate_rules()
            .map_err(|(rule, why)| Error::Usage(format!("policy rule {rule}: {why}")))?;
        self.oidc.validate()?;
        self.limits.validate().map_err(Error::Usage)?;
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(Error::Usage(format!(
                "without a [tls] section the node would serve plain HTTP on {}; \
                 set tls.certificate, tls.key, tls.client_ca and tls.allowed_clients (see examples/nodes/)",
                self.listen
            )));
        }
        if let Some(outbound) = &self.outbound {
            if self.tls.is_none() {
                return Err(Error::Usage(
                    "[outbound] needs [tls]: the node shows its certificate to the coordinator \
                     and checks the coordinator's against tls.client_ca"
                        .into(),
                ));
            }
            outbound.validate()?;
        }
        if let Some(notify) = &self.notify {
            notify.validate()?;
            if notify.link.is_none() && self.steward_pages.is_none() {
                return Err(Error::Usage(
                    "[notify] needs notify.link, the approval queue's address, when the node serves no [steward_pages]".into(),
                ));
            }
        }
        if let Some(pages) = &self.steward_pages {
            if pages.https && self.tls.is_none() {
                return Err(Error::Usage(
                    "steward_pages.https needs the node's [tls] certificate and key".into(),
                ));
            }
            if !pages.https && !pages.listen.ip().is_loopback() {
                return Err(Error::Usage(format!(
                    "steward_pages would serve plain HTTP on {}; set https = true (the default) off loopback",
                    pages.listen
                )));
            }
            if let Some(url) = &pages.public_url {
                bonebank_service::server::check_https_or_loopback(url, "steward_pages.public_url")?;
            }
        }
        Ok(())
    }

    /// The SQLite file of the ledger and releases.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("node.sqlite")
    }
}

/// Checks that every loss the site's description states in (ε, δ) can be
/// stated: the budgets and a question's most under zCDP, at the site's δ.
/// A ρ so large that the conversion fails (10⁵ does) is no privacy at all,
/// and is refused here rather than answered with an error in `/v1/site`.
/// Messages start with the key at fault, as [`Policy::validate`]'s do.
fn stated(policy: &Policy) -> std::result::Result<(), String> {
    let z = &policy.zcdp;
    for (key, rho) in [
        ("policy.zcdp.budget.site", z.budget.site),
        ("policy.zcdp.budget.project", z.budget.project),
        ("policy.zcdp.budget.user", z.budget.user),
        ("policy.zcdp.rho.max", z.rho.max),
    ] {
        if rho <= 0.0 {
            continue;
        }
        match crate::privacy::zcdp_epsilon(rho, z.delta) {
            Ok(e) if e.is_finite() => {}
            Ok(_) | Err(_) => {
                return Err(format!(
                    "{key} = {rho} is too large to be stated as (ε, δ)-DP at δ {}: a loss that large protects nobody",
                    z.delta
                ));
            }
        }
    }
    Ok(())
}

/// The line (1-based) of the `n`-th `[[policy.rules]]` table in a config.
fn rule_line(text: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            l.starts_with("[[policy.rules]]")
        })
        .nth(n.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}
/// `[outbound]` in a node's config: connect out to the coordinator rather
/// than wait to be connected to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// The coordinator's link address, e.g.
    /// `https://bonebank.example.org:7443`.
    pub coordinator: String,
    /// The name the coordinator's certificate must carry; the URL's host
    /// when absent.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A forward proxy, e.g. `http://proxy.hospital.local:3128`. Without
    /// it, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment
    /// apply, as for other programs on the machine.
    #[serde(default)]
    pub proxy: Option<String>,
    /// The CA of the proxy, for an `https://` proxy or one that inspects
    /// TLS: trusted besides the CA of `[tls]`.
    #[serde(default)]
    pub proxy_ca: Option<PathBuf>,
}

impl Outbound {
    pub fn validate(&self) -> Result<()> {
        let url = reqwest::Url::parse(&self.coordinator)
            .map_err(|e| Error::Usage(format!("outbound.coordinator: {e}")))?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(Error::Usage(format!(
                "outbound.coordinator {} must be an https:// address: the link is mutual TLS only",
                self.coordinator
            )));
        }
        if let Some(proxy) = &self.proxy {
            reqwest::Proxy::all(proxy)
                .map_err(|e| Error::Usage(format!("outbound.proxy {proxy:?}: {e}")))?;
        }
        Ok(())
    }
}
