//! Checking access tokens. Every node verifies the bearer token the
//! coordinator passes through, on its own: issuer, audience, expiry and
//! not-before (with a small leeway), and the signature against the keys the
//! issuer publishes. The algorithm is pinned to what the issuer publishes for
//! the signing key; `none` and shared-secret algorithms are never accepted.
//! Role, project and stewarded sites come from claims named in the config.

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
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            role: "bonebank_role".into(),
            project: "bonebank_project".into(),
            sites: "bonebank_sites".into(),
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

/// The issuer's keys as last fetched.
#[derive(Debug, Default)]
struct Keys {
    by_kid: HashMap<String, PublishedKey>,
    /// When the keys above were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried, whether it worked or not.
    tried: Option<Instant>,
}

#[derive(Clone)]
struct PublishedKey {
    key: DecodingKey,
    /// The only algorithms this key may be used with.
    algs: Vec<Algorithm>,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKey")
            .field("algs", &self.algs)
            .finish()
    }
}

/// Keys are fetched again on an unknown key id, but not more often than this,
/// so that tokens with made-up key ids cannot make a node hammer the issuer.
pub const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// And always after this long, to pick up rotations and revocations.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

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

    /// The caller a verified token describes.
    pub fn caller(&self, claims: &Value) -> Result<Caller> {
        let names = &self.settings.claims;
        let user = claim(claims, &names.user)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .ok_or_else(|| unauthenticated(format!("the token has no {:?} claim", names.user)))?
            .to_owned();
        let roles: Vec<Role> = strings(claim(claims, &names.role))
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect();
        let role = match roles.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::Forbidden(format!(
                    "the token carries no bonebank role in its {:?} claim (researcher, industry or steward)",
                    names.role
                )));
            }
            many => {
                return Err(Error::Forbidden(format!(
                    "the token carries {} bonebank roles in its {:?} claim; a user acts in one role",
                    many.len(),
                    names.role
                )));
            }
        };
        let project = claim(claims, &names.project)
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty() && p.len() <= 256)
            .map(str::to_owned);
        let project = match (role, project) {
            (_, Some(p)) => p,
            // Stewards decide; they are not charged for queries of a project.
            (Role::Steward, None) => "stewardship".to_owned(),
            (_, None) => {
                return Err(Error::Forbidden(format!(
                    "the token names no project in its {:?} claim; budgets are kept per project",
                    names.project
                )));
            }
        };
        let sites = if role == Role::Steward {
            strings(claim(claims, &names.sites))
        } else {
            Vec::new()
        };
        Ok(Caller {
            user,
            project,
            role,
            sites,
        })
    }

    /// The published key for `kid`, fetching the issuer's keys when they are
    /// not known yet, are old, or do not contain `kid`.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<PublishedKey> {
        if let Some(key) = self.lookup(kid, alg, KEYS_MAX_AGE).await? {
            return Ok(key);
        }
        let mut failure = None;
        {
            let _one = self.fetching.lock().await;
            // Another request may have fetched while this one waited.
            if let Some(key) = self.lookup(kid, alg, REFETCH_AFTER).await? {
                return Ok(key);
            }
            let tried_lately = self
                .keys
                .read()
                .await
                .tried
                .is_some_and(|t| t.elapsed() < REFETCH_AFTER);
            if !tried_lately {
                let fetched = self.fetch().await;
                let mut keys = self.keys.write().await;
                keys.tried = Some(Instant::now());
                match fetched {
                    Ok((by_kid, at)) => {
                        keys.by_kid = by_kid;
                        keys.fetched = Some(at);
                    }
                    Err(e) => failure = Some(e),
                }
            }
        }
        // A key fetched before still works while the issuer cannot be
        // reached; with no keys at all, no token can be checked.
        if let Some(key) = self.lookup(kid, alg, Duration::MAX).await? {
            return Ok(key);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if self.keys.read().await.fetched.is_none() {
            return Err(Error::IdentityUnavailable(
                "the identity provider's keys could not be fetched; try again shortly".into(),
            ));
        }
        Err(unauthenticated(match kid {
            Some(kid) => format!(
                "the token is signed with key id {kid:?}, which the issuer does not publish"
            ),
            None => "the token names no key id and the issuer publishes several keys".into(),
        }))
    }

    /// A known key, if the keys are younger than `max_age`.
    async fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        max_age: Duration,
    ) -> Result<Option<PublishedKey>> {
        let keys = self.keys.read().await;
        if keys.fetched.is_none_or(|t| t.elapsed() >= max_age) {
            return Ok(None);
        }
        Ok(match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => {
                let fitting: Vec<_> = keys
                    .by_kid
                    .values()
                    .filter(|k| k.algs.contains(&alg))
                    .collect();
                match fitting.as_slice() {
                    [one] => Some((*one).clone()),
                    _ => None,
                }
            }
        })
    }

    /// Discovery, then the JWKS: the usable signing keys by key id.
    async fn fetch(&self) -> Result<(HashMap<String, PublishedKey>, Instant)> {
        let issuer_down = |e: String| {
            tracing::warn!(issuer = %self.settings.issuer, "fetching the issuer's keys: {e}");
            Error::IdentityUnavailable(
                "the identity provider's keys could not be fetched; try again shortly".into(),
            )
        };
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc: Value = self.get_json(&discovery).await.map_err(issuer_down)?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.settings.issuer.as_str()) {
            return Err(issuer_down(format!(
                "discovery names issuer {:?}, not the configured one",
                doc.get("issuer")
            )));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| issuer_down("discovery has no jwks_uri".into()))?
            .to_owned();
        let published_algs: Vec<Algorithm> = ["id_token_signing_alg_values_supported"]
            .iter()
            .flat_map(|k| strings(doc.get(*k)))
            .filter_map(|a| asymmetric(&a))
            .collect();
        let set: JwkSet =
            serde_json::from_value(self.get_json(&jwks_uri).await.map_err(issuer_down)?)
                .map_err(|e| issuer_down(format!("the JWKS does not parse: {e}")))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature))
            {
                continue;
            }
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algs = key_algorithms(jwk, &published_algs);
            if algs.is_empty() {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    by_kid.insert(kid, PublishedKey { key, algs });
                }
                Err(e) => tracing::warn!(%kid, "skipping an unusable published key: {e}"),
            }
        }
        tracing::info!(issuer = %self.settings.issuer, keys = by_kid.len(), "fetched the issuer's signing keys");
        Ok((by_kid, Instant::now()))
    }

    async fn get_json(&self, url: &str) -> std::result::Result<Value, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("{url}: {e}"))
    }
}

/// The algorithm and key id from a token's header, refusing unsigned and
/// shared-secret tokens by name.
fn header(token: &str) -> Result<(Algorithm, Option<String>)> {
    let not_jwt = || unauthenticated("the bearer token is not a signed JWT");
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_jwt());
    };
    let head: Value = URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(not_jwt)?;
    let alg = head.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg.eq_ignore_ascii_case("none") || alg.is_empty() {
        return Err(unauthenticated(
            "the token is unsigned (alg \"none\"); only signed tokens are accepted",
        ));
    }
    let alg = asymmetric(alg).ok_or_else(|| {
        unauthenticated(format!(
            "the token is signed with {alg:?}; only the issuer's public-key algorithms are accepted"
        ))
    })?;
    let kid = head.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok((alg, kid))
}

/// Public-key signature algorithms; shared-secret (HS*) ones are refused.
fn asymmetric(name: &str) -> Option<Algorithm> {
    let alg: Algorithm = name.parse().ok()?;
    use Algorithm as A;
    match alg {
        A::HS256 | A::HS384 | A::HS512 => None,
        other => Some(other),
    }
}

/// The algorithms a published key may sign with: its own `alg` if it names
/// one; else those the issuer publishes that fit the key's type.
fn key_algorithms(jwk: &Jwk, published: &[Algorithm]) -> Vec<Algorithm> {
    use Algorithm as A;
    let fits: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![A::EdDSA],
        AlgorithmParameters::OctetKey(_) => vec![],
    };
    if let Some(named) = jwk.common.key_algorithm {
        let named = match named {
            KeyAlgorithm::RS256 => A::RS256,
            KeyAlgorithm::RS384 => A::RS384,
            KeyAlgorithm::RS512 => A::RS512,
            KeyAlgorithm::PS256 => A::PS256,
            KeyAlgorithm::PS384 => A::PS384,
            KeyAlgorithm::PS512 => A::PS512,
            KeyAlgorithm::ES256 => A::ES256,
            KeyAlgorithm::ES384 => A::ES384,
            KeyAlgorithm::EdDSA => A::EdDSA,
            _ => return vec![],
        };
        return fits.into_iter().filter(|a| *a == named).collect();
    }
    fits.into_iter().filter(|a| published.contains(a)).collect()
}

/// A claim by name; a dotted name descends into objects.
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    name.split('.').try_fold(claims, |v, part| v.get(part))
}

/// A string claim or a list of strings, as a list.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
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
