//! Checking access tokens, wherever one arrives (the coordinator's API, a
//! node's stewards' sign-in; the coordinator's questions reach a node with
//! a grant instead, see [`crate::grant`]): issuer, audience, expiry and
//! not-before (with a small leeway), and the signature against the keys the
//! issuer publishes ([`keys`]). The algorithm is pinned to what the issuer
//! publishes for the signing key; `none` and shared-secret algorithms are
//! never accepted. Role, project and stewarded sites come from claims named
//! in the config ([`claims`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bonebank_schemas::Role;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Caller;
use crate::{Error, Result};

mod claims;
mod keys;

use claims::strings;
pub use keys::REFETCH_AFTER;
use keys::{Keys, header};

/// The `[oidc]` section: whom a node (or the coordinator) trusts for identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer exactly as tokens carry it in `iss`. Its keys are found
    /// through `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience tokens must name in `aud`: the bonebank network's API.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Which claims carry the user, role, project and stewarded sites.
    #[serde(default)]
    pub claims: ClaimNames,
    /// A PEM file with the CA of an issuer that uses a private CA; public web
    /// roots are trusted too.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// Claim names. A dotted name reads a nested claim, e.g. Keycloak's
/// `realm_access.roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub user: String,
    /// A string or a list; values that are not a bonebank role
    /// (`researcher`, `industry`, `steward`) are ignored, and exactly one
    /// must remain.
    pub role: String,
    pub project: String,
    /// For stewards: a string or a list of site ids.
    pub sites: String,
    /// The user's email address, where the provider gives one: the
    /// coordinator writes to it when a question is decided. Never sent to
    /// a node.
    pub email: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            role: "bonebank_role".into(),
            project: "bonebank_project".into(),
            sites: "bonebank_sites".into(),
            email: "email".into(),
        }
    }
}

fn default_leeway() -> u64 {
    30
}

impl OidcSettings {
    pub fn resolve(&mut self, base: &Path) {
        if let Some(ca) = &mut self.ca
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
    }

    /// Checks what the types cannot. A plain-HTTP issuer is allowed only on
    /// loopback (the development provider and tests).
    pub fn validate(&self) -> Result<()> {
        crate::server::check_https_or_loopback(&self.issuer, "oidc.issuer")?;
        if self.audience.trim().is_empty() {
            return Err(Error::Usage("oidc.audience must not be empty".into()));
        }
        if self.leeway_seconds > 300 {
            return Err(Error::Usage(
                "oidc.leeway_seconds must be at most 300".into(),
            ));
        }
        for (key, name) in [
            ("user", &self.claims.user),
            ("role", &self.claims.role),
            ("project", &self.claims.project),
            ("sites", &self.claims.sites),
        ] {
            if name.trim().is_empty() {
                return Err(Error::Usage(format!("oidc.claims.{key} must not be empty")));
            }
        }
        Ok(())
    }

    /// The HTTP client used to reach the issuer (see [`issuer_client`]).
    pub fn http_client(&self) -> Result<reqwest::Client> {
        issuer_client(self.ca.as_deref())
    }
}

/// An HTTP client for talking to an identity provider: no redirects (the
/// `openidconnect` docs warn that following them opens up SSRF), short
/// timeouts, the public web roots plus `ca` if given.
pub fn issuer_client(ca: Option<&Path>) -> Result<reqwest::Client> {
    bonebank_login::issuer_client(ca).map_err(Error::Usage)
}

pub use bonebank_login::is_loopback;

/// Verifies access tokens against one issuer.
#[derive(Debug)]
pub struct TokenVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: tokio::sync::RwLock<Keys>,
    /// One fetch at a time; others wait for its result.
    fetching: tokio::sync::Mutex<()>,
    /// Tokens whose signature, issuer and audience checked out, by their
    /// SHA-256, with the caller they name and when they expire: a token
    /// sent again (the CLI and a session send the same one until it
    /// expires) costs a hash instead of a signature check. Times are
    /// checked again on every use.
    checked: std::sync::Mutex<HashMap<[u8; 32], Checked>>,
}

#[derive(Debug, Clone)]
struct Checked {
    caller: Caller,
    /// `exp` and `nbf` of the token (Unix seconds).
    exp: u64,
    nbf: Option<u64>,
    /// Entries are dropped this long after they were checked, so that a key
    /// the issuer withdraws stops working soon even for cached tokens.
    until: Instant,
}

/// How many checked tokens are remembered, and for how long at most.
const CHECKED_CAPACITY: usize = 10_000;
const CHECKED_FOR: Duration = Duration::from_secs(60);

/// Why a token was not accepted: 401 (who are you?) or 403 (not allowed).
fn unauthenticated(why: impl Into<String>) -> Error {
    Error::Unauthenticated(why.into())
}

impl TokenVerifier {
    pub fn new(settings: OidcSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self {
            http: settings.http_client()?,
            settings,
            keys: Default::default(),
            fetching: Default::default(),
            checked: Default::default(),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Verifies a bearer token and reads the caller from its claims.
    pub async fn verify(&self, token: &str) -> Result<Caller> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .checked
            .lock()
            .expect("token cache")
            .get(&digest)
            .cloned();
        if let Some(hit) = cached
            && hit.until > Instant::now()
        {
            let now = jsonwebtoken::get_current_timestamp();
            let leeway = self.settings.leeway_seconds;
            if hit.exp + leeway <= now {
                return Err(unauthenticated("the token has expired; sign in again"));
            }
            if hit.nbf.is_some_and(|nbf| nbf > now + leeway) {
                return Err(unauthenticated("the token is not valid yet (nbf)"));
            }
            return Ok(hit.caller);
        }
        let claims = self.verify_claims(token).await?;
        let caller = self.caller(&claims)?;
        let entry = Checked {
            caller: caller.clone(),
            // Numeric dates may be written as decimals.
            exp: claims
                .get("exp")
                .and_then(Value::as_f64)
                .map_or(0, |t| t as u64),
            nbf: claims.get("nbf").and_then(Value::as_f64).map(|t| t as u64),
            until: Instant::now() + CHECKED_FOR,
        };
        let mut checked = self.checked.lock().expect("token cache");
        if checked.len() >= CHECKED_CAPACITY {
            let now = Instant::now();
            checked.retain(|_, c| c.until > now);
            if checked.len() >= CHECKED_CAPACITY {
                checked.clear();
            }
        }
        checked.insert(digest, entry);
        Ok(caller)
    }

    /// Verifies signature, issuer, audience and times; returns the claims.
    pub async fn verify_claims(&self, token: &str) -> Result<Value> {
        let (alg, kid) = header(token)?;
        let key = self.key_for(kid.as_deref(), alg).await?;
        if !key.algs.contains(&alg) {
            return Err(unauthenticated(format!(
                "the token is signed with {alg:?}, but the issuer publishes this key for {:?} only",
                key.algs
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            unauthenticated(match e.kind() {
                K::ExpiredSignature => "the token has expired; sign in again".to_owned(),
                K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                K::InvalidIssuer => format!(
                    "the token was issued by another issuer; this site trusts {}",
                    self.settings.issuer
                ),
                K::InvalidAudience => format!(
                    "the token is for another audience; this site accepts tokens for {:?}",
                    self.settings.audience
                ),
                K::InvalidSignature => "the token's signature does not verify".to_owned(),
                K::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
                other => format!("the token was not accepted: {other:?}"),
            })
        })?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::keys::key_algorithms;
    use super::*;
    use serde_json::json;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(OidcSettings {
            issuer: "http://127.0.0.1:1".into(),
            audience: "bonebank".into(),
            leeway_seconds: 5,
            claims: ClaimNames {
                role: "realm_access.roles".into(),
                ..ClaimNames::default()
            },
            ca: None,
        })
        .unwrap()
    }

    fn token_with_header(head: Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(head.to_string()),
            URL_SAFE_NO_PAD.encode(json!({"sub": "a"}).to_string()),
            URL_SAFE_NO_PAD.encode(b"sig")
        )
    }

    #[test]
    fn unsigned_and_shared_secret_tokens_are_refused_by_name() {
        for alg in ["none", "None", ""] {
            let e = header(&token_with_header(json!({"alg": alg}))).unwrap_err();
            assert!(e.to_string().contains("unsigned"), "{alg}: {e}");
        }
        for alg in ["HS256", "HS512"] {
            let e = header(&token_with_header(json!({"alg": alg}))).unwrap_err();
            assert!(e.to_string().contains("public-key"), "{alg}: {e}");
        }
        assert!(header("abc").is_err());
        assert!(header("a.b.c.d").is_err());
        let (alg, kid) = header(&token_with_header(json!({"alg": "ES256", "kid": "k1"}))).unwrap();
        assert_eq!((alg, kid.as_deref()), (Algorithm::ES256, Some("k1")));
    }

    #[test]
    fn roles_come_from_the_configured_claim_and_must_be_one() {
        let v = verifier();
        let caller = v
            .caller(&json!({"sub": "u1", "realm_access": {"roles": ["offline_access", "researcher"]}, "bonebank_project": "p"}))
            .unwrap();
        assert_eq!(
            (caller.role, caller.project.as_str()),
            (Role::Researcher, "p")
        );
        let none =
            v.caller(&json!({"sub": "u1", "bonebank_role": "researcher", "bonebank_project": "p"}));
        assert!(matches!(none, Err(Error::Forbidden(_))), "{none:?}");
        let two = v.caller(&json!({"sub": "u1", "realm_access": {"roles": ["researcher", "steward"]}, "bonebank_project": "p"}));
        assert!(matches!(two, Err(Error::Forbidden(_))), "{two:?}");
        let no_project = v.caller(&json!({"sub": "u1", "realm_access": {"roles": ["industry"]}}));
        assert!(
            matches!(no_project, Err(Error::Forbidden(_))),
            "{no_project:?}"
        );
    }

    #[test]
    fn only_stewards_carry_sites() {
        let v = verifier();
        let steward = v
            .caller(&json!({"sub": "s", "realm_access": {"roles": ["steward"]}, "bonebank_sites": ["DK-ODE", "DK-NAE"]}))
            .unwrap();
        assert_eq!(steward.sites, ["DK-ODE", "DK-NAE"]);
        let researcher = v
            .caller(&json!({"sub": "r", "realm_access": {"roles": ["researcher"]}, "bonebank_project": "p", "bonebank_sites": "DK-ODE"}))
            .unwrap();
        assert!(researcher.sites.is_empty());
    }

    #[test]
    fn a_key_is_pinned_to_its_published_algorithm() {
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "kid": "k",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uE9hNFj0",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert_eq!(
            key_algorithms(&jwk, &[Algorithm::ES256, Algorithm::RS256]),
            [Algorithm::ES256]
        );
        assert!(key_algorithms(&jwk, &[Algorithm::RS256]).is_empty());
        let mut with_alg = jwk.clone();
        with_alg.common.key_algorithm = Some(KeyAlgorithm::ES256);
        assert_eq!(key_algorithms(&with_alg, &[]), [Algorithm::ES256]);
        with_alg.common.key_algorithm = Some(KeyAlgorithm::RS256);
        assert!(key_algorithms(&with_alg, &[Algorithm::RS256]).is_empty());
    }

    #[test]
    fn plain_http_issuers_only_on_loopback() {
        let mut s = verifier().settings().clone();
        s.issuer = "http://login.example.org/realms/x".into();
        assert!(s.validate().is_err());
        s.issuer = "https://login.example.org/realms/x".into();
        assert!(s.validate().is_ok());
        s.leeway_seconds = 301;
        assert!(s.validate().is_err());
    }
}
