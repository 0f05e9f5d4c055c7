//! Grants: what the coordinator sends a site instead of the user's token.
//!
//! A user's access token is good at the coordinator and, before grants, at
//! every node: a site that received it with a question (or a rogue node
//! polling as that site) could act as the user everywhere. So the user's
//! token now stops at the coordinator. The coordinator checks it, and for
//! each site it asks writes a grant: a JWT signed with the coordinator's
//! own Ed25519 key (never the identity provider's) that names
//!
//! - the site it is for (`aud`), so that it is refused at every other site;
//! - the user's checked identity: `sub`, `project`, `role`, and for a
//!   steward the sites they steward;
//! - a lifetime of minutes (`exp`) and a unique id (`jti`), which the site
//!   takes once only.
//!
//! Its JOSE header is typed (`typ: bonebank-grant+jwt`, as RFC 8725
//! advises), so a grant can never pass as an access token or the other way
//! round. A node trusts the coordinator's public key from its config, as it
//! trusts the network's CA; the coordinator accepts no grant anywhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use bonebank_schemas::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::identity::Caller;
use crate::{Error, Result};

/// The JOSE `typ` of a grant.
pub const GRANT_TYPE: &str = "bonebank-grant+jwt";
/// The issuer every grant names.
const ISSUER: &str = "bonebank-coordinator";
/// Grants a node remembers having taken, at most (each until it expires):
/// about 10 MB at the most, and room for some 2,800 grants a second at the
/// longest lifetime a coordinator gives (its deadline and a minute, with
/// the leeway).
const TAKEN_CAPACITY: usize = 262_144;
/// The longest lifetime a node accepts, whatever a grant says.
pub const MAX_LIFETIME_SECS: u64 = 600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    project: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sites: Vec<String>,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Whether `token` is a grant by its header's type: a grant is never
/// checked as an access token, nor an access token as a grant.
pub fn is_grant(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| h.typ.as_deref() == Some(GRANT_TYPE))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io(path))
}

/// The coordinator's side: signs grants.
pub struct GrantSigner {
    key: EncodingKey,
    lifetime_secs: u64,
}

impl std::fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSigner")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl GrantSigner {
    /// The signer whose Ed25519 private key (PKCS#8 PEM) is at `path`.
    pub fn from_file(path: &Path, lifetime_secs: u64) -> Result<Self> {
        let key = EncodingKey::from_ed_pem(&read(path)?).map_err(|e| {
            Error::Usage(format!(
                "{}: not an Ed25519 private key in PEM ({e}); make one with `openssl genpkey -algorithm ed25519`",
                path.display()
            ))
        })?;
        if !(1..=MAX_LIFETIME_SECS).contains(&lifetime_secs) {
            return Err(Error::Usage(format!(
                "a grant lives between 1 and {MAX_LIFETIME_SECS} seconds, not {lifetime_secs}"
            )));
        }
        Ok(Self { key, lifetime_secs })
    }

    /// A grant for `caller` at `site`, good for this signer's lifetime.
    pub fn sign(&self, caller: &Caller, site: &str) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: site.into(),
            sub: caller.user.clone(),
            project: caller.project.clone(),
            role: caller.role,
            sites: caller.sites.clone(),
            iat: now,
            exp: now + self.lifetime_secs,
            jti: hex::encode(rand::random::<[u8; 16]>()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(GRANT_TYPE.into());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("Ed25519 signing cannot fail")
    }
}

/// A node's side: takes grants for its own site, each once.
pub struct GrantVerifier {
    key: DecodingKey,
    site: String,
    leeway_secs: u64,
    /// Grant ids (128 random bits) taken, with when they expire.
    taken: Mutex<Taken>,
}

impl std::fmt::Debug for GrantVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantVerifier")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

/// The grants a node has taken, and when it last forgot the expired ones.
#[derive(Debug, Default)]
struct Taken {
    ids: HashMap<u128, u64>,
    swept: u64,
}

fn refused(why: impl Into<String>) -> Error {
    Error::Unauthenticated(why.into())
}

impl GrantVerifier {
    /// The verifier for `site` that trusts the coordinator's Ed25519 public
    /// key (PEM) at `path`.
    pub fn from_file(path: &Path, site: &str, leeway_secs: u64) -> Result<Self> {
        let key = DecodingKey::from_ed_pem(&read(path)?).map_err(|e| {
            Error::Usage(format!(
                "{}: not an Ed25519 public key in PEM ({e}); it is the coordinator's grant key, from `openssl pkey -pubout`",
                path.display()
            ))
        })?;
        Ok(Self {
            key,
            site: site.into(),
            leeway_secs,
            taken: Mutex::new(Taken::default()),
        })
    }

    /// The caller `grant` names, if it is a grant from the coordinator for
    /// this site, in its lifetime, and not taken before.
    pub fn verify(&self, grant: &str) -> Result<Caller> {
        let header = jsonwebtoken::decode_header(grant)
            .map_err(|_| refused("the grant is not a signed JWT"))?;
        if header.typ.as_deref() != Some(GRANT_TYPE) || header.alg != Algorithm::EdDSA {
            return Err(refused("not a grant from the coordinator"));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[&self.site]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_secs;
        let claims = jsonwebtoken::decode::<Claims>(grant, &self.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                refused(match e.kind() {
                    K::ExpiredSignature => "the coordinator's grant has expired; ask again".to_owned(),
                    K::InvalidAudience => format!(
                        "the grant is for another site; this is {}",
                        self.site
                    ),
                    K::InvalidSignature => {
                        "the grant's signature does not verify with the coordinator's key (grants.coordinator_key)".to_owned()
                    }
                    other => format!("the grant was not accepted: {other:?}"),
                })
            })?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME_SECS
            || claims.iat > now + self.leeway_secs
        {
            return Err(refused(
                "the grant's lifetime is longer than a site accepts, or it is dated in the future",
            ));
        }
        let id = u128::from_str_radix(&claims.jti, 16)
            .ok()
            .filter(|_| claims.jti.len() == 32)
            .ok_or_else(|| refused("the grant's id is not one the coordinator writes"))?;
        self.take(id, claims.exp + self.leeway_secs, now)?;
        Ok(Caller {
            user: claims.sub,
            project: claims.project,
            role: claims.role,
            sites: claims.sites,
            email: None,
        })
    }

    /// Marks grant `id` taken until `until`, or refuses it if it was.
    fn take(&self, id: u128, until: u64, now: u64) -> Result<()> {
        let mut taken = self.taken.lock().expect("grant ids");
        let Taken { ids: taken, swept } = &mut *taken;
        if taken.get(&id).is_some_and(|&t| t >= now) {
            return Err(refused(
                "this grant was used before; the coordinator writes a new one for every request",
            ));
        }
        if taken.len() >= TAKEN_CAPACITY {
            // Ids expire by the second: one sweep a second is enough, and a
            // full table is not scanned again for every grant.
            if *swept < now {
                taken.retain(|_, &mut t| t >= now);
                *swept = now;
            }
            if taken.len() >= TAKEN_CAPACITY {
                return Err(Error::IdentityUnavailable(
                    "too many requests from the coordinator at once; try again in a minute".into(),
                ));
            }
        }
        taken.insert(id, until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh Ed25519 key pair as the coordinator's and a node's files.
    fn keys(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let (private, public) = (dir.join("grant.key"), dir.join("grant.pub"));
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        (private, public)
    }

    fn alice() -> Caller {
        Caller {
            user: "alice".into(),
            project: "p1".into(),
            role: Role::Researcher,
            sites: vec![],
            email: None,
        }
    }

    #[test]
    fn a_grant_is_taken_once_at_its_own_site_only() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys(dir.path());
        let signer = GrantSigner::from_file(&private, 60).unwrap();
        let odense = GrantVerifier::from_file(&public, "DK-ODE", 0).unwrap();
        let naestved = GrantVerifier::from_file(&public, "DK-NAE", 0).unwrap();

        let grant = signer.sign(&alice(), "DK-ODE");
        assert!(is_grant(&grant));
        let e = naestved.verify(&grant).unwrap_err();
        assert!(e.to_string().contains("another site"), "{e}");
        assert_eq!(odense.verify(&grant).unwrap(), alice());
        let e = odense.verify(&grant).unwrap_err();
        assert!(e.to_string().contains("used before"), "{e}");
        // A new grant for the same question is fine.
        assert_eq!(
            odense.verify(&signer.sign(&alice(), "DK-ODE")).unwrap(),
            alice()
        );
    }

    #[test]
    fn a_grant_from_another_key_or_an_untyped_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = keys(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (rogue_key, _) = keys(other.path());
        let node = GrantVerifier::from_file(&public, "DK-ODE", 0).unwrap();

        let forged = GrantSigner::from_file(&rogue_key, 60)
            .unwrap()
            .sign(&alice(), "DK-ODE");
        let e = node.verify(&forged).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");

        // Signed with the right key but typed as an ordinary JWT: refused,
        // and not taken for a grant by the services' extractor either.
        let pem = std::fs::read(dir.path().join("grant.key")).unwrap();
        let key = EncodingKey::from_ed_pem(&pem).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: "DK-ODE".into(),
            sub: "alice".into(),
            project: "p1".into(),
            role: Role::Researcher,
            sites: vec![],
            iat: now,
            exp: now + 60,
            jti: format!("{:032x}", 1),
        };
        let untyped = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert!(!is_grant(&untyped));
        let e = node.verify(&untyped).unwrap_err();
        assert!(e.to_string().contains("not a grant"), "{e}");

        // A grant that claims to live longer than a site accepts.
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(GRANT_TYPE.into());
        let long = Claims {
            exp: now + MAX_LIFETIME_SECS + 10,
            jti: format!("{:032x}", 2),
            ..claims
        };
        let long = jsonwebtoken::encode(&header, &long, &key).unwrap();
        let e = node.verify(&long).unwrap_err();
        assert!(e.to_string().contains("lifetime"), "{e}");
    }

    #[test]
    fn the_grants_taken_are_bounded_and_forgotten_once_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = keys(dir.path());
        let node = GrantVerifier::from_file(&public, "DK-ODE", 0).unwrap();
        for id in 0..TAKEN_CAPACITY as u128 {
            node.take(id, 100, 50).unwrap();
        }
        // Full of grants still alive: a new one waits, nothing is dropped.
        assert!(node.take(u128::MAX, 100, 50).is_err());
        assert!(
            node.take(7, 100, 60).is_err(),
            "a taken grant was forgotten"
        );
        // Once they have expired they are forgotten, and room is made.
        node.take(u128::MAX, 200, 101).unwrap();
        assert_eq!(node.taken.lock().unwrap().ids.len(), 1);
    }

    #[test]
    fn an_expired_grant_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys(dir.path());
        let pem = std::fs::read(&private).unwrap();
        let key = EncodingKey::from_ed_pem(&pem).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(GRANT_TYPE.into());
        let old = Claims {
            iss: ISSUER.into(),
            aud: "DK-ODE".into(),
            sub: "alice".into(),
            project: "p1".into(),
            role: Role::Researcher,
            sites: vec![],
            iat: now - 120,
            exp: now - 60,
            jti: format!("{:032x}", 3),
        };
        let old = jsonwebtoken::encode(&header, &old, &key).unwrap();
        let node = GrantVerifier::from_file(&public, "DK-ODE", 0).unwrap();
        let e = node.verify(&old).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn keys_that_are_not_ed25519_are_refused_with_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let p256 = rcgen::KeyPair::generate().unwrap();
        let path = dir.path().join("p256.key");
        std::fs::write(&path, p256.serialize_pem()).unwrap();
        let e = GrantSigner::from_file(&path, 60).unwrap_err();
        assert!(e.to_string().contains("genpkey"), "{e}");
    }
}
