//! Mutual TLS between the coordinator and the nodes (rustls with ring).
//!
//! A node presents its server certificate and accepts a client only when the
//! client's certificate chains to the CA the node trusts *and* names one of
//! the coordinators on the node's allow-list; anything else fails the TLS
//! handshake before a byte of HTTP is read. The coordinator checks each
//! node's certificate against the same CA and the name it expects for that
//! site.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
}

impl NodeTls {
    /// Resolves relative paths against `base`.
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.certificate, &mut self.key, &mut self.client_ca] {
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
/// required, checked against the CA and the allow-list.
pub fn server_config(tls: &NodeTls) -> Result<ServerConfig> {
    if tls.allowed_clients.is_empty() {
        return Err(Error::Usage(
            "tls.allowed_clients is empty: name the coordinator(s) this node answers".into(),
        ));
    }
    let allowed = tls
        .allowed_clients
        .iter()
        .map(|n| {
            ServerName::try_from(n.clone())
                .map_err(|e| Error::Usage(format!("tls.allowed_clients: {n:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let roots = read_roots(&tls.client_ca)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| Error::Usage(format!("tls.client_ca: {e}")))?;
    let verifier = AllowListedClients { inner, allowed };
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(read_certificates(&tls.certificate)?, read_key(&tls.key)?)
        .map_err(|e| Error::Usage(format!("tls.certificate/tls.key: {e}")))
}

/// A server with the node's certificate that asks browsers for none: the
/// stewards' pages, reached by people, not by coordinators.
pub fn browser_server_config(certificate: &Path, key: &Path) -> Result<ServerConfig> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(read_certificates(certificate)?, read_key(key)?)
        .map_err(|e| Error::Usage(format!("tls.certificate/tls.key: {e}")))
}

/// The client side of a coordinator: trusts nodes whose certificates chain to
/// `ca`, and presents `certificate` as its own identity.
pub fn client_config(ca: &Path, certificate: &Path, key: &Path) -> Result<ClientConfig> {
    let roots = read_roots(ca)?;
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certificates(certificate)?, read_key(key)?)
        .map_err(|e| Error::Usage(format!("client certificate/key: {e}")))
}

/// Full WebPKI verification of the client chain, then a name check: the
/// certificate must be valid for one of the allowed names.
#[derive(Debug)]
struct AllowListedClients {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for AllowListedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self
            .allowed
            .iter()
            .any(|name| cert.verify_is_valid_for_subject_name(name).is_ok())
        {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!(
                "refused a client certificate from the trusted CA whose name is not on tls.allowed_clients"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
