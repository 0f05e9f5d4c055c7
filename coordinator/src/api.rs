//! The coordinator's HTTP API for researchers and the CLI, and the
//! researcher's web app (its files are in `coordinator/web/`, compiled in).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, get, post, web};
use bonebank_schemas::icd10_titles::CodeMatch;
use bonebank_schemas::wire::{
    BudgetListing, Catalogue, CheckedQuestion, ErrorBody, FederatedPreview, FederatedRequest,
    FederatedResult, HistoryEntry, NegotiatorHandoff, NegotiatorHandoffRequest, SiteListing,
    WhoAmI,
};
use bonebank_service::asset;
use bonebank_service::openapi::{self, SignedIn};
use bonebank_service::pages::{self, Asset};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::{AppExt, scope};

use crate::Error;
use crate::auth::{self, Auth};
use crate::beacon;
pub use crate::state::State;

pub fn app(
    state: web::Data<State>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = bonebank_service::error::json_config(
        bonebank_query::limits::LIMITS.max_body_bytes,
        "query request",
        None,
    );
    let app = App::new()
        .into_utoipa_app()
        .app_data(state.auth.clone())
        .app_data(state)
        .app_data(json)
        .app_data(bonebank_service::error::query_config())
        .app_data(bonebank_service::error::path_config())
        .service(index)
        .service(app_file)
        .service(pages::favicon)
        .service(pages::shared)
        .service(auth::begin_login)
        .service(auth::callback)
        .service(auth::logout)
        .service(auth::login_info)
        .service(whoami)
        .service(query)
        .service(preview)
        .service(sites)
        .service(catalogues)
        .service(check)
        .service(codes)
        .service(budgets)
        .service(history)
        .service(look_again)
        .service(negotiator)
        .service(
            scope("/beacon/v2")
                .service(beacon::root)
                .service(beacon::root_slash)
                .service(beacon::info_endpoint)
                .service(beacon::service_info)
                .service(beacon::configuration)
                .service(beacon::entry_types_endpoint)
                .service(beacon::map)
                .service(beacon::filtering_terms_endpoint)
                .service(beacon::individuals)
                .service(beacon::individuals_get)
                .service(beacon::biosamples)
                .service(beacon::biosamples_get),
        )
        .service(health);
    openapi::finish(
        app,
        openapi::About {
            title: "bonebank coordinator",
            description: "The researcher-facing coordinator of a bonebank network: a feasibility \
                          question goes to every chosen site, and the answer is the sum of the \
                          sites' differentially private counts, with intervals. Also the \
                          researchers' web app, sign-in, history, the Negotiator hand-off and a \
                          Beacon v2 count endpoint.",
            session_cookie: Some(auth::SESSION_COOKIE),
        },
    )
}

/// `GET /`: the researchers' app.
#[utoipa::path(tag = "pages", responses((status = 200, description = "The researchers' app.", content_type = "text/html", body = String)))]
#[get("/")]
async fn index(req: HttpRequest) -> HttpResponse {
    pages::serve(&req, APP, "index.html")
}

/// `GET /health`
#[utoipa::path(tag = "service", responses((status = 200, description = "The coordinator is up.", content_type = "text/plain", body = String)))]
#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

/// The researcher's app: its page and scripts.
const APP: &[Asset] = &[
    asset!("web", "index.html"),
    asset!("web", "main.js"),
    asset!("web", "model.js"),
    asset!("web", "builder.js"),
    asset!("web", "results.js"),
];

/// `GET /app/{path}`: the app's scripts.
#[utoipa::path(
    tag = "pages",
    params(("path" = String, Path, description = "A file of the app, e.g. `main.js`.")),
    responses(pages::PageFile)
)]
#[get("/app/{path}")]
async fn app_file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    pages::serve(&req, APP, &path)
}

/// `POST /v1/query`: a question to every chosen site.
#[utoipa::path(
    tag = "questions",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The merged answer: the sum of the sites' noisy counts with intervals, and each site's own answer or why it gave none. The loss is charged at each site that answered.", body = FederatedResult),
        (status = 400, description = "The body is not a question, or the question is outside the supported subset.", body = ErrorBody),
        (status = 403, description = "A browser session's request came without its CSRF token.", body = ErrorBody),
        (status = 401, description = "No access token or session, or one that did not check out.", body = ErrorBody),
        (status = 503, description = "The identity provider's keys could not be fetched just now.", body = ErrorBody),
    )
)]
#[post("/v1/query")]
async fn query(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<FederatedRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let result = state.coordinator.ask(&who, body.into_inner()).await?;
    state.coordinator.watch(&who, &result, language(&req)).await;
    Ok(HttpResponse::Ok().json(result))
}

/// What a question would cost at each site and how precise the answers
/// would be; nothing is spent.
#[utoipa::path(
    tag = "questions",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Each site's cost and expected precision for the question.", body = FederatedPreview),
        (status = 400, description = "The body is not a question, or the question is outside the supported subset.", body = ErrorBody),
        (status = 403, description = "A browser session's request came without its CSRF token.", body = ErrorBody),
        SignedIn,
    )
)]
#[post("/v1/preview")]
async fn preview(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<FederatedRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let result = state.coordinator.preview(&who, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// The sites' descriptions: every node is asked, so only a signed-in user
/// may ask (as for everything else that reaches the nodes).
#[utoipa::path(
    tag = "sites",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "Every site of the network: its description, whether it can be reached, and how.", body = Vec<SiteListing>), SignedIn)
)]
#[get("/v1/sites")]
async fn sites(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.list_sites().await))
}

/// The sites' catalogues as the coordinator keeps them: released data,
/// fetched from each site once and again every few minutes.
#[utoipa::path(
    tag = "sites",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "The catalogue of every site that publishes one (a site without is left out): noisy donor and sample counts per cell of each table, the dataset version, and what it cost the site, once.", body = Vec<Catalogue>), SignedIn)
)]
#[get("/v1/catalogue")]
async fn catalogues(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.catalogues().await))
}

/// `GET /v1/history`: the caller's earlier questions, newest first.
#[utoipa::path(
    tag = "history",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "The caller's earlier questions, newest first.", body = Vec<HistoryEntry>), SignedIn)
)]
#[get("/v1/history")]
async fn history(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.history(&who.caller).await?))
}

/// `GET /v1/history/{id}`: an earlier answer again, costing nothing.
#[utoipa::path(
    tag = "history",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "The answer's id in the caller's history.")),
    responses(
        (status = 200, description = "The earlier answer, as it was given.", body = FederatedResult),
        (status = 404, description = "No such answer in the caller's history.", body = ErrorBody),
        SignedIn,
    )
)]
#[get("/v1/history/{id}")]
async fn look_again(
    state: web::Data<State>,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let result = state.coordinator.look_again(&who, *id).await?;
    state.coordinator.watch(&who, &result, language(&req)).await;
    Ok(HttpResponse::Ok().json(result))
}

/// A sample request in the BBMRI-ERIC Negotiator from one of the caller's
/// answers: built, and sent when asked.
#[utoipa::path(
    tag = "history",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "The answer's id in the caller's history.")),
    responses(
        (status = 200, description = "The Negotiator v3 request, and where the request continues if it was sent.", body = NegotiatorHandoff),
        (status = 400, description = "The body is not a hand-off request.", body = ErrorBody),
        (status = 409, description = "It names a site the answer did not come from or one without a Directory collection, or sending was asked and no Negotiator is configured.", body = ErrorBody),
        (status = 403, description = "A browser session's request came without its CSRF token.", body = ErrorBody),
        (status = 404, description = "No such answer in the caller's history.", body = ErrorBody),
        (status = 502, description = "The Negotiator refused the request or could not be reached; the message says what it answered.", body = ErrorBody),
        SignedIn,
    )
)]
#[post("/v1/history/{id}/negotiator")]
async fn negotiator(
    state: web::Data<State>,
    req: HttpRequest,
    id: web::Path<i64>,
    body: web::Json<NegotiatorHandoffRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let answer = state.coordinator.answer(&who.caller, *id).await?;
    let handoff = state.negotiator.hand_off(*id, &answer, &body).await?;
    Ok(HttpResponse::Ok().json(handoff))
}

/// A question checked against the shared language and given back as its
/// canonical query and SQL; nothing is asked.
#[utoipa::path(
    tag = "questions",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The question in its canonical form and as SQL.", body = CheckedQuestion),
        (status = 400, description = "The body is not a question, or the question is outside the supported subset.", body = ErrorBody),
        (status = 403, description = "A browser session's request came without its CSRF token.", body = ErrorBody),
        SignedIn,
    )
)]
#[post("/v1/check")]
async fn check(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<FederatedRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let checked = state.coordinator.check_only(&who, &body).await?;
    Ok(HttpResponse::Ok().json(checked))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CodeSearch {
    /// A code in any accepted spelling, or words of its title (the first
    /// 100 characters are read).
    q: String,
}

/// ICD-10 codes by code (any accepted spelling) or by words of their title.
#[utoipa::path(
    tag = "questions",
    security(("bearer" = []), ("session" = [])),
    params(CodeSearch),
    responses(
        (status = 200, description = "Up to 20 ICD-10 codes with their English, German and Danish titles.", body = Vec<CodeMatch>),
        (status = 400, description = "No search text.", body = ErrorBody),
        SignedIn,
    )
)]
#[get("/v1/codes")]
async fn codes(
    state: web::Data<State>,
    req: HttpRequest,
    search: web::Query<CodeSearch>,
) -> Result<HttpResponse, Error> {
    state.auth.requester(&req).await?;
    let text: String = search.q.chars().take(100).collect();
    Ok(HttpResponse::Ok().json(bonebank_schemas::icd10_titles::search(&text, 20)))
}

/// The caller's budget left at every site.
#[utoipa::path(
    tag = "sites",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "The caller's budget left at each site, or why it could not be read.", body = Vec<BudgetListing>), SignedIn)
)]
#[get("/v1/budgets")]
async fn budgets(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.budgets(&who).await))
}

/// `GET /v1/whoami`: who is signed in, and for a browser session the CSRF
/// token its page sends back.
#[utoipa::path(
    tag = "sign-in",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "Who is signed in.", body = WhoAmI), openapi::SignedIn)
)]
#[get("/v1/whoami")]
pub async fn whoami(
    auth: web::Data<Auth>,
    state: web::Data<State>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let who = auth.requester(&req).await?.caller;
    Ok(HttpResponse::Ok().json(WhoAmI {
        user: who.user,
        role: who.role.to_string(),
        project: who.project,
        sites: who.sites,
        csrf: auth.csrf(&req),
        negotiator: state.negotiator.can_send(),
    }))
}

/// The first of English, German and Danish the request's `Accept-Language`
/// names (the app sends its own language); English otherwise.
fn language(req: &HttpRequest) -> &'static str {
    let header = req
        .headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    header
        .split(',')
        .filter_map(|part| {
            let tag = part.split(';').next()?.trim();
            match tag.get(..2)? {
                "de" => Some("de"),
                "da" => Some("da"),
                "en" => Some("en"),
                _ => None,
            }
        })
        .next()
        .unwrap_or("en")
}
