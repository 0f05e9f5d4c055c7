//! `bonebank login`: the CLI signs in with the device authorization flow and
//! keeps its tokens in the user's config directory
//! (`~/.config/bonebank/tokens.json` on Linux, or `$BONEBANK_CONFIG_DIR`),
//! readable by the owner only. Commands take the cached access token and
//! renew it with the refresh token when it has expired.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use openidconnect::{OAuth2TokenResponse, RefreshToken, Scope};
use serde::{Deserialize, Serialize};

use bonebank_login::discovery as oidc;
use bonebank_login::unix_now;
use bonebank_schemas::wire::LoginInfo;

/// One coordinator's cached sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLogin {
    pub issuer: String,
    pub client_id: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token expires.
    pub expires_at: i64,
}

/// The token cache file: sign-ins by coordinator URL.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    logins: BTreeMap<String, CachedLogin>,
}

/// The coordinator URL as a cache key: no trailing slash.
pub fn key(coordinator: &str) -> String {
    coordinator.trim_end_matches('/').to_owned()
}

impl TokenCache {
    /// `$BONEBANK_CONFIG_DIR/tokens.json`, else `<config dir>/bonebank/tokens.json`.
    pub fn default_location() -> Result<Self, String> {
        let dir = match std::env::var_os("BONEBANK_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::config_dir()
                .ok_or("no config directory for this user; set BONEBANK_CONFIG_DIR")?
                .join("bonebank"),
        };
        Ok(Self::at(&dir))
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            path: dir.join("tokens.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<CacheFile, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "the token cache {} is damaged ({e}); delete it and sign in again",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CacheFile::default()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Writes the whole file anew, owner-only, replacing the old one
    /// atomically.
    fn write(&self, file: &CacheFile) -> Result<(), String> {
        let dir = self.path.parent().expect("the cache file has a directory");
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        create_private_dir(dir).map_err(fail)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
        // NamedTempFile creates its file with mode 0600 on Unix.
        tmp.write_all(&serde_json::to_vec_pretty(file).expect("the cache serialises"))
            .map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        set_owner_only(tmp.path()).map_err(fail)?;
        tmp.persist(&self.path).map_err(|e| fail(e.error))?;
        Ok(())
    }

    pub fn get(&self, coordinator: &str) -> Result<Option<CachedLogin>, String> {
        Ok(self.read()?.logins.remove(&key(coordinator)))
    }

    pub fn put(&self, coordinator: &str, login: CachedLogin) -> Result<(), String> {
        let mut file = self.read()?;
        file.logins.insert(key(coordinator), login);
        self.write(&file)
    }

    /// Forgets a coordinator's sign-in; whether there was one.
    pub fn remove(&self, coordinator: &str) -> Result<bool, String> {
        let mut file = self.read()?;
        let had = file.logins.remove(&key(coordinator)).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// How the user approves the device: shown the URL and code, or (the
/// development provider only) approved for a named demo user.
#[derive(Debug, Clone)]
pub enum Approver {
    Show,
    DemoUser(String),
}

/// What the device flow shows the user.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
}

async fn login_info(coordinator: &str, http: &reqwest::Client) -> Result<LoginInfo, String> {
    let url = format!("{}/v1/login", key(coordinator));
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach the coordinator at {coordinator}: {}\nhint: is it running? `bonebank-dev demo` starts one on this machine",
                if e.is_connect() { "connection refused".to_owned() } else { oidc::error_chain(&e) }
            )
        })?;
    if !response.status().is_success() {
        return Err(format!(
            "the coordinator at {coordinator} does not offer sign-in (HTTP {})",
            response.status()
        ));
    }
    response
        .json()
        .await
        .map_err(|e| format!("the coordinator's sign-in details are unreadable: {e}"))
}

/// Signs in to `coordinator` with the device flow; `show` is called with what
/// the user must open and type. Returns the cached login.
pub async fn login(
    coordinator: &str,
    approver: Approver,
    cache: &TokenCache,
    show: impl FnOnce(&DevicePrompt),
) -> Result<CachedLogin, String> {
    let http = bonebank_login::issuer_client(None)?;
    let info = login_info(coordinator, &http).await?;
    if let Approver::DemoUser(_) = &approver {
        let issuer = reqwest::Url::parse(&info.issuer).map_err(|e| e.to_string())?;
        if !info.development || !bonebank_login::is_loopback(&issuer) {
            return Err(
                "--user works only with the demo's development identity provider; \
                 this coordinator uses a real one, so sign in without --user"
                    .into(),
            );
        }
    }
    let metadata = oidc::discover(&info.issuer, &http).await?;
    let (client, extra) = oidc::client(metadata, &info.client_id, None);
    let device_url = extra.device_authorization_endpoint.ok_or_else(|| {
        format!(
            "the identity provider {} offers no device sign-in (device_authorization_endpoint)",
            info.issuer
        )
    })?;
    let client = client.set_device_authorization_url(device_url);
    let mut request = client.exchange_device_code();
    for scope in &info.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(resource) = &info.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let details: openidconnect::core::CoreDeviceAuthorizationResponse =
        request.request_async(&http).await.map_err(|e| {
            format!(
                "the identity provider refused to start a device sign-in: {}",
                oidc::error_chain(&e)
            )
        })?;
    let prompt = DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
    };
    match &approver {
        Approver::Show => show(&prompt),
        Approver::DemoUser(user) => approve_as_demo_user(&http, &prompt, user).await?,
    }
    let mut token_request = client
        .exchange_device_access_token(&details)
        .map_err(|e| format!("the identity provider has no token endpoint: {e}"))?;
    if let Some(resource) = &info.resource {
        token_request = token_request.add_extra_param("resource", resource.clone());
    }
    let response = token_request
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| {
            format!(
                "the device sign-in did not complete: {}",
                oidc::error_chain(&e)
            )
        })?;
    let login = CachedLogin {
        issuer: info.issuer.clone(),
        client_id: info.client_id.clone(),
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|r| r.secret().clone()),
        expires_at: unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64),
    };
    cache.put(coordinator, login.clone())?;
    Ok(login)
}

/// Approves a device code on the development provider's page, as a browser
/// would when the demo user picks their name.
async fn approve_as_demo_user(
    http: &reqwest::Client,
    prompt: &DevicePrompt,
    user: &str,
) -> Result<(), String> {
    let response = http
        .post(&prompt.verification_uri)
        .form(&[("user_code", prompt.user_code.as_str()), ("user", user)])
        .send()
        .await
        .map_err(|e| format!("the development provider: {e}"))?;
    if !response.status().is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "the development provider did not sign in {user:?}: {body}\nhint: the demo prints its users"
        ));
    }
    Ok(())
}

/// A valid access token for `coordinator`: the cached one, renewed with the
/// refresh token if it has expired (or expires within 30 s).
pub async fn access_token(coordinator: &str, cache: &TokenCache) -> Result<String, String> {
    let not_signed_in = || {
        format!(
            "not signed in to {coordinator}\nhint: run `bonebank login --coordinator {coordinator}`"
        )
    };
    let login = cache.get(coordinator)?.ok_or_else(not_signed_in)?;
    if login.expires_at - 30 > unix_now() {
        return Ok(login.access_token);
    }
    let expired = || {
        format!(
            "your sign-in to {coordinator} has expired\nhint: run `bonebank login --coordinator {coordinator}`"
        )
    };
    let refresh = login.refresh_token.clone().ok_or_else(expired)?;
    let http = bonebank_login::issuer_client(None)?;
    let metadata = oidc::discover(&login.issuer, &http).await?;
    let (client, _) = oidc::client(metadata, &login.client_id, None);
    let refresh = RefreshToken::new(refresh);
    let response = client
        .exchange_refresh_token(&refresh)
        .map_err(|e| format!("the identity provider has no token endpoint: {e}"))?
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::debug!("refresh failed: {}", oidc::error_chain(&e));
            expired()
        })?;
    let renewed = CachedLogin {
        access_token: response.access_token().secret().clone(),
        refresh_token: response
            .refresh_token()
            .map(|r| r.secret().clone())
            .or(login.refresh_token),
        expires_at: unix_now() + response.expires_in().map_or(300, |d| d.as_secs() as i64),
        ..login
    };
    cache.put(coordinator, renewed.clone())?;
    Ok(renewed.access_token)
}
