//! The issuer's published keys: fetched by discovery and its JWKS, kept
//! for an hour, fetched again on an unknown key id (not more often than
//! [`REFETCH_AFTER`]), and each used only with the algorithms published
//! for it.

use super::*;

/// The issuer's keys as last fetched.
#[derive(Debug, Default)]
pub(super) struct Keys {
    by_kid: HashMap<String, PublishedKey>,
    /// When the keys above were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried, whether it worked or not.
    tried: Option<Instant>,
}

#[derive(Clone)]
pub(super) struct PublishedKey {
    pub(super) key: DecodingKey,
    /// The only algorithms this key may be used with.
    pub(super) algs: Vec<Algorithm>,
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

impl TokenVerifier {
    /// The published key for `kid`, fetching the issuer's keys when they are
    /// not known yet, are old, or do not contain `kid`.
    pub(super) async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<PublishedKey> {
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
pub(super) fn header(token: &str) -> Result<(Algorithm, Option<String>)> {
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
pub(super) fn asymmetric(name: &str) -> Option<Algorithm> {
    let alg: Algorithm = name.parse().ok()?;
    use Algorithm as A;
    match alg {
        A::HS256 | A::HS384 | A::HS512 => None,
        other => Some(other),
    }
}

/// The algorithms a published key may sign with: its own `alg` if it names
/// one; else those the issuer publishes that fit the key's type.
pub(super) fn key_algorithms(jwk: &Jwk, published: &[Algorithm]) -> Vec<Algorithm> {
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
