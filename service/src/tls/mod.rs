//! Mutual TLS between the coordinator and the nodes (rustls with ring).
//!
//! A node presents its server certificate and accepts a client only when the
//! client's certificate chains to the CA the node trusts *and* names one of
//! the coordinators on the node's allow-list; anything else fails the TLS
//! handshake before a byte of HTTP is read. The coordinator checks each
//! node's certificate against the same CA and the name it expects for that
//! site. Every certificate, key and CA is read again when its file changes
//! ([`reload`]), so rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub mod reload;

pub use reload::check_validity;

/// The TLS settings of a node: its own certificate, and whom it lets in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// The node's certificate chain (PEM).
    pub certificate: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// The CA that signs the certificates of trusted coordinators (PEM).
    pub client_ca: PathBuf,
    /// DNS names a coordinator's client certificate may carry; any other
    /// certificate, even one from `client_ca`, is refused.
    pub allowed_clients: Vec<String>,
    /// The coordinator's Ed25519 public key (PEM): the node takes the
    /// grants it signs in place of users' tokens, for this site only.
    pub coordinator_grant_key: PathBuf,
}

impl NodeTls {
    /// Resolves relative paths against `base`.
    pub fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.certificate,
            &mut self.key,
            &mut self.client_ca,
            &mut self.coordinator_grant_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// The crypto provider of every TLS config in bonebank.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider, for HTTP clients built
/// without a TLS config of their own (reqwest needs one even for plain HTTP).
/// Safe to call more than once.
pub use bonebank_login::install_default_provider;

/// The certificates in a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Usage(format!("certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "certificate file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::Usage(format!("key file {}: {e}", path.display())))
}

/// The CA certificates in a PEM file, as trust roots.
pub fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| Error::Usage(format!("CA file {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The server side of a node: its certificate, and client certificates
/// required, checked against the CA and the allow-list. The files are read
/// again when they change, so a rotated certificate or CA takes effect
/// without a restart.
pub fn server_config(tls: &NodeTls) -> Result<ServerConfig> {
    if tls.allowed_clients.is_empty() {
        return Err(Error::Usage(
            "tls.allowed_clients is empty: name the coordinator(s) this node answers".into(),
        ));
    }
    mutual_server_config(
        &tls.certificate,
        &tls.key,
        &tls.client_ca,
        &tls.allowed_clients,
        "tls.allowed_clients",
    )
}

/// A server that shows `certificate` and admits only clients whose
/// certificates chain to `ca` and carry one of the `allowed` names (the
/// setting that lists them is named in errors). All files are read again
/// when they change.
pub fn mutual_server_config(
    certificate: &Path,
    key: &Path,
    ca: &Path,
    allowed: &[String],
    setting: &str,
) -> Result<ServerConfig> {
    let clients = reload::ClientCerts::new(ca, allowed, setting)?;
    let own = reload::OwnCert::new(certificate, key)?;
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_client_cert_verifier(Arc::new(clients))
        .with_cert_resolver(Arc::new(own)))
}

/// A server with the node's certificate that asks browsers for none: the
/// stewards' pages, reached by people, not by coordinators.
pub fn browser_server_config(certificate: &Path, key: &Path) -> Result<ServerConfig> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(reload::OwnCert::new(certificate, key)?)))
}

/// The client side of a coordinator: trusts nodes whose certificates chain to
/// `ca`, and presents `certificate` as its own identity.
pub fn client_config(ca: &Path, certificate: &Path, key: &Path) -> Result<ClientConfig> {
    client_config_for(&ClientFiles {
        ca,
        extra_ca: None,
        certificate,
        key,
        server_name: None,
    })
}

/// What a mutual-TLS client is built from.
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    /// The CA the servers' certificates must chain to.
    pub ca: &'a Path,
    /// More roots to trust, e.g. the CA of a forward proxy that inspects TLS.
    pub extra_ca: Option<&'a Path>,
    /// This side's certificate chain and key.
    pub certificate: &'a Path,
    pub key: &'a Path,
    /// The name the server's certificate must carry; the URL's host when
    /// absent.
    pub server_name: Option<&'a str>,
}

/// A mutual-TLS client for `files`; the files are read again when they
/// change, so rotated certificates and CAs take effect on the next
/// connection without a restart.
pub fn client_config_for(files: &ClientFiles) -> Result<ClientConfig> {
    let servers = reload::ServerCerts::new(files.ca, files.extra_ca, files.server_name)?;
    let own = reload::OwnCert::new(files.certificate, files.key)?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(servers))
        .with_client_cert_resolver(Arc::new(own)))
}
