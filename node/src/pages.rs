//! The data stewards' pages, on a listener of their own (see
//! [`StewardPages`]): sign-in through the site's identity provider, the
//! approval queue, the budget spent at the site, the audit log with its
//! check, and the policy in force. Only stewards of this site get a session.
//! Every request that changes something carries the session's CSRF token,
//! and a decision goes through the very handler (and service path, and
//! audit entry) the API's `POST /v1/approvals/{ticket}` uses. Nothing here
//! shows a count or a row value.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use bonebank_schemas::wire::{ApprovalRequest, AuditPage, SiteLedger, WhoAmI};
use bonebank_service::browser::{BrowserLogin, BrowserLoginSettings, Callback};
use bonebank_service::error::json_config;
use bonebank_service::pages::{self, Asset};
use bonebank_service::{RunningServer, StewardedSite, asset, tls};

use crate::api::{AppState, approvals};
use crate::config::{NodeConfig, StewardPages};
use crate::service::Steward;
use crate::{Error, Result, audit};

/// The pages' own files.
const FILES: &[Asset] = &[
    asset!("web", "index.html"),
    asset!("web", "steward.js"),
    asset!("web", "policy.js"),
];

/// The stewards' app; `state` is the node's own, so a decision here is a
/// decision through the node's service.
pub fn app(
    state: web::Data<AppState>,
    login: web::Data<BrowserLogin>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let site = web::Data::new(StewardedSite(state.service.site.to_string()));
    let decision = json_config(
        bonebank_query::limits::LIMITS.max_body_bytes,
        "steward's decision ({\"decision\": \"approve\" | \"reject\", \"reason\": …})",
        None,
    );
    App::new()
        .app_data(state.identity.clone())
        .app_data(state)
        .app_data(login)
        .app_data(site)
        .route(
            "/",
            web::get().to(|| async { pages::serve(FILES, "index.html") }),
        )
        .route("/steward/{path}", web::get().to(file))
        .route("/assets/{path:.*}", web::get().to(pages::shared))
        .route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .route("/auth/login", web::get().to(login_start))
        .route("/auth/callback", web::get().to(callback))
        .route("/auth/logout", web::post().to(logout))
        .route("/api/site", web::get().to(site_id))
        .route("/api/whoami", web::get().to(whoami))
        .route("/api/approvals", web::get().to(queue))
        .service(
            web::resource("/api/approvals/{ticket}")
                .app_data(decision)
                .route(web::post().to(approvals::decide)),
        )
        .route("/api/ledger", web::get().to(ledger))
        .route("/api/audit", web::get().to(audit_page))
        .route("/api/audit/export", web::get().to(audit_export))
        .route("/api/policy", web::get().to(policy))
        .default_service(web::to(|| async { Error::NotFound.error_response() }))
}

async fn file(path: web::Path<String>) -> HttpResponse {
    pages::serve(FILES, &path)
}

async fn login_start(login: web::Data<BrowserLogin>) -> Result<HttpResponse> {
    Ok(login.begin().await?)
}

/// Back from the provider: only a steward of this site gets a session;
/// anyone else is sent to the first page with the reason, which it shows
/// in the steward's language.
async fn callback(
    login: web::Data<BrowserLogin>,
    site: web::Data<StewardedSite>,
    req: HttpRequest,
    params: web::Query<Callback>,
) -> Result<HttpResponse> {
    let mut refused = None;
    let finished = login
        .finish(&req, &params, |caller| {
            let admitted = Steward::admit(caller.clone(), &site.0).map(drop);
            if admitted.is_err() {
                refused = Some(if caller.role == bonebank_schemas::Role::Steward {
                    "site"
                } else {
                    "role"
                });
            }
            admitted
        })
        .await;
    match (finished, refused) {
        (Ok(response), _) => Ok(response),
        (Err(_), Some(why)) => Ok(HttpResponse::SeeOther()
            .insert_header(("Location", format!("/?refused={why}")))
            .finish()),
        (Err(e), None) => Err(e.into()),
    }
}

async fn logout(login: web::Data<BrowserLogin>, req: HttpRequest) -> Result<HttpResponse> {
    Ok(login.end(&req)?)
}

/// The site's id, before anyone signs in (the pages' heading).
async fn site_id(site: web::Data<StewardedSite>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "site_id": site.0 }))
}

async fn whoami(
    login: web::Data<BrowserLogin>,
    steward: Steward,
    req: HttpRequest,
) -> web::Json<WhoAmI> {
    let c = steward.caller();
    web::Json(WhoAmI {
        user: c.user.clone(),
        role: c.role.to_string(),
        project: c.project.clone(),
        sites: c.sites.clone(),
        csrf: login.csrf(&req),
        negotiator: false,
    })
}

/// The queue: waiting requests and the latest decided ones.
async fn queue(
    state: web::Data<AppState>,
    steward: Steward,
) -> Result<web::Json<Vec<ApprovalRequest>>> {
    state
        .service
        .recent_approvals(&steward)
        .await
        .map(web::Json)
}

async fn ledger(state: web::Data<AppState>, steward: Steward) -> Result<web::Json<SiteLedger>> {
    state.service.ledger(&steward).await.map(web::Json)
}

async fn audit_page(
    state: web::Data<AppState>,
    steward: Steward,
    filter: web::Query<audit::Filter>,
) -> Result<web::Json<AuditPage>> {
    let mut filter = filter.into_inner();
    // An empty field in the page's form means no filter.
    for f in [&mut filter.user, &mut filter.project, &mut filter.kind] {
        if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *f = None;
        }
    }
    state
        .service
        .audit_page(&steward, filter)
        .await
        .map(web::Json)
}

async fn audit_export(state: web::Data<AppState>, steward: Steward) -> Result<HttpResponse> {
    let lines = state.service.audit_export(&steward).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"audit-{}.jsonl\"",
                state.service.site
            ),
        ))
        .body(lines))
}

async fn policy(state: web::Data<AppState>, steward: Steward) -> HttpResponse {
    HttpResponse::Ok().json(state.service.policy_in_force(&steward))
}

/// Starts the stewards' pages if the config asks for them, on the current
/// Tokio runtime, serving the node's own `state`.
pub fn start(config: &NodeConfig, state: web::Data<AppState>) -> Result<Option<RunningServer>> {
    let Some(settings) = &config.steward_pages else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(settings.listen).map_err(Error::io(format!(
        "steward_pages.listen {}",
        settings.listen
    )))?;
    let addr = listener.local_addr().map_err(Error::io(format!(
        "steward_pages.listen {}",
        settings.listen
    )))?;
    let verifier = state.identity.clone().into_inner();
    let login = web::Data::new(browser_login(config, settings, addr, verifier)?);
    let server = HttpServer::new(move || app(state.clone(), login.clone())).workers(1);
    let server = if settings.https {
        let tls = config
            .tls
            .as_ref()
            .ok_or_else(|| Error::Usage("steward_pages.https needs [tls]".into()))?;
        server.listen_rustls_0_23(
            listener,
            tls::browser_server_config(&tls.certificate, &tls.key)?,
        )
    } else {
        server.listen(listener)
    }
    .map_err(Error::io(format!(
        "steward_pages.listen {}",
        settings.listen
    )))?;
    Ok(Some(RunningServer::spawn(
        server.disable_signals().run(),
        addr,
        settings.https,
    )))
}

fn browser_login(
    config: &NodeConfig,
    settings: &StewardPages,
    addr: std::net::SocketAddr,
    verifier: std::sync::Arc<bonebank_service::oidc::TokenVerifier>,
) -> Result<BrowserLogin> {
    let client_secret =
        bonebank_service::config::read_secret(settings.client_secret_file.as_deref())?;
    let scheme = if settings.https { "https" } else { "http" };
    Ok(BrowserLogin::new(
        verifier,
        BrowserLoginSettings {
            client_id: settings.client_id.clone(),
            client_secret,
            public_url: settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
            scopes: settings.scopes.clone(),
            resource: settings.resource.clone(),
            // Browsers send a host's cookies to every port: one name per site.
            cookie: format!("bonebank_steward_{}", config.site_id).replace('-', "_"),
        },
        &config.state_dir.join("steward-sessions.sqlite"),
    )?)
}
