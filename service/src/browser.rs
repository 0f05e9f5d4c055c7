//! Signing people in through their browsers, for every service that has
//! pages: the coordinator's researcher app and each node's steward pages.
//!
//! - `/auth/login` ([`BrowserLogin::begin`]) sends the browser to the
//!   provider with an authorization code request: PKCE S256, a random
//!   `state` also kept in a short-lived cookie, a random `nonce`.
//! - `/auth/callback` ([`BrowserLogin::finish`]) checks state and cookie,
//!   exchanges the code, checks the ID token (signature, issuer, audience,
//!   nonce) and the access token (as every service checks tokens), asks the
//!   service whether this person may come in, and starts a session.
//! - Sessions live in SQLite; only a hash of the cookie is stored. The
//!   cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` when the service's
//!   public URL is https. Sessions renew their access token with the refresh
//!   token, and end after seven days at the latest.
//! - Every request that changes something and arrives with a session must
//!   carry the session's CSRF token ([`BrowserLogin::csrf`]) in the
//!   `X-CSRF-Token` header: a page of another site (or of another service on
//!   the same host: cookies do not keep ports apart) cannot send it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::discovery::{self, DiscoveredClient};
use crate::oidc::TokenVerifier;
use crate::{Caller, Error, Result, error_chain, unix_now};

/// The header a page sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser has to come back from the provider.
const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// Logins in flight at most (each is a few hundred bytes).
const MAX_PENDING: usize = 10_000;
/// Sessions end after this long, whatever the provider says.
const SESSION_DAYS: i64 = 7;

/// How one service signs people in through their browsers.
#[derive(Debug, Clone)]
pub struct BrowserLoginSettings {
    /// The service's client at the provider (authorization code with PKCE).
    pub client_id: String,
    /// That client's secret, if the provider made it a confidential client.
    pub client_secret: Option<String>,
    /// The service's address as browsers reach it; the redirect URI is
    /// `<public_url>/auth/callback`.
    pub public_url: String,
    /// Scopes to ask for besides `openid`.
    pub scopes: Vec<String>,
    /// A resource indicator (RFC 8707), for providers that set a token's
    /// audience from it.
    pub resource: Option<String>,
    /// The session cookie's name. Services on one host need different
    /// names: browsers send a host's cookies to every port.
    pub cookie: String,
}

/// A verified caller and the token that proved it, to pass on.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub caller: Caller,
    pub token: String,
}

struct Pending {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    started: Instant,
}

/// A service's browser sign-in and its sessions.
pub struct BrowserLogin {
    verifier: Arc<TokenVerifier>,
    settings: BrowserLoginSettings,
    secure_cookies: bool,
    http: reqwest::Client,
    discovered: tokio::sync::OnceCell<DiscoveredClient>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<Connection>,
}

impl std::fmt::Debug for BrowserLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserLogin")
            .field("issuer", &self.verifier.settings().issuer)
            .field("public_url", &self.settings.public_url)
            .finish()
    }
}

/// A stored session.
struct Session {
    access: String,
    refresh: Option<String>,
    /// Unix seconds when the access token expires.
    expires: i64,
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// What the provider sends the browser back with.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    /// RFC 9207: the issuer that answered, where the provider says.
    #[serde(default)]
    iss: Option<String>,
}

impl BrowserLogin {
    /// Sessions are kept in the SQLite file `db`.
    pub fn new(
        verifier: Arc<TokenVerifier>,
        mut settings: BrowserLoginSettings,
        db: &Path,
    ) -> Result<Self> {
        let mut sessions = crate::state::open(db)?;
        let fail = |e: rusqlite::Error| Error::Internal(format!("sessions {}: {e}", db.display()));
        // Version 1: the sessions table as below (0: the same, unversioned).
        crate::state::migrate(&mut sessions, db, "browser sessions", 1, |tx, _| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS sessions (
                    id_hash TEXT PRIMARY KEY,
                    user TEXT NOT NULL,
                    access TEXT NOT NULL,
                    refresh TEXT,
                    expires INTEGER NOT NULL,
                    ends INTEGER NOT NULL
                );",
            )
        })?;
        sessions
            .execute("DELETE FROM sessions WHERE ends < ?1", params![unix_now()])
            .map_err(fail)?;
        let http = crate::oidc::issuer_client(verifier.settings().ca.as_deref())?;
        settings.public_url = settings.public_url.trim_end_matches('/').to_owned();
        Ok(Self {
            secure_cookies: settings.public_url.starts_with("https://"),
            verifier,
            settings,
            http,
            discovered: Default::default(),
            pending: Default::default(),
            sessions: Mutex::new(sessions),
        })
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    fn login_cookie(&self) -> String {
        format!("{}_login", self.settings.cookie)
    }

    /// The provider's client, once discovery has worked; tried again on the
    /// next sign-in if not.
    async fn client(&self) -> Result<&DiscoveredClient> {
        self.discovered
            .get_or_try_init(|| async {
                let metadata = discovery::discover(&self.verifier.settings().issuer, &self.http)
                    .await
                    .map_err(|e| {
                        tracing::warn!("{e}");
                        Error::IdentityUnavailable(
                            "the identity provider cannot be reached; try again shortly".into(),
                        )
                    })?;
                let (client, _) = discovery::client(
                    metadata,
                    &self.settings.client_id,
                    self.settings.client_secret.clone(),
                );
                let redirect =
                    RedirectUrl::new(format!("{}/auth/callback", self.settings.public_url))
                        .map_err(|e| Error::Usage(format!("redirect URI: {e}")))?;
                Ok(client.set_redirect_uri(redirect))
            })
            .await
    }

    fn cookie(
        &self,
        name: String,
        value: String,
        path: &str,
        max_age: Duration,
    ) -> Cookie<'static> {
        Cookie::build(name, value)
            .path(path.to_owned())
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(
                max_age.as_secs() as i64,
            ))
            .finish()
    }

    fn removal(&self, name: String, path: &str) -> Cookie<'static> {
        let mut c = self.cookie(name, String::new(), path, Duration::ZERO);
        c.make_removal();
        c
    }

    /// `GET /auth/login`: off to the provider.
    pub async fn begin(&self) -> Result<HttpResponse> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(resource) = &self.settings.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let (url, state, nonce) = request.url();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.retain(|_, p| p.started.elapsed() < LOGIN_WINDOW);
            if pending.len() >= MAX_PENDING {
                return Err(Error::BadRequest(
                    "too many sign-ins in progress; try again in a few minutes".into(),
                ));
            }
            pending.insert(
                state.secret().clone(),
                Pending {
                    verifier,
                    nonce,
                    started: Instant::now(),
                },
            );
        }
        Ok(HttpResponse::SeeOther()
            .insert_header(("Location", url.as_str()))
            .cookie(self.cookie(
                self.login_cookie(),
                state.secret().clone(),
                "/auth",
                LOGIN_WINDOW,
            ))
            .finish())
    }

    /// `GET /auth/callback`: back from the provider. `admit` says whether
    /// the signed-in caller may use this service's pages (its error is what
    /// they are told); only then does a session start.
    pub async fn finish(
        &self,
        req: &HttpRequest,
        params: &Callback,
        admit: impl FnOnce(&Caller) -> Result<()>,
    ) -> Result<HttpResponse> {
        if let Some(error) = &params.error {
            return Err(Error::Unauthenticated(format!(
                "the identity provider did not sign you in: {error}{}",
                params
                    .error_description
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )));
        }
        if let Some(iss) = &params.iss
            && iss != &self.verifier.settings().issuer
        {
            return Err(Error::Unauthenticated(format!(
                "the sign-in came back from {iss}, not from this network's provider"
            )));
        }
        let (Some(code), Some(state)) = (&params.code, &params.state) else {
            // Not a sign-in that finished: the browser is not signed in.
            return Err(Error::Unauthenticated(
                "the provider's answer has no code or state; start again at /auth/login".into(),
            ));
        };
        // The state must be the one this browser was sent off with.
        if req
            .cookie(&self.login_cookie())
            .is_none_or(|c| c.value() != state)
        {
            return Err(Error::Unauthenticated(
                "this sign-in was not started in this browser, or took too long; start again at /auth/login"
                    .into(),
            ));
        }
        let pending = self
            .pending
            .lock()
            .expect("pending lock")
            .remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_WINDOW)
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "this sign-in has expired; start again at /auth/login".into(),
                )
            })?;
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| Error::Usage(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| {
                Error::Unauthenticated(format!(
                    "the provider refused the sign-in code: {}",
                    error_chain(&e)
                ))
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| Error::Unauthenticated("the provider sent no ID token".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .map_err(|e| Error::Unauthenticated(format!("the ID token does not check out: {e}")))?;
        let access = response.access_token().secret().clone();
        // The access token must be one the services accept.
        let caller = self.verifier.verify(&access).await?;
        if caller.user != claims.subject().as_str() && self.verifier.settings().claims.user == "sub"
        {
            return Err(Error::Unauthenticated(
                "the ID token and the access token name different users".into(),
            ));
        }
        admit(&caller)?;
        let session_id = hex::encode(rand::random::<[u8; 32]>());
        let expires = unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64);
        let ends = unix_now() + SESSION_DAYS * 86_400;
        self.sessions
            .lock()
            .expect("sessions lock")
            .execute(
                "INSERT INTO sessions (id_hash, user, access, refresh, expires, ends) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    hash(&session_id),
                    caller.user,
                    access,
                    response.refresh_token().map(|r| r.secret().clone()),
                    expires,
                    ends
                ],
            )
            .map_err(|e| Error::Internal(format!("sessions: {e}")))?;
        tracing::info!(user = %caller.user, "signed in through the browser");
        Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/"))
            .cookie(self.removal(self.login_cookie(), "/auth"))
            .cookie(self.cookie(
                self.settings.cookie.clone(),
                session_id,
                "/",
                Duration::from_secs(SESSION_DAYS as u64 * 86_400),
            ))
            .finish())
    }

    /// `POST /auth/logout` (with the CSRF token): ends the session here. The
    /// provider's own session, if it keeps one, stays.
    pub fn end(&self, req: &HttpRequest) -> Result<HttpResponse> {
        if let Some(cookie) = req.cookie(&self.settings.cookie) {
            self.check_csrf(req)?;
            self.sessions
                .lock()
                .expect("sessions lock")
                .execute(
                    "DELETE FROM sessions WHERE id_hash = ?1",
                    params![hash(cookie.value())],
                )
                .map_err(|e| Error::Internal(format!("sessions: {e}")))?;
        }
        Ok(HttpResponse::NoContent()
            .cookie(self.removal(self.settings.cookie.clone(), "/"))
            .finish())
    }

    /// The signed-in caller of a request with a session cookie: `None`
    /// without one. A request that changes something must carry the
    /// session's CSRF token.
    pub async fn signed_in(&self, req: &HttpRequest) -> Result<Option<SignedIn>> {
        self.signed_in_checking(req, changes_something(req.method()))
            .await
    }

    /// As [`BrowserLogin::signed_in`], for a request that spends the
    /// caller's budget whatever its method (a Beacon `GET` asks every
    /// site): a session must send its CSRF token, so that a page of another
    /// origin cannot spend a signed-in user's budget with a link.
    pub async fn signed_in_to_spend(&self, req: &HttpRequest) -> Result<Option<SignedIn>> {
        self.signed_in_checking(req, true).await
    }

    async fn signed_in_checking(&self, req: &HttpRequest, csrf: bool) -> Result<Option<SignedIn>> {
        let Some(cookie) = req.cookie(&self.settings.cookie) else {
            return Ok(None);
        };
        if csrf {
            self.check_csrf(req)?;
        }
        let id_hash = hash(cookie.value());
        let session = self
            .session(&id_hash)?
            .ok_or_else(|| Error::Unauthenticated("the session has ended; sign in again".into()))?;
        let token = if session.expires - 30 > unix_now() {
            session.access
        } else {
            self.refresh(&id_hash, session).await?
        };
        let caller = self.verifier.verify(&token).await?;
        Ok(Some(SignedIn { caller, token }))
    }

    /// The CSRF token of the request's session: a hash of the session
    /// cookie, which pages of other origins cannot read.
    pub fn csrf(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(&self.settings.cookie)
            .map(|c| hash(&format!("bonebank csrf\n{}", c.value())))
    }

    fn check_csrf(&self, req: &HttpRequest) -> Result<()> {
        let expected = self.csrf(req).unwrap_or_default();
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // Both are hex of one length; compare every byte.
        let same = expected.len() == presented.len()
            && expected
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if expected.is_empty() || !same {
            return Err(Error::Forbidden(
                "this request did not come from a bonebank page (no valid CSRF token); reload the page and try again".into(),
            ));
        }
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let db = self.sessions.lock().expect("sessions lock");
        db.query_row(
            "SELECT access, refresh, expires FROM sessions WHERE id_hash = ?1 AND ends > ?2",
            params![id_hash, unix_now()],
            |r| {
                Ok(Session {
                    access: r.get(0)?,
                    refresh: r.get(1)?,
                    expires: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(|e| Error::Internal(format!("sessions: {e}")))
    }

    /// A new access token for a session whose token has expired.
    async fn refresh(&self, id_hash: &str, session: Session) -> Result<String> {
        let ended = || {
            Error::Unauthenticated(
                "the session's access has expired and could not be renewed; sign in again".into(),
            )
        };
        let refresh = RefreshToken::new(session.refresh.ok_or_else(ended)?);
        let client = self.client().await?;
        let request = client
            .exchange_refresh_token(&refresh)
            .map_err(|e| Error::Usage(format!("the provider has no token endpoint: {e}")))?;
        let response = request.request_async(&self.http).await.map_err(|e| {
            tracing::info!("refreshing a session failed: {}", error_chain(&e));
            ended()
        })?;
        let access = response.access_token().secret().clone();
        let expires = unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64);
        // Providers may rotate the refresh token; keep the old one if not.
        let next_refresh = response
            .refresh_token()
            .map(|r| r.secret().clone())
            .unwrap_or_else(|| refresh.secret().clone());
        self.sessions
            .lock()
            .expect("sessions lock")
            .execute(
                "UPDATE sessions SET access = ?2, refresh = ?3, expires = ?4 WHERE id_hash = ?1",
                params![id_hash, access, next_refresh, expires],
            )
            .map_err(|e| Error::Internal(format!("sessions: {e}")))?;
        Ok(access)
    }
}

/// Whether a request of this method may change something (and so needs the
/// CSRF token when it comes with a session).
fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
