//! Signing users in to the coordinator.
//!
//! - Browser: `/auth/login` sends the browser to the provider with an
//!   authorization code request (PKCE S256, a random `state` also kept in a
//!   short-lived cookie, a random `nonce`); `/auth/callback` checks state and
//!   cookie, exchanges the code, checks the ID token (signature, issuer,
//!   audience, nonce) and the access token (as the nodes will), and starts a
//!   session. The session cookie is `HttpOnly`, `SameSite=Lax`, and `Secure`
//!   when the coordinator's public URL is https. Sessions live in SQLite
//!   (only a hash of the cookie is stored) and refresh their access token
//!   when it expires. `POST /auth/logout` ends the session.
//! - CLI: `/v1/login` tells `bonebank login` which issuer and client to use
//!   for the device flow; the CLI then sends its access token as a bearer
//!   token.
//!
//! Every request to the API is identified by its bearer token or its
//! session's access token, checked by the same [`TokenVerifier`] the nodes
//! use; the token is then passed on to the nodes, which check it again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use bonebank_service::escape_html as escape;
use bonebank_service::oidc::TokenVerifier;
use bonebank_service::{Caller, unix_now};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::LoginConfig;
use crate::{Error, Result};
use bonebank_service::discovery::{self as oidc, DiscoveredClient, ExtraMetadata};

pub const SESSION_COOKIE: &str = "bonebank_session";
const LOGIN_COOKIE: &str = "bonebank_login";
/// How long a browser has to come back from the provider.
const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// Logins in flight at most (each is a few hundred bytes).
const MAX_PENDING: usize = 10_000;
/// Sessions end after this long, whatever the provider says.
const SESSION_DAYS: i64 = 7;

/// A verified caller and the token that proved it, to pass on to the nodes.
#[derive(Debug, Clone)]
pub struct Requester {
    pub caller: Caller,
    pub token: String,
}

pub use bonebank_schemas::wire::{LoginInfo, WhoAmI};

struct Pending {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    started: Instant,
}

/// The provider as discovered, kept once it worked.
struct Discovered {
    client: DiscoveredClient,
    #[allow(dead_code)]
    extra: ExtraMetadata,
}

pub struct Auth {
    verifier: Arc<TokenVerifier>,
    login: LoginConfig,
    secret: Option<String>,
    public_url: String,
    secure_cookies: bool,
    http: reqwest::Client,
    discovered: tokio::sync::OnceCell<Discovered>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<Connection>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.verifier.settings().issuer)
            .field("public_url", &self.public_url)
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

impl Auth {
    /// `public_url` is the coordinator's address as browsers reach it.
    pub fn new(
        verifier: Arc<TokenVerifier>,
        login: LoginConfig,
        public_url: String,
        state_dir: &Path,
    ) -> Result<Self> {
        let secret = match &login.client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(Error::io(path))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let db = bonebank_service::state::open(&state_dir.join("sessions.sqlite"))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                id_hash TEXT PRIMARY KEY,
                user TEXT NOT NULL,
                access TEXT NOT NULL,
                refresh TEXT,
                expires INTEGER NOT NULL,
                ends INTEGER NOT NULL
            );",
        )?;
        db.execute("DELETE FROM sessions WHERE ends < ?1", params![unix_now()])?;
        let http = bonebank_service::oidc::issuer_client(verifier.settings().ca.as_deref())?;
        Ok(Self {
            secure_cookies: public_url.starts_with("https://"),
            public_url: public_url.trim_end_matches('/').to_owned(),
            verifier,
            login,
            secret,
            http,
            discovered: Default::default(),
            pending: Default::default(),
            sessions: Mutex::new(db),
        })
    }

    pub fn login_info(&self) -> LoginInfo {
        LoginInfo {
            issuer: self.verifier.settings().issuer.clone(),
            client_id: self.login.cli_client_id.clone(),
            scopes: self.login.scopes.clone(),
            resource: self.login.resource.clone(),
            development: self.login.development,
        }
    }

    /// Discovery, once it has worked; retried on the next login if not.
    async fn provider(&self) -> Result<&Discovered> {
        self.discovered
            .get_or_try_init(|| async {
                let metadata = oidc::discover(&self.verifier.settings().issuer, &self.http)
                    .await
                    .map_err(|e| {
                        tracing::warn!("{e}");
                        Error::Service(bonebank_service::Error::IdentityUnavailable(
                            "the identity provider cannot be reached; try again shortly".into(),
                        ))
                    })?;
                let (client, extra) =
                    oidc::client(metadata, &self.login.client_id, self.secret.clone());
                let redirect = RedirectUrl::new(format!("{}/auth/callback", self.public_url))
                    .map_err(|e| Error::Usage(format!("redirect URI: {e}")))?;
                Ok(Discovered {
                    client: client.set_redirect_uri(redirect),
                    extra,
                })
            })
            .await
    }

    fn cookie<'a>(
        &self,
        name: &'a str,
        value: String,
        path: &'a str,
        max_age: Duration,
    ) -> Cookie<'a> {
        Cookie::build(name, value)
            .path(path)
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(
                max_age.as_secs() as i64,
            ))
            .finish()
    }

    /// Who is asking: a bearer token, or else the session cookie.
    pub async fn requester(&self, req: &HttpRequest) -> Result<Requester> {
        if req
            .headers()
            .contains_key(actix_web::http::header::AUTHORIZATION)
        {
            let token = bonebank_service::identity::bearer(req.headers())?;
            let caller = self.verifier.verify(&token).await?;
            return Ok(Requester { caller, token });
        }
        let Some(cookie) = req.cookie(SESSION_COOKIE) else {
            return Err(bonebank_service::Error::Unauthenticated(
                "not signed in: no access token and no session".into(),
            )
            .into());
        };
        let id_hash = hash(cookie.value());
        let session = self.session(&id_hash)?.ok_or_else(|| {
            Error::from(bonebank_service::Error::Unauthenticated(
                "the session has ended; sign in again".into(),
            ))
        })?;
        let token = if session.expires - 30 > unix_now() {
            session.access
        } else {
            self.refresh(&id_hash, session).await?
        };
        let caller = self.verifier.verify(&token).await?;
        Ok(Requester { caller, token })
    }

    fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let db = self.sessions.lock().expect("sessions lock");
        Ok(db
            .query_row(
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
            .optional()?)
    }

    /// A new access token for a session whose token has expired.
    async fn refresh(&self, id_hash: &str, session: Session) -> Result<String> {
        let ended = || {
            Error::from(bonebank_service::Error::Unauthenticated(
                "the session's access has expired and could not be renewed; sign in again".into(),
            ))
        };
        let refresh = RefreshToken::new(session.refresh.ok_or_else(ended)?);
        let provider = self.provider().await?;
        let request = provider
            .client
            .exchange_refresh_token(&refresh)
            .map_err(|e| Error::Usage(format!("the provider has no token endpoint: {e}")))?;
        let response = request.request_async(&self.http).await.map_err(|e| {
            tracing::info!("refreshing a session failed: {}", oidc::error_chain(&e));
            ended()
        })?;
        let access = response.access_token().secret().clone();
        let expires = unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64);
        // Providers may rotate the refresh token; keep the old one if not.
        let next_refresh = response
            .refresh_token()
            .map(|r| r.secret().clone())
            .unwrap_or_else(|| refresh.secret().clone());
        let db = self.sessions.lock().expect("sessions lock");
        db.execute(
            "UPDATE sessions SET access = ?2, refresh = ?3, expires = ?4 WHERE id_hash = ?1",
            params![id_hash, access, next_refresh, expires],
        )?;
        Ok(access)
    }
}

/// `GET /auth/login`: off to the provider.
pub async fn login(auth: web::Data<Auth>) -> Result<HttpResponse> {
    let provider = auth.provider().await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = provider
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in &auth.login.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(resource) = &auth.login.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let (url, state, nonce) = request.url();
    {
        let mut pending = auth.pending.lock().expect("pending lock");
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
        .cookie(auth.cookie(LOGIN_COOKIE, state.secret().clone(), "/auth", LOGIN_WINDOW))
        .finish())
}

#[derive(Debug, Deserialize)]
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

/// `GET /auth/callback`: back from the provider.
pub async fn callback(
    auth: web::Data<Auth>,
    req: HttpRequest,
    params: web::Query<Callback>,
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
        && iss != &auth.verifier.settings().issuer
    {
        return Err(Error::Unauthenticated(format!(
            "the sign-in came back from {iss}, not from this network's provider"
        )));
    }
    let (Some(code), Some(state)) = (&params.code, &params.state) else {
        return Err(Error::BadRequest(
            "the callback has no code or state".into(),
        ));
    };
    // The state must be the one this browser was sent off with.
    if req.cookie(LOGIN_COOKIE).is_none_or(|c| c.value() != state) {
        return Err(Error::Unauthenticated(
            "this sign-in was not started in this browser, or took too long; start again at /auth/login"
                .into(),
        ));
    }
    let pending = auth
        .pending
        .lock()
        .expect("pending lock")
        .remove(state)
        .filter(|p| p.started.elapsed() < LOGIN_WINDOW)
        .ok_or_else(|| {
            Error::Unauthenticated("this sign-in has expired; start again at /auth/login".into())
        })?;
    let provider = auth.provider().await?;
    let response = provider
        .client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .map_err(|e| Error::Usage(format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(pending.verifier)
        .request_async(&auth.http)
        .await
        .map_err(|e| {
            Error::Unauthenticated(format!(
                "the provider refused the sign-in code: {}",
                oidc::error_chain(&e)
            ))
        })?;
    let id_token = response
        .id_token()
        .ok_or_else(|| Error::Unauthenticated("the provider sent no ID token".into()))?;
    let claims = id_token
        .claims(&provider.client.id_token_verifier(), &pending.nonce)
        .map_err(|e| Error::Unauthenticated(format!("the ID token does not check out: {e}")))?;
    let access = response.access_token().secret().clone();
    // The access token must be one the nodes will accept.
    let caller = auth.verifier.verify(&access).await?;
    if caller.user != claims.subject().as_str() && auth.verifier.settings().claims.user == "sub" {
        return Err(Error::Unauthenticated(
            "the ID token and the access token name different users".into(),
        ));
    }
    let session_id = hex::encode(rand::random::<[u8; 32]>());
    let expires = unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64);
    let ends = unix_now() + SESSION_DAYS * 86_400;
    auth.sessions.lock().expect("sessions lock").execute(
        "INSERT INTO sessions (id_hash, user, access, refresh, expires, ends) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            hash(&session_id),
            caller.user,
            access,
            response.refresh_token().map(|r| r.secret().clone()),
            expires,
            ends
        ],
    )?;
    tracing::info!(user = %caller.user, "signed in through the browser");
    let mut clear = auth.cookie(LOGIN_COOKIE, String::new(), "/auth", Duration::ZERO);
    clear.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/"))
        .cookie(clear)
        .cookie(auth.cookie(
            SESSION_COOKIE,
            session_id,
            "/",
            Duration::from_secs(SESSION_DAYS as u64 * 86_400),
        ))
        .finish())
}

/// `POST /auth/logout`: ends the session here. (The provider's own session,
/// if it keeps one, stays; its sign-out page ends that.)
pub async fn logout(auth: web::Data<Auth>, req: HttpRequest) -> Result<HttpResponse> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        auth.sessions.lock().expect("sessions lock").execute(
            "DELETE FROM sessions WHERE id_hash = ?1",
            params![hash(cookie.value())],
        )?;
    }
    let mut clear = auth.cookie(SESSION_COOKIE, String::new(), "/", Duration::ZERO);
    clear.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/"))
        .cookie(clear)
        .finish())
}

/// `GET /v1/login`: what the CLI needs for the device flow.
pub async fn login_info(auth: web::Data<Auth>) -> HttpResponse {
    HttpResponse::Ok().json(auth.login_info())
}

/// `GET /v1/whoami`.
pub async fn whoami(auth: web::Data<Auth>, req: HttpRequest) -> Result<HttpResponse> {
    let who = auth.requester(&req).await?.caller;
    Ok(HttpResponse::Ok().json(WhoAmI {
        user: who.user,
        role: who.role.to_string(),
        project: who.project,
        sites: who.sites,
    }))
}

/// `GET /`: who is signed in, and how to sign in or out.
pub async fn home(auth: web::Data<Auth>, req: HttpRequest) -> HttpResponse {
    let body = match auth.requester(&req).await {
        Ok(r) => format!(
            "<p>Signed in as <b>{}</b> ({}, project {}).</p>\
             <form method=\"post\" action=\"/auth/logout\"><button>Sign out</button></form>\
             <p>Ask questions with <code>bonebank query</code> or <code>POST /v1/query</code>.</p>",
            escape(&r.caller.user),
            r.caller.role,
            escape(&r.caller.project)
        ),
        Err(_) => "<p><a href=\"/auth/login\">Sign in</a></p>".to_owned(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>bonebank</title></head>\
             <body><h1>bonebank</h1>{body}</body></html>"
        ))
}
