//! The coordinator's configuration: one TOML file, every key overridable by
//! an environment variable `BONEBANK_COORDINATOR_<KEY>` (nested keys with
//! `__`). Relative paths are resolved against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bonebank_schemas::SiteId;
use bonebank_service::oidc::OidcSettings;
use bonebank_service::server::{check_https_or_loopback, is_loopback};
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
    /// The OIDC provider whose access tokens identify users; the same
    /// settings as the nodes'. Users' tokens stop here: the coordinator
    /// checks them and sends each site a grant of its own signing instead.
    pub oidc: OidcSettings,
    /// How users sign in: the browser login and the CLI's device flow.
    pub login: LoginConfig,
    /// The coordinator's side of mutual TLS with the nodes.
    pub tls: ClientTls,
    /// The sites of the network.
    pub sites: Vec<SiteEndpoint>,
    /// Where nodes in outbound mode connect to; needed when a site has no
    /// `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkListener>,
    /// The BBMRI-ERIC Negotiator that researchers' sample requests go to
    /// from an answer; without it they can still download the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiator: Option<NegotiatorConfig>,
    /// Telling requesters by email when a site decides on a question that
    /// waited for its stewards; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyConfig>,
}

/// `[negotiator]`: where a researcher's sample request is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiatorConfig {
    /// The Negotiator's address, e.g. `https://negotiator.bbmri-eric.eu`;
    /// requests go to `<url>/api/v3/requests`.
    pub url: String,
    /// A file holding `user:password` of the coordinator's account there
    /// (HTTP basic authentication, as discovery services post requests).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// The listener nodes behind firewalls connect out to (mutual TLS: node
/// certificates from `tls.ca` that name a site without a `url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkListener {
    /// e.g. `0.0.0.0:7443`; port 0 lets the system choose.
    pub listen: SocketAddr,
    /// The certificate the coordinator shows there (a server certificate
    /// for the name nodes connect to); `tls.certificate` when absent.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Its key; `tls.key` when absent.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// How long a node's poll is held when there is nothing for it, in
    /// milliseconds; a node silent for this plus 3 s is taken for gone.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
}

fn default_heartbeat() -> u64 {
    2_000
}

/// The coordinator's OIDC clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The client id of the coordinator's browser login (authorization code
    /// with PKCE). Its redirect URI is `<public_url>/auth/callback`.
    pub client_id: String,
    /// A file holding that client's secret, if the provider made it a
    /// confidential client.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The public client the `bonebank` CLI signs in with (device flow).
    pub cli_client_id: String,
    /// The coordinator's address as users' browsers reach it, e.g.
    /// `https://bonebank.example.org`; `http://<listen address>` if absent.
    /// Session cookies are marked `Secure` when it is https.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Scopes to ask for besides `openid` (Entra ID, for example, wants the
    /// API's scope here).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A resource indicator (RFC 8707) to ask for, for providers that set a
    /// token's audience from it.
    #[serde(default)]
    pub resource: Option<String>,
    /// The provider is bonebank's development provider: lets `bonebank login
    /// --user NAME` sign in as a demo user. Refused off loopback.
    #[serde(default)]
    pub development: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["offline_access".into()]
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
    /// The Ed25519 private key (PKCS#8 PEM) that signs the grants sent to
    /// the sites in place of users' tokens; each node trusts its public key
    /// (`tls.coordinator_grant_key`). Make a pair with
    /// `openssl genpkey -algorithm ed25519 -out grant.key` and
    /// `openssl pkey -in grant.key -pubout -out grant.pub`.
    pub grant_key: PathBuf,
}

/// Where a site's node is, and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEndpoint {
    pub id: SiteId,
    /// The node's base URL; always `https://`. Absent for a site whose node
    /// connects out to `[link]` (outbound mode); `server_name` is then the
    /// name its certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The DNS name the node's certificate must be valid for; the URL's host
    /// when absent. Lets a node be reached by address and still be checked by
    /// name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The site's collection in the BBMRI-ERIC Directory, e.g.
    /// `bbmri-eric:ID:DE_LUE:collection:MSC`: the resource a Negotiator
    /// request from an answer names for this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_collection: Option<String>,
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
        let mut config: Self = bonebank_service::config::read_toml(path, "BONEBANK_COORDINATOR_")?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.oidc.resolve(base);
        if let Some(notify) = &mut config.notify {
            notify.email.resolve(base);
        }
        if let Some(secret) = &mut config.login.client_secret_file
            && secret.is_relative()
        {
            *secret = base.join(&*secret);
        }
        let link_files = config
            .link
            .iter_mut()
            .flat_map(|l| [l.certificate.as_mut(), l.key.as_mut()])
            .flatten()
            .chain(
                config
                    .negotiator
                    .iter_mut()
                    .filter_map(|n| n.credentials_file.as_mut()),
            );
        for p in [
            &mut config.state_dir,
            &mut config.tls.ca,
            &mut config.tls.certificate,
            &mut config.tls.key,
            &mut config.tls.grant_key,
        ]
        .into_iter()
        .chain(link_files)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<()> {
        self.oidc.validate()?;
        if let Some(notify) = &self.notify {
            notify.validate()?;
        }
        if self.login.development {
            let issuer = reqwest::Url::parse(&self.oidc.issuer)
                .map_err(|e| Error::Usage(format!("oidc.issuer: {e}")))?;
            if !self.listen.ip().is_loopback() || !is_loopback(&issuer) {
                return Err(Error::Usage(
                    "login.development is for the development identity provider on this machine only; \
                     it is refused unless both the coordinator and the issuer are on 127.0.0.1"
                        .into(),
                ));
            }
        }
        if let Some(url) = &self.login.public_url {
            check_https_or_loopback(url, "login.public_url").map_err(|_| {
                Error::Usage(format!(
                    "login.public_url {url} must be https: session cookies would travel in the clear"
                ))
            })?;
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
            let Some(url) = &site.url else {
                if site.server_name.is_none() {
                    return Err(Error::Usage(format!(
                        "site {}: a site without a url connects out; give the name its node's certificate carries as server_name",
                        site.id
                    )));
                }
                if self.link.is_none() {
                    return Err(Error::Usage(format!(
                        "site {} has no url, so its node connects out: set [link] listen for it to connect to",
                        site.id
                    )));
                }
                continue;
            };
            let url = reqwest::Url::parse(url)
                .map_err(|e| Error::Usage(format!("site {}: url {url:?}: {e}", site.id)))?;
            if url.scheme() != "https" {
                return Err(Error::Usage(format!(
                    "site {}: {url} is not https; nodes are reached over mutual TLS only",
                    site.id
                )));
            }
            if url.host_str().is_none() {
                return Err(Error::Usage(format!("site {}: url has no host", site.id)));
            }
        }
        for site in &self.sites {
            if let Some(id) = &site.directory_collection
                && biobank_of(id).is_none()
            {
                return Err(Error::Usage(format!(
                    "site {}: directory_collection {id:?} is not a Directory collection id \
                     (bbmri-eric:ID:<biobank>:collection:<collection>)",
                    site.id
                )));
            }
        }
        if let Some(negotiator) = &self.negotiator {
            check_https_or_loopback(&negotiator.url, "negotiator.url")?;
        }
        if let Some(link) = &self.link
            && !(100..=60_000).contains(&link.heartbeat_ms)
        {
            return Err(Error::Usage(
                "link.heartbeat_ms must be between 100 and 60000".into(),
            ));
        }
        Ok(())
    }

    /// The SQLite file of the query history.
    pub fn history_db(&self) -> PathBuf {
        self.state_dir.join("coordinator.sqlite")
    }
}

/// The biobank part of a Directory collection id:
/// `bbmri-eric:ID:DE_LUE:collection:MSC` → `bbmri-eric:ID:DE_LUE`.
pub fn biobank_of(collection: &str) -> Option<&str> {
    let (biobank, name) = collection.split_once(":collection:")?;
    let id = biobank.strip_prefix("bbmri-eric:ID:")?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    };
    (plain(id) && !id.contains(':') && plain(name)).then_some(biobank)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CoordinatorConfig {
        CoordinatorConfig {
            listen: default_listen(),
            state_dir: "/tmp/x".into(),
            deadline_ms: 1000,
            oidc: OidcSettings {
                issuer: "http://127.0.0.1:7109".into(),
                audience: "bonebank".into(),
                leeway_seconds: 30,
                claims: Default::default(),
                ca: None,
            },
            login: LoginConfig {
                client_id: "web".into(),
                client_secret_file: None,
                cli_client_id: "cli".into(),
                public_url: None,
                scopes: default_scopes(),
                resource: None,
                development: true,
            },
            tls: ClientTls {
                ca: "ca.crt".into(),
                certificate: "c.crt".into(),
                key: "c.key".into(),
                grant_key: "grant.key".into(),
            },
            sites: vec![SiteEndpoint {
                id: SiteId::parse("DE-LUE").unwrap(),
                url: Some("https://127.0.0.1:7101".into()),
                server_name: None,
                directory_collection: None,
            }],
            link: None,
            negotiator: None,
            notify: None,
        }
    }

    #[test]
    fn the_development_login_is_for_loopback_only() {
        assert!(config().validate().is_ok());
        let mut public = config();
        public.listen = "0.0.0.0:7100".parse().unwrap();
        assert!(public.validate().is_err(), "coordinator off loopback");
        let mut remote_idp = config();
        remote_idp.oidc.issuer = "https://login.example.org".into();
        assert!(remote_idp.validate().is_err(), "provider off loopback");
        remote_idp.login.development = false;
        assert!(remote_idp.validate().is_ok(), "a real provider");
    }

    #[test]
    fn a_site_that_connects_out_needs_a_name_and_a_link_listener() {
        let mut c = config();
        c.sites[0].url = None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("server_name"), "{e}");
        c.sites[0].server_name = Some("de-lue.node.bonebank.test".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("[link]"), "{e}");
        c.link = Some(LinkListener {
            listen: default_listen(),
            certificate: None,
            key: None,
            heartbeat_ms: default_heartbeat(),
        });
        assert!(c.validate().is_ok());
        c.link.as_mut().unwrap().heartbeat_ms = 10;
        assert!(c.validate().is_err(), "a heartbeat too short");
    }

    #[test]
    fn directory_ids_and_the_negotiator_address_are_checked() {
        let mut c = config();
        c.sites[0].directory_collection = Some("DE_LUE".into());
        assert!(c.validate().is_err());
        c.sites[0].directory_collection = Some("bbmri-eric:ID:DE_LUE:collection:MSC".into());
        assert!(c.validate().is_ok());
        c.negotiator = Some(NegotiatorConfig {
            url: "http://negotiator.example.org".into(),
            credentials_file: None,
        });
        assert!(c.validate().is_err(), "credentials in the clear");
        c.negotiator.as_mut().unwrap().url = "https://negotiator.example.org".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn session_cookies_never_travel_over_plain_http_off_loopback() {
        let mut c = config();
        c.login.public_url = Some("http://bonebank.example.org".into());
        assert!(c.validate().is_err());
        c.login.public_url = Some("https://bonebank.example.org".into());
        assert!(c.validate().is_ok());
    }
}
