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
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, get, post, web};
use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{
    ApprovalDecision, ApprovalRequest, AuditPage, ErrorBody, SiteLedger, TicketStatus, WhoAmI,
};
use bonebank_service::browser::{BrowserLogin, BrowserLoginSettings, Callback};
use bonebank_service::error::json_config;
use bonebank_service::openapi::{self, StewardOnly};
use bonebank_service::pages::{self, Asset};
use bonebank_service::{RunningServer, StewardedSite, asset, tls};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::{AppExt, scope};

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
    let site_name = state.service.site.to_string();
    let site = web::Data::new(StewardedSite(site_name.clone()));
    let decision = json_config(
        bonebank_query::limits::LIMITS.max_body_bytes,
        "steward's decision ({\"decision\": \"approve\" | \"reject\", \"reason\": …})",
        None,
    );
    let app = App::new()
        .into_utoipa_app()
        .app_data(state.identity.clone())
        .app_data(state)
        .app_data(login)
        .app_data(site)
        .app_data(bonebank_service::error::query_config())
        .app_data(bonebank_service::error::path_config())
        .service(index)
        .service(file)
        .service(pages::shared)
        .service(pages::favicon)
        .service(login_start)
        .service(callback)
        .service(logout)
        .service(site_id)
        .service(whoami)
        .service(
            scope("/api/approvals")
                .app_data(decision)
                .service(queue)
                .service(decide),
        )
        .service(ledger)
        .service(audit_page)
        .service(audit_export)
        .service(audit_export_csv)
        .service(year_report)
        .service(policy);
    openapi::finish(
        app,
        openapi::About {
            title: "bonebank node: data stewards' pages",
            description: "The pages a site's data stewards sign in to: the approval queue, \
                          the budget spent at the site, the audit log and the policy in force. \
                          Only stewards of this site get a session.",
            session_cookie: Some(&cookie_name(&site_name)),
        },
    )
}

/// `GET /`: the pages.
#[utoipa::path(tag = "pages", responses((status = 200, description = "The stewards' pages.", content_type = "text/html", body = String)))]
#[get("/")]
async fn index(req: HttpRequest) -> HttpResponse {
    pages::serve(&req, FILES, "index.html")
}

/// `POST /api/approvals/{ticket}`: a decision, through the very handler
/// of the API's `POST /v1/approvals/{ticket}`.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    params(("ticket" = String, Path, description = "The ticket a held question was given.")),
    responses(approvals::Decided, StewardOnly)
)]
#[post("/{ticket}")]
async fn decide(
    state: web::Data<AppState>,
    steward: Steward,
    ticket: web::Path<String>,
    decision: web::Json<ApprovalDecision>,
) -> Result<web::Json<TicketStatus>> {
    approvals::decide(state, steward, ticket, decision).await
}

/// `GET /steward/{path}`: the pages' scripts.
#[utoipa::path(
    tag = "pages",
    params(("path" = String, Path, description = "A file of the pages, e.g. `steward.js`.")),
    responses(pages::PageFile)
)]
#[get("/steward/{path}")]
async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    pages::serve(&req, FILES, &path)
}

/// `GET /auth/login`: off to the site's identity provider.
#[utoipa::path(tag = "sign-in", responses((status = 303, description = "To the identity provider's sign-in page.")))]
#[get("/auth/login")]
async fn login_start(login: web::Data<BrowserLogin>) -> Result<HttpResponse> {
    Ok(login.begin().await?)
}

/// Back from the provider: only a steward of this site gets a session;
/// anyone else is sent to the first page with the reason, which it shows
/// in the steward's language.
#[utoipa::path(tag = "sign-in", params(Callback), responses(openapi::SignInCallback))]
#[get("/auth/callback")]
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

/// `POST /auth/logout` (with the CSRF token): ends the session.
#[utoipa::path(tag = "sign-in", responses(openapi::SignOut))]
#[post("/auth/logout")]
async fn logout(login: web::Data<BrowserLogin>, req: HttpRequest) -> Result<HttpResponse> {
    Ok(login.end(&req)?)
}

/// The site's id, before anyone signs in (the pages' heading).
#[utoipa::path(tag = "site", responses((status = 200, description = "The site these pages belong to.", body = SiteName)))]
#[get("/api/site")]
async fn site_id(site: web::Data<StewardedSite>) -> web::Json<SiteName> {
    web::Json(SiteName {
        site_id: site.0.clone(),
    })
}

/// `GET /api/site`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct SiteName {
    site_id: String,
}

/// `GET /api/whoami`: the signed-in steward, with the session's CSRF token.
#[utoipa::path(
    tag = "sign-in",
    security(("session" = [])),
    responses((status = 200, description = "Who is signed in.", body = WhoAmI), StewardOnly)
)]
#[get("/api/whoami")]
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
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    responses((status = 200, description = "Waiting questions and the latest decided ones.", body = Vec<ApprovalRequest>), StewardOnly)
)]
#[get("")]
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

/// `GET /api/ledger`: the budget spent at the site.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    responses((status = 200, description = "What was spent at the site, by day, user and project.", body = SiteLedger), StewardOnly)
)]
#[get("/api/ledger")]
async fn ledger(state: web::Data<AppState>, steward: Steward) -> Result<web::Json<SiteLedger>> {
    state.service.ledger(&steward).await.map(web::Json)
}

/// `GET /api/audit`: a page of the audit log, newest first, with the
/// chain's check.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    params(audit::Filter),
    responses(
        (status = 200, description = "A page of entries and whether the hash chain checks out.", body = AuditPage),
        (status = 400, description = "A filter that is not understood.", body = ErrorBody),
        StewardOnly,
    )
)]
#[get("/api/audit")]
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

/// `GET /api/audit/export`: the whole log, one JSON entry per line.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    responses((status = 200, description = "Every entry, oldest first, as JSON lines.", content_type = "application/x-ndjson", body = String), StewardOnly)
)]
#[get("/api/audit/export")]
async fn audit_export(state: web::Data<AppState>, steward: Steward) -> Result<HttpResponse> {
    let lines = state.service.audit_export(&steward, false).await?;
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

/// `GET /api/audit/export.csv`: the whole log as CSV, with each entry's
/// hash and the one before, so that `bonebank-node audit verify-export`
/// checks it offline.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    responses((status = 200, description = "Every entry, oldest first, as CSV (seq, at, kind, actor, detail, prev, hash).", content_type = "text/csv", body = String), StewardOnly)
)]
#[get("/api/audit/export.csv")]
async fn audit_export_csv(state: web::Data<AppState>, steward: Steward) -> Result<HttpResponse> {
    let csv = state.service.audit_export(&steward, true).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"audit-{}.csv\"", state.service.site),
        ))
        .body(csv))
}

/// Which report: the year, the format and the language.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// The calendar year (UTC), e.g. 2026.
    year: i32,
    /// `html` (the default) or `pdf`.
    #[serde(default)]
    format: Option<String>,
    /// `en` (the default), `de` or `da`.
    #[serde(default)]
    lang: Option<String>,
}

/// `GET /api/report`: the site's yearly report for the data-protection
/// officer, as HTML or PDF.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    params(ReportQuery),
    responses(
        (status = 200, description = "The year's report: privacy loss spent (catalogue releases and fresh questions, per project and in total, with its (ε, δ)), questions answered, refused and held, the stewards' decisions, the dataset versions and the audit chain's head hash.", content_type = "text/html", body = String),
        (status = 400, description = "Not a year, or a format other than html and pdf.", body = ErrorBody),
        StewardOnly,
    )
)]
#[get("/api/report")]
async fn year_report(
    state: web::Data<AppState>,
    steward: Steward,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse> {
    let lang = query.lang.as_deref().unwrap_or("en");
    let pdf = match query.format.as_deref().unwrap_or("html") {
        "html" => false,
        "pdf" => true,
        other => {
            return Err(Error::BadRequest(format!("format {other:?}: html or pdf")));
        }
    };
    let (facts, report) = state
        .service
        .year_report(&steward, query.year, lang)
        .await?;
    let stem = crate::report::Report::file_stem(&facts);
    Ok(if pdf {
        let bytes = web::block(move || report.pdf())
            .await
            .map_err(|e| Error::Engine(format!("report worker: {e}")))??;
        HttpResponse::Ok()
            .content_type("application/pdf")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{stem}.pdf\""),
            ))
            .body(bytes)
    } else {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Content-Security-Policy", crate::report::html_policy()))
            .body(report.html())
    })
}

/// `GET /api/policy`: the rules in force at the site.
#[utoipa::path(
    tag = "stewards",
    security(("session" = [])),
    responses((status = 200, description = "The site's policy as the node reads it, defaults filled in.", body = Policy), StewardOnly)
)]
#[get("/api/policy")]
async fn policy(state: web::Data<AppState>, steward: Steward) -> web::Json<Policy> {
    web::Json(state.service.policy_in_force(&steward).clone())
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
    let server = HttpServer::new(move || app(state.clone(), login.clone()))
        .workers(1)
        .max_connections(bonebank_service::server::CONNECTIONS_PER_WORKER);
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
            cookie: cookie_name(&config.site_id.to_string()),
        },
        &config.state_dir.join("steward-sessions.sqlite"),
    )?)
}

/// The stewards' session cookie: one per site, so that two nodes on one
/// host keep their sessions apart.
fn cookie_name(site: &str) -> String {
    format!("bonebank_steward_{site}").replace('-', "_")
}
