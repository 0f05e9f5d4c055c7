//! A development PKI for mutual TLS on one machine: a CA, a server
//! certificate per node and a client certificate for the coordinator. A real
//! network uses certificates from the sites' own CA; the files have the same
//! shape, so configs do not change.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use bonebank_schemas::SiteId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// The name in the coordinator's client certificate, and on the nodes'
/// allow-lists, in the development PKI.
pub const COORDINATOR_NAME: &str = "coordinator.bonebank.test";

/// The DNS name of a site's node in the development PKI, e.g.
/// `de-lue.node.bonebank.test`.
pub fn node_name(site: &SiteId) -> String {
    format!(
        "{}.node.bonebank.test",
        site.to_string().to_ascii_lowercase()
    )
}

/// A certificate authority that can issue certificates.
#[derive(Debug)]
pub struct Ca {
    pub cert_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn err(e: rcgen::Error) -> Error {
    Error::Certificate(e.to_string())
}

impl Ca {
    /// A new CA named `name`, valid for ten years.
    pub fn generate(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "bonebank development");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Self {
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    fn issue(
        &self,
        names: &[String],
        ips: &[IpAddr],
        usages: &[ExtendedKeyUsagePurpose],
        valid: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> Result<Issued> {
        let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = usages.to_vec();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = valid;
        let key = KeyPair::generate().map_err(err)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A node's certificate for `names` (and loopback addresses): a server
    /// certificate for coordinators that connect to it, and a client
    /// certificate for when it connects out.
    pub fn issue_server(&self, names: &[String]) -> Result<Issued> {
        self.issue_node_until(names, rcgen::date_time_ymd(2035, 1, 1))
    }

    /// Like [`Ca::issue_server`], valid until `not_after` (a past time
    /// makes an expired certificate).
    pub fn issue_node_until(
        &self,
        names: &[String],
        not_after: impl Into<time::OffsetDateTime>,
    ) -> Result<Issued> {
        let not_after = not_after.into();
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let not_before = rcgen::date_time_ymd(2024, 1, 1).min(not_after);
        self.issue(
            names,
            &ips,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            (not_before, not_after),
        )
    }

    /// A coordinator's certificate for `name` (and loopback addresses): a
    /// client certificate for the nodes it connects to, and a server
    /// certificate for the nodes that connect out to it.
    pub fn issue_client(&self, name: &str) -> Result<Issued> {
        self.issue(
            &[name.to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &[
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            (
                rcgen::date_time_ymd(2024, 1, 1),
                rcgen::date_time_ymd(2035, 1, 1),
            ),
        )
    }
}

/// The files of a development PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir {
    pub root: PathBuf,
}

impl PkiDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn coordinator_cert(&self) -> PathBuf {
        self.root.join("coordinator.crt")
    }
    pub fn coordinator_key(&self) -> PathBuf {
        self.root.join("coordinator.key")
    }
    /// The coordinator's grant signing key (Ed25519, PKCS#8 PEM).
    pub fn grant_key(&self) -> PathBuf {
        self.root.join("coordinator-grant.key")
    }
    /// Its public key, which every node trusts.
    pub fn grant_public_key(&self) -> PathBuf {
        self.root.join("coordinator-grant.pub")
    }
    pub fn node_cert(&self, site: &SiteId) -> PathBuf {
        self.root.join("nodes").join(format!("{site}.crt"))
    }
    pub fn node_key(&self, site: &SiteId) -> PathBuf {
        self.root.join("nodes").join(format!("{site}.key"))
    }

    /// Creates a CA, one server certificate per site, the coordinator's
    /// client certificate and its grant signing key pair. Refuses to
    /// overwrite an existing PKI.
    pub fn init(&self, sites: &[SiteId]) -> Result<()> {
        self.init_with(&Ca::generate("bonebank development CA")?, sites)
    }

    /// Like [`PkiDir::init`], with a given CA.
    pub fn init_with(&self, ca: &Ca, sites: &[SiteId]) -> Result<()> {
        if self.root.join("ca.key").exists() {
            return Err(Error::Usage(format!(
                "{} already holds a PKI (ca.key exists); choose another directory",
                self.root.display()
            )));
        }
        fs::create_dir_all(self.root.join("nodes")).map_err(Error::io(&self.root))?;
        write(&self.ca_cert(), &ca.cert_pem, false)?;
        write(&self.root.join("ca.key"), &ca.key.serialize_pem(), true)?;
        let client = ca.issue_client(COORDINATOR_NAME)?;
        write(&self.coordinator_cert(), &client.cert_pem, false)?;
        write(&self.coordinator_key(), &client.key_pem, true)?;
        let grant = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err)?;
        write(&self.grant_key(), &grant.serialize_pem(), true)?;
        write(&self.grant_public_key(), &grant.public_key_pem(), false)?;
        for site in sites {
            let server = ca.issue_server(&[node_name(site), "localhost".into()])?;
            write(&self.node_cert(site), &server.cert_pem, false)?;
            write(&self.node_key(site), &server.key_pem, true)?;
        }
        Ok(())
    }
}

/// Writes a PEM file; keys are readable by their owner only.
pub fn write(path: &Path, pem: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut f = options.open(path).map_err(Error::io(path))?;
    f.write_all(pem.as_bytes()).map_err(Error::io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pki init` lays out what the examples and the local network name: a
    /// CA, the coordinator's certificate, a node certificate per site, and
    /// a grant key pair whose halves belong together; the keys are the
    /// owner's only, and a second init into the same place is refused.
    #[test]
    fn init_writes_a_whole_pki_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        let site = SiteId::parse(SiteId::ODENSE).unwrap();
        pki.init(std::slice::from_ref(&site)).unwrap();
        for file in [
            pki.ca_cert(),
            pki.coordinator_cert(),
            pki.node_cert(&site),
            pki.grant_public_key(),
        ] {
            assert!(file.exists(), "{}", file.display());
        }
        for key in [pki.coordinator_key(), pki.node_key(&site), pki.grant_key()] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let signer = bonebank_service::grant::GrantSigner::from_file(&pki.grant_key(), 60).unwrap();
        let node =
            bonebank_service::grant::GrantVerifier::from_file(&pki.grant_public_key(), "DK-ODE", 0)
                .unwrap();
        let caller = bonebank_service::Caller {
            user: "alice".into(),
            project: "p".into(),
            role: bonebank_schemas::Role::Researcher,
            sites: Vec::new(),
            email: None,
        };
        assert_eq!(
            node.verify(&signer.sign(&caller, "DK-ODE")).unwrap(),
            caller
        );

        let again = pki.init(std::slice::from_ref(&site)).unwrap_err();
        assert!(again.to_string().contains("already holds a PKI"), "{again}");
    }
}
