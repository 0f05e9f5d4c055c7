//! TLS material that follows its files: certificates, keys and CAs are read
//! again when a file changes (checked at most once a second, on the next
//! handshake), so a rotated certificate takes effect without a restart. A
//! changed file that cannot be used (half written, wrong key, expired) is
//! reported in the log and the material in use is kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{provider, read_certificates, read_key, read_roots};
use crate::{Error, Result};

/// How often the files are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A value built from files, built again when one of them changes.
struct Reloading<T> {
    what: String,
    paths: Vec<PathBuf>,
    load: Box<dyn Fn() -> Result<T> + Send + Sync>,
    slot: Mutex<Slot<T>>,
}

struct Slot<T> {
    checked: Instant,
    stamp: Stamp,
    /// The files last found unusable.
    failed: Option<Stamp>,
    value: Arc<T>,
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

/// When each file was last changed and how long it is.
fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

impl<T> Reloading<T> {
    /// Loads the value now; an error if the files cannot be used.
    fn new(
        what: String,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T> + Send + Sync + 'static,
    ) -> Result<Self> {
        let value = Arc::new(load()?);
        Ok(Self {
            slot: Mutex::new(Slot {
                checked: Instant::now(),
                stamp: stamp(&paths),
                failed: None,
                value,
            }),
            what,
            paths,
            load: Box::new(load),
        })
    }

    /// The value for the current files.
    fn current(&self) -> Arc<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.checked.elapsed() >= CHECK_EVERY {
            slot.checked = Instant::now();
            let now = stamp(&self.paths);
            if now != slot.stamp {
                match (self.load)() {
                    Ok(value) => {
                        tracing::info!(what = %self.what, "TLS files changed; now in use");
                        slot.value = Arc::new(value);
                        slot.stamp = now;
                        slot.failed = None;
                    }
                    // Tried again each second (a certificate and its key
                    // are rarely replaced in the same instant), said once.
                    Err(e) => {
                        if slot.failed.as_ref() != Some(&now) {
                            tracing::error!(
                                what = %self.what,
                                error = %e,
                                "TLS files changed but cannot be used; keeping the ones in use"
                            );
                            slot.failed = Some(now);
                        }
                    }
                }
            }
        }
        slot.value.clone()
    }
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Refuses a certificate outside its validity period, saying which and
/// since (or until) when: an expired certificate is the commonest reason a
/// site that worked yesterday does not today.
pub fn check_validity(cert: &CertificateDer<'_>, path: &Path) -> Result<()> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        Error::Usage(format!(
            "certificate file {}: not an X.509 certificate: {e}",
            path.display()
        ))
    })?;
    let validity = parsed.validity();
    let now = crate::unix_now() as i64;
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    if validity.not_after.timestamp() < now {
        return Err(Error::Usage(format!(
            "the certificate in {} expired on {}; install a renewed one (it is picked up without a restart)",
            path.display(),
            date(validity.not_after.timestamp())
        )));
    }
    if validity.not_before.timestamp() > now {
        return Err(Error::Usage(format!(
            "the certificate in {} is not valid before {}",
            path.display(),
            date(validity.not_before.timestamp())
        )));
    }
    Ok(())
}

/// The DNS names a certificate carries (its subjectAltName).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// When a certificate stops being valid (Unix seconds).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// This side's own certificate and key, for servers and for clients.
#[derive(Debug)]
pub struct OwnCert(Reloading<CertifiedKey>);

impl OwnCert {
    pub fn new(certificate: &Path, key: &Path) -> Result<Self> {
        let (cert_path, key_path) = (certificate.to_owned(), key.to_owned());
        let load = move || {
            let chain = read_certificates(&cert_path)?;
            check_validity(&chain[0], &cert_path)?;
            let key = provider()
                .key_provider
                .load_private_key(read_key(&key_path)?)
                .map_err(|e| Error::Usage(format!("key file {}: {e}", key_path.display())))?;
            let certified = CertifiedKey::new(chain, key);
            certified.keys_match().map_err(|e| {
                Error::Usage(format!(
                    "{} and {} do not belong together: {e}",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
            Ok(certified)
        };
        Ok(Self(Reloading::new(
            format!("certificate {}", certificate.display()),
            vec![certificate.to_owned(), key.to_owned()],
            load,
        )?))
    }
}

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Client certificates that chain to a CA (read again on change) and carry
/// one of the allowed names: full WebPKI verification of the chain, then
/// the name check.
#[derive(Debug)]
pub struct ClientCerts {
    chain: Reloading<Arc<dyn ClientCertVerifier>>,
    /// Handshake signatures are checked with the provider's algorithms,
    /// which do not change with the CA: no reloaded material is looked at.
    signatures: WebPkiSupportedAlgorithms,
    allowed: Vec<ServerName<'static>>,
    /// The setting that lists the names, for the log.
    setting: String,
}

impl ClientCerts {
    pub fn new(ca: &Path, allowed: &[String], setting: &str) -> Result<Self> {
        if allowed.is_empty() {
            return Err(Error::Usage(format!(
                "{setting} is empty: name the peers that may connect"
            )));
        }
        let allowed = allowed
            .iter()
            .map(|n| {
                ServerName::try_from(n.clone())
                    .map_err(|e| Error::Usage(format!("{setting}: {n:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let ca_path = ca.to_owned();
        let load = move || {
            let roots = read_roots(&ca_path)?;
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::Usage(format!("CA {}: {e}", ca_path.display())))
        };
        Ok(Self {
            chain: Reloading::new(format!("CA {}", ca.display()), vec![ca.to_owned()], load)?,
            signatures: provider().signature_verification_algorithms,
            allowed,
            setting: setting.to_owned(),
        })
    }
}

impl ClientCertVerifier for ClientCerts {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from material that may be replaced; clients
        // present their one certificate anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain
            .current()
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| tracing::warn!(error = %e, "refused a client certificate"))?;
        if self.allowed.iter().any(|name| valid_for(end_entity, name)) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!(
                setting = %self.setting,
                "refused a client certificate from the trusted CA whose name is not allowed"
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.signatures)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.signatures)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

/// Server certificates that chain to a CA (read again on change) and carry
/// the expected name: the configured one, or else the URL's host.
#[derive(Debug)]
pub struct ServerCerts {
    roots: Reloading<Arc<WebPkiServerVerifier>>,
    /// As [`ClientCerts::signatures`].
    signatures: WebPkiSupportedAlgorithms,
    name: Option<ServerName<'static>>,
}

impl ServerCerts {
    pub fn new(ca: &Path, extra_ca: Option<&Path>, name: Option<&str>) -> Result<Self> {
        let name = name
            .map(|n| {
                ServerName::try_from(n.to_owned())
                    .map_err(|e| Error::Usage(format!("server name {n:?}: {e}")))
            })
            .transpose()?;
        let mut paths = vec![ca.to_owned()];
        paths.extend(extra_ca.map(Path::to_owned));
        let files = paths.clone();
        let load = move || {
            let mut roots = read_roots(&files[0])?;
            for extra in &files[1..] {
                for cert in read_certificates(extra)? {
                    roots
                        .add(cert)
                        .map_err(|e| Error::Usage(format!("CA file {}: {e}", extra.display())))?;
                }
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::Usage(format!("CA {}: {e}", files[0].display())))
        };
        Ok(Self {
            roots: Reloading::new(format!("CA {}", ca.display()), paths, load)?,
            signatures: provider().signature_verification_algorithms,
            name,
        })
    }
}

impl ServerCertVerifier for ServerCerts {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().map_or(server_name, |n| n);
        let verified = self.roots.current().verify_server_cert(
            end_entity,
            intermediates,
            name,
            ocsp_response,
            now,
        )?;
        // The same exact name as a client's: a wildcard does not stand in
        // for a site.
        if valid_for(end_entity, name) {
            Ok(verified)
        } else {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.signatures)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.signatures)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

/// Whether a (verified) certificate names exactly `name`.
pub fn names(end_entity: &CertificateDer<'_>, name: &str) -> bool {
    ServerName::try_from(name.to_owned()).is_ok_and(|name| valid_for(end_entity, &name))
}

/// Whether a certificate is valid for `name` and lists that very name: a
/// name stands for one peer (the coordinator, a site), so a wildcard such
/// as `*.bonebank.test`, which a hospital may hold for its whole domain,
/// does not stand in for it. WebPKI's check comes first; the exact match
/// only narrows it.
fn valid_for(end_entity: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
        return false;
    };
    if cert.verify_is_valid_for_subject_name(name).is_err() {
        return false;
    }
    match name {
        ServerName::DnsName(dns) => {
            let wanted = dns.as_ref().trim_end_matches('.');
            cert.valid_dns_names().any(|listed| {
                !listed.starts_with('*')
                    && listed.trim_end_matches('.').eq_ignore_ascii_case(wanted)
            })
        }
        // IP addresses have no wildcards: WebPKI matched them exactly.
        _ => true,
    }
}
