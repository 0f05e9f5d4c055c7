//! The development identity provider: a small OpenID Connect provider for the
//! demo and tests. **Development only**: it signs in anyone who picks a name
//! from its list of demo users, so it refuses to listen anywhere but
//! loopback. It signs real ES256 tokens, and nodes and the coordinator check
//! them with the same code they use for a site's real provider.
//!
//! It speaks discovery, JWKS, the authorization code flow with PKCE (S256
//! only), the device authorization flow and refresh tokens; just enough for
//! bonebank's login paths.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bonebank_schemas::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Error, Result};
use bonebank_service::escape_html as escape;

/// Someone the development provider can sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    pub name: String,
    pub role: Role,
    pub project: Option<String>,
    /// For stewards: the sites they steward.
    pub sites: Vec<String>,
    /// The `email` claim, if the user has one.
    pub email: Option<String>,
}

impl DevUser {
    pub fn new(name: &str, role: Role, project: Option<&str>, sites: &[&str]) -> Self {
        Self {
            name: name.into(),
            role,
            project: project.map(str::to_owned),
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            email: None,
        }
    }

    /// The same user with an email address in their tokens.
    pub fn with_email(self, email: &str) -> Self {
        Self {
            email: Some(email.to_owned()),
            ..self
        }
    }
}

/// The demo's users: a researcher, an industry partner, and a steward for
/// each site (`steward-de-lue`, …).
pub fn demo_users(sites: &[String]) -> Vec<DevUser> {
    let mut users = vec![
        DevUser::new("alice", Role::Researcher, Some("hip-fracture-msc"), &[]),
        DevUser::new("ingrid", Role::Industry, Some("msc-scoping"), &[]),
    ];
    for site in sites {
        users.push(DevUser {
            name: format!("steward-{}", site.to_lowercase()),
            role: Role::Steward,
            project: None,
            sites: vec![site.clone()],
            email: None,
        });
    }
    users
}

/// The audience the demo's tokens are for.
pub const DEMO_AUDIENCE: &str = "bonebank";
/// The client id of the researcher CLI (a public client).
pub const CLI_CLIENT_ID: &str = "bonebank-cli";
/// The client id of the coordinator's web login.
pub const WEB_CLIENT_ID: &str = "bonebank-coordinator";
/// The client of the nodes' stewards' pages (authorization code with PKCE).
pub const STEWARD_CLIENT_ID: &str = "bonebank-steward";
/// A device grant's user code is approved by this path's form.
pub const DEVICE_PATH: &str = "/device";

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> Result<Self> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Certificate(e.to_string()))?;
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
            .map_err(|e| Error::Certificate(e.to_string()))?;
        let point = pair.public_key_raw();
        // An uncompressed P-256 point: 0x04, then x and y.
        let (x, y) = point[1..].split_at(32);
        let kid = random_token(9);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(Self { kid, key, jwk })
    }
}

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    user: String,
    nonce: Option<String>,
    challenge: String,
    expires: Instant,
}

struct DeviceGrant {
    client_id: String,
    user_code: String,
    user: Option<String>,
    expires: Instant,
}

struct RefreshGrant {
    client_id: String,
    user: String,
}

struct Inner {
    issuer: String,
    audience: String,
    users: Vec<DevUser>,
    access_ttl: Duration,
    /// How often the key set was fetched (tests check the verifier's cache).
    jwks_fetches: std::sync::atomic::AtomicUsize,
    /// Published keys; the last one signs.
    keys: Mutex<Vec<SigningKey>>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    devices: Mutex<HashMap<String, DeviceGrant>>,
    refresh: Mutex<HashMap<String, RefreshGrant>>,
}

/// A running development provider; stops when dropped.
#[derive(Clone)]
pub struct DevProvider {
    inner: Arc<Inner>,
    handle: Arc<ServerGuard>,
}

struct ServerGuard(actix_web::dev::ServerHandle);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

impl std::fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProvider")
            .field("issuer", &self.inner.issuer)
            .finish()
    }
}

impl DevProvider {
    /// Starts the provider on `listen` (loopback only) on the current Tokio
    /// runtime. Access tokens live for `access_ttl`.
    pub fn start(
        listen: SocketAddr,
        audience: &str,
        users: Vec<DevUser>,
        access_ttl: Duration,
    ) -> Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(Error::Usage(format!(
                "the development identity provider signs in anyone and is refused on {listen}; \
                 it listens on 127.0.0.1 only"
            )));
        }
        let listener = std::net::TcpListener::bind(listen)
            .map_err(Error::io(format!("listen address {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("development provider address"))?;
        let inner = Arc::new(Inner {
            issuer: format!("http://{addr}"),
            audience: audience.to_owned(),
            users,
            access_ttl,
            jwks_fetches: Default::default(),
            keys: Mutex::new(vec![SigningKey::generate()?]),
            codes: Default::default(),
            devices: Default::default(),
            refresh: Default::default(),
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
                .route("/authorize", web::get().to(authorize_page))
                .route("/authorize", web::post().to(authorize))
                .route("/token", web::post().to(token))
                .route("/device/code", web::post().to(device_code))
                .route(DEVICE_PATH, web::get().to(device_page))
                .route(DEVICE_PATH, web::post().to(device_approve))
        })
        .workers(1)
        .listen(listener)
        .map_err(Error::io("development provider"))?
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::warn!(
            issuer = %inner.issuer,
            "DEVELOPMENT identity provider: signs in any demo user without a password; never use it at a site"
        );
        Ok(Self {
            inner,
            handle: Arc::new(ServerGuard(handle)),
        })
    }

    /// The issuer URL, e.g. `http://127.0.0.1:41234`.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `[oidc]` settings of a node or coordinator that trusts this
    /// provider.
    pub fn settings(&self) -> bonebank_service::oidc::OidcSettings {
        bonebank_service::oidc::OidcSettings {
            issuer: self.inner.issuer.clone(),
            audience: self.inner.audience.clone(),
            leeway_seconds: 30,
            claims: Default::default(),
            ca: None,
        }
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    pub fn users(&self) -> &[DevUser] {
        &self.inner.users
    }

    /// An access token for `user` (any user, not only the listed ones).
    pub fn token_for(&self, user: &DevUser) -> String {
        self.inner.access_token(user, CLI_CLIENT_ID)
    }

    /// Signs arbitrary claims with the current key (tests craft bad tokens).
    pub fn sign(&self, claims: &Value) -> String {
        self.inner.sign(claims)
    }

    /// How many times the key set has been fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.inner
            .jwks_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts signing with a new key; the old ones stay published.
    pub fn rotate_key(&self) -> Result<()> {
        let key = SigningKey::generate()?;
        self.inner.keys.lock().unwrap().push(key);
        Ok(())
    }

    /// Stops the provider.
    pub async fn stop(&self) {
        self.handle.0.stop(true).await;
    }
}

impl Inner {
    fn user(&self, name: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.name == name)
    }

    fn sign(&self, claims: &Value) -> String {
        let keys = self.keys.lock().unwrap();
        let current = keys.last().expect("a signing key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(current.kid.clone());
        jsonwebtoken::encode(&header, claims, &current.key).expect("ES256 signing")
    }

    fn access_token(&self, user: &DevUser, client_id: &str) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "sub": user.name, "aud": self.audience,
            "iat": now, "nbf": now, "exp": now + self.access_ttl.as_secs(),
            "client_id": client_id, "jti": random_token(12),
            "bonebank_role": user.role.to_string(),
        });
        if let Some(project) = &user.project {
            claims["bonebank_project"] = json!(project);
        }
        if !user.sites.is_empty() {
            claims["bonebank_sites"] = json!(user.sites);
        }
        if let Some(email) = &user.email {
            claims["email"] = json!(email);
        }
        self.sign(&claims)
    }

    fn id_token(&self, user: &DevUser, client_id: &str, nonce: Option<&str>) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "sub": user.name, "aud": client_id,
            "iat": now, "exp": now + self.access_ttl.as_secs(),
            "name": user.name, "bonebank_role": user.role.to_string(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(&claims)
    }

    /// The token response for a signed-in user, with a fresh refresh token.
    fn tokens(&self, user: &DevUser, client_id: &str, nonce: Option<&str>) -> HttpResponse {
        let refresh = random_token(24);
        self.refresh.lock().unwrap().insert(
            refresh.clone(),
            RefreshGrant {
                client_id: client_id.to_owned(),
                user: user.name.clone(),
            },
        );
        HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({
                "access_token": self.access_token(user, client_id),
                "token_type": "Bearer",
                "expires_in": self.access_ttl.as_secs(),
                "refresh_token": refresh,
                "id_token": self.id_token(user, client_id, nonce),
                "scope": "openid offline_access",
            }))
    }
}

fn now() -> u64 {
    bonebank_service::unix_now().max(0) as u64
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

async fn discovery(idp: web::Data<Inner>) -> HttpResponse {
    let i = &idp.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "device_authorization_endpoint": format!("{i}/device/code"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "offline_access"],
        "claims_supported": ["sub", "name", "bonebank_role", "bonebank_project", "bonebank_sites"],
    }))
}

async fn jwks(idp: web::Data<Inner>) -> HttpResponse {
    idp.jwks_fetches
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let keys: Vec<Value> = idp
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

/// An OAuth error response.
fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": error, "error_description": description}))
}

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl AuthorizeParams {
    /// Problems that a development provider still refuses: no PKCE, a
    /// redirect off loopback.
    fn check(&self) -> std::result::Result<(), String> {
        if self.response_type != "code" {
            return Err("only response_type=code is supported".into());
        }
        if self.code_challenge.is_none() || self.code_challenge_method.as_deref() != Some("S256") {
            return Err("PKCE with code_challenge_method=S256 is required".into());
        }
        let url = reqwest::Url::parse(&self.redirect_uri).map_err(|e| e.to_string())?;
        if !bonebank_service::oidc::is_loopback(&url) {
            return Err("the development provider redirects to loopback addresses only".into());
        }
        Ok(())
    }
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
             <p style=\"background:#fbb;padding:.5em\"><b>DEVELOPMENT identity provider</b>: \
             anyone may sign in as a demo user. Never use it at a site.</p>\
             <h1>{title}</h1>{body}</body></html>"
        ))
}

fn user_buttons(idp: &Inner) -> String {
    idp.users
        .iter()
        .map(|u| {
            format!(
                "<p><button name=\"user\" value=\"{0}\">{0}</button> ({1}{2})</p>",
                escape(&u.name),
                u.role,
                if u.sites.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", u.sites.join(", "))
                }
            )
        })
        .collect()
}

async fn authorize_page(
    idp: web::Data<Inner>,
    params: web::Query<AuthorizeParams>,
    req: HttpRequest,
) -> HttpResponse {
    if let Err(why) = params.check() {
        return oauth_error(400, "invalid_request", &why);
    }
    let hidden: String = url_pairs(req.query_string())
        .into_iter()
        .filter(|(k, _)| k != "user")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(&k),
                escape(&v)
            )
        })
        .collect();
    page(
        "Sign in to bonebank",
        &format!(
            "<form method=\"post\" action=\"/authorize\">{hidden}{}</form>",
            user_buttons(&idp)
        ),
    )
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn authorize(idp: web::Data<Inner>, form: web::Form<AuthorizeParams>) -> HttpResponse {
    let p = form.into_inner();
    if let Err(why) = p.check() {
        return oauth_error(400, "invalid_request", &why);
    }
    let Some(user) = p.user.as_deref().and_then(|u| idp.user(u)) else {
        return oauth_error(400, "invalid_request", "pick one of the demo users");
    };
    let code = random_token(24);
    idp.codes.lock().unwrap().insert(
        code.clone(),
        CodeGrant {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            user: user.name.clone(),
            nonce: p.nonce.clone(),
            challenge: p.code_challenge.clone().unwrap_or_default(),
            expires: Instant::now() + Duration::from_secs(60),
        },
    );
    let mut target = reqwest::Url::parse(&p.redirect_uri).expect("checked above");
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &p.state {
        target.query_pairs_mut().append_pair("state", state);
    }
    HttpResponse::SeeOther()
        .insert_header(("Location", target.as_str()))
        .finish()
}

#[derive(Debug, Deserialize)]
struct TokenParams {
    grant_type: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    device_code: Option<String>,
}

/// The client id from the form or from HTTP basic authentication.
fn client_id(req: &HttpRequest, form: &TokenParams) -> Option<String> {
    if let Some(id) = &form.client_id {
        return Some(id.clone());
    }
    let basic = req
        .headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let id = text.split(':').next()?;
    Some(
        reqwest::Url::parse(&format!("http://x/?id={id}"))
            .ok()?
            .query_pairs()
            .next()?
            .1
            .into_owned(),
    )
}

async fn token(
    idp: web::Data<Inner>,
    req: HttpRequest,
    form: web::Form<TokenParams>,
) -> HttpResponse {
    let Some(client) = client_id(&req, &form) else {
        return oauth_error(401, "invalid_client", "no client_id");
    };
    match form.grant_type.as_str() {
        "authorization_code" => {
            let grant = form
                .code
                .as_ref()
                .and_then(|c| idp.codes.lock().unwrap().remove(c));
            let Some(grant) = grant.filter(|g| g.expires > Instant::now()) else {
                return oauth_error(400, "invalid_grant", "unknown, used or expired code");
            };
            let verifier = form.code_verifier.as_deref().unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if challenge != grant.challenge {
                return oauth_error(400, "invalid_grant", "PKCE verification failed");
            }
            if grant.client_id != client
                || form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str())
            {
                return oauth_error(400, "invalid_grant", "client or redirect_uri differ");
            }
            let user = idp.user(&grant.user).expect("granted users exist").clone();
            idp.tokens(&user, &client, grant.nonce.as_deref())
        }
        "refresh_token" => {
            let grant = form
                .refresh_token
                .as_ref()
                .and_then(|r| idp.refresh.lock().unwrap().remove(r));
            let Some(grant) = grant.filter(|g| g.client_id == client) else {
                return oauth_error(400, "invalid_grant", "unknown or used refresh token");
            };
            let user = idp.user(&grant.user).expect("granted users exist").clone();
            idp.tokens(&user, &client, None)
        }
        DEVICE_GRANT => {
            let code = form.device_code.clone().unwrap_or_default();
            let mut devices = idp.devices.lock().unwrap();
            let Some(grant) = devices.get(&code).filter(|g| g.client_id == client) else {
                return oauth_error(400, "invalid_grant", "unknown device code");
            };
            if grant.expires < Instant::now() {
                devices.remove(&code);
                return oauth_error(400, "expired_token", "the device code has expired");
            }
            let Some(user) = grant.user.clone() else {
                return oauth_error(400, "authorization_pending", "not approved yet");
            };
            devices.remove(&code);
            drop(devices);
            let user = idp.user(&user).expect("approved users exist").clone();
            idp.tokens(&user, &client, None)
        }
        other => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("grant type {other:?} is not supported"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct DeviceCodeParams {
    client_id: String,
}

async fn device_code(idp: web::Data<Inner>, form: web::Form<DeviceCodeParams>) -> HttpResponse {
    let device_code = random_token(24);
    let letters: String = {
        let mut buf = [0u8; 8];
        rand::rng().fill_bytes(&mut buf);
        buf.iter()
            .map(|b| char::from(b"BCDFGHJKLMNPQRSTVWXZ"[usize::from(*b) % 20]))
            .collect()
    };
    let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
    idp.devices.lock().unwrap().insert(
        device_code.clone(),
        DeviceGrant {
            client_id: form.client_id.clone(),
            user_code: user_code.clone(),
            user: None,
            expires: Instant::now() + Duration::from_secs(600),
        },
    );
    let verify = format!("{}{DEVICE_PATH}", idp.issuer);
    HttpResponse::Ok().json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verify,
        "verification_uri_complete": format!("{verify}?user_code={user_code}"),
        "expires_in": 600,
        "interval": 1,
    }))
}

#[derive(Debug, Deserialize)]
struct DeviceParams {
    #[serde(default)]
    user_code: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

async fn device_page(idp: web::Data<Inner>, q: web::Query<DeviceParams>) -> HttpResponse {
    let code = q.user_code.as_deref().unwrap_or_default();
    page(
        "Sign in a device to bonebank",
        &format!(
            "<form method=\"post\" action=\"{DEVICE_PATH}\"><p>Code shown by the device: \
             <input name=\"user_code\" value=\"{}\"></p>{}</form>",
            escape(code),
            user_buttons(&idp)
        ),
    )
}

async fn device_approve(idp: web::Data<Inner>, form: web::Form<DeviceParams>) -> HttpResponse {
    let Some(user) = form.user.as_deref().and_then(|u| idp.user(u)) else {
        return oauth_error(400, "invalid_request", "pick one of the demo users");
    };
    let code = form
        .user_code
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_uppercase();
    let mut devices = idp.devices.lock().unwrap();
    let Some(grant) = devices
        .values_mut()
        .find(|g| g.user_code == code && g.expires > Instant::now())
    else {
        return oauth_error(
            400,
            "invalid_request",
            "no device is waiting with that code",
        );
    };
    grant.user = Some(user.name.clone());
    page(
        "Signed in",
        &format!(
            "<p>The device is signed in as {}. You can close this page.</p>",
            escape(&user.name)
        ),
    )
}
