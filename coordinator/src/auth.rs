//! Signing users in to the coordinator.
//!
//! - Browser: the researcher app signs in through the frame's
//!   [`BrowserLogin`] (authorization code with PKCE, sessions in SQLite,
//!   a CSRF token for every request that changes something).
//! - CLI: `/v1/login` tells `bonebank login` which issuer and client to use
//!   for the device flow; the CLI then sends its access token as a bearer
//!   token.
//!
//! Every request to the API is identified by its bearer token or its
//! session's access token, checked by the same [`TokenVerifier`] the nodes
//! use; the token is then passed on to the nodes, which check it again.

use std::path::Path;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use bonebank_service::browser::{BrowserLogin, BrowserLoginSettings, Callback, SignedIn};
use bonebank_service::oidc::TokenVerifier;
use bonebank_service::openapi;

use crate::Result;
use crate::config::LoginConfig;

/// The coordinator's session cookie.
pub const SESSION_COOKIE: &str = "bonebank_session";

/// A verified caller and the token that proved it, to pass on to the nodes.
pub type Requester = SignedIn;

pub use bonebank_schemas::wire::LoginInfo;

/// The coordinator's sign-in: the browser's sessions, and what the CLI
/// needs to know.
#[derive(Debug)]
pub struct Auth {
    browser: BrowserLogin,
    login: LoginConfig,
}

impl Auth {
    /// `public_url` is the coordinator's address as browsers reach it.
    pub fn new(
        verifier: Arc<TokenVerifier>,
        login: LoginConfig,
        public_url: String,
        state_dir: &Path,
    ) -> Result<Self> {
        let client_secret =
            bonebank_service::config::read_secret(login.client_secret_file.as_deref())?;
        let browser = BrowserLogin::new(
            verifier,
            BrowserLoginSettings {
                client_id: login.client_id.clone(),
                client_secret,
                public_url,
                scopes: login.scopes.clone(),
                resource: login.resource.clone(),
                cookie: SESSION_COOKIE.into(),
            },
            &state_dir.join("sessions.sqlite"),
        )?;
        Ok(Self { browser, login })
    }

    pub fn login_info(&self) -> LoginInfo {
        LoginInfo {
            issuer: self.browser.verifier().settings().issuer.clone(),
            client_id: self.login.cli_client_id.clone(),
            scopes: self.login.scopes.clone(),
            resource: self.login.resource.clone(),
            development: self.login.development,
        }
    }

    /// Who is asking: a bearer token, or else the browser's session (with
    /// its CSRF token on a request that changes something).
    pub async fn requester(&self, req: &HttpRequest) -> Result<Requester> {
        self.requester_checking(req, false).await
    }

    /// As [`Auth::requester`], for a request that spends the caller's
    /// budget whatever its method: a browser session's must carry its CSRF
    /// token, a `GET` too.
    pub async fn spender(&self, req: &HttpRequest) -> Result<Requester> {
        self.requester_checking(req, true).await
    }

    async fn requester_checking(&self, req: &HttpRequest, spends: bool) -> Result<Requester> {
        if req
            .headers()
            .contains_key(actix_web::http::header::AUTHORIZATION)
        {
            let token = bonebank_service::identity::bearer(req.headers())?;
            let caller = self.browser.verifier().verify(&token).await?;
            return Ok(Requester { caller, token });
        }
        let session = if spends {
            self.browser.signed_in_to_spend(req).await?
        } else {
            self.browser.signed_in(req).await?
        };
        session.ok_or_else(|| {
            bonebank_service::Error::Unauthenticated(
                "not signed in: no access token and no session".into(),
            )
            .into()
        })
    }

    /// The CSRF token the app sends with every request that changes
    /// something.
    pub fn csrf(&self, req: &HttpRequest) -> Option<String> {
        self.browser.csrf(req)
    }
}

/// `GET /auth/login`: off to the provider.
#[utoipa::path(tag = "sign-in", responses((status = 303, description = "To the identity provider's sign-in page.")))]
#[get("/auth/login")]
pub async fn begin_login(auth: web::Data<Auth>) -> Result<HttpResponse> {
    Ok(auth.browser.begin().await?)
}

/// `GET /auth/callback`: back from the provider; every user of the network
/// may use the researcher app (what they may ask is each site's to decide).
#[utoipa::path(tag = "sign-in", params(Callback), responses(openapi::SignInCallback))]
#[get("/auth/callback")]
pub async fn callback(
    auth: web::Data<Auth>,
    req: HttpRequest,
    params: web::Query<Callback>,
) -> Result<HttpResponse> {
    Ok(auth.browser.finish(&req, &params, |_| Ok(())).await?)
}

/// `POST /auth/logout`: ends the session here.
#[utoipa::path(tag = "sign-in", responses(openapi::SignOut))]
#[post("/auth/logout")]
pub async fn logout(auth: web::Data<Auth>, req: HttpRequest) -> Result<HttpResponse> {
    Ok(auth.browser.end(&req)?)
}

/// `GET /v1/login`: what the CLI needs for the device flow.
#[utoipa::path(tag = "sign-in", responses((status = 200, description = "The network's identity provider and client id.", body = LoginInfo)))]
#[get("/v1/login")]
pub async fn login_info(auth: web::Data<Auth>) -> web::Json<LoginInfo> {
    web::Json(auth.login_info())
}
