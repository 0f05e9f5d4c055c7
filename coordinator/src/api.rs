//! The coordinator's HTTP API for researchers and the CLI, and the
//! researcher's web app (its files are in `coordinator/web/`, compiled in).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, ResponseError, web};
use bonebank_schemas::wire::{FederatedRequest, NegotiatorHandoffRequest};
use bonebank_service::asset;
use bonebank_service::pages::{self, Asset};
use serde::Deserialize;

use crate::Error;
use crate::auth::{self, Auth};
use crate::beacon;
use crate::negotiator::Negotiator;
use crate::service::Coordinator;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct State {
    pub coordinator: Coordinator,
    pub auth: web::Data<Auth>,
    pub negotiator: Negotiator,
}

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
    App::new()
        .app_data(state.auth.clone())
        .app_data(state)
        .app_data(json)
        .route(
            "/",
            web::get().to(|| async { pages::serve(APP, "index.html") }),
        )
        .route("/app/{path}", web::get().to(app_file))
        .route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .route("/assets/{path:.*}", web::get().to(pages::shared))
        .route("/auth/login", web::get().to(auth::login))
        .route("/auth/callback", web::get().to(auth::callback))
        .route("/auth/logout", web::post().to(auth::logout))
        .route("/v1/login", web::get().to(auth::login_info))
        .route("/v1/whoami", web::get().to(auth::whoami))
        .route("/v1/query", web::post().to(query))
        .route("/v1/preview", web::post().to(preview))
        .route("/v1/sites", web::get().to(sites))
        .route("/v1/check", web::post().to(check))
        .route("/v1/codes", web::get().to(codes))
        .route("/v1/budgets", web::get().to(budgets))
        .route("/v1/history", web::get().to(history))
        .route("/v1/history/{id}", web::get().to(look_again))
        .route("/v1/history/{id}/negotiator", web::post().to(negotiator))
        .service(
            web::scope("/beacon/v2")
                .route("", web::get().to(beacon::info))
                .route("/", web::get().to(beacon::info))
                .route("/info", web::get().to(beacon::info))
                .route("/service-info", web::get().to(beacon::service_info))
                .route("/configuration", web::get().to(beacon::configuration))
                .route("/entry_types", web::get().to(beacon::entry_types_endpoint))
                .route("/map", web::get().to(beacon::map))
                .route(
                    "/filtering_terms",
                    web::get().to(beacon::filtering_terms_endpoint),
                )
                .route("/individuals", web::post().to(beacon::individuals))
                .route("/individuals", web::get().to(beacon::individuals))
                .route("/biosamples", web::post().to(beacon::biosamples))
                .route("/biosamples", web::get().to(beacon::biosamples)),
        )
        .route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
        )
        .default_service(web::to(|| async { Error::NotFound.error_response() }))
}

/// The researcher's app: its page and scripts.
const APP: &[Asset] = &[
    asset!("web", "index.html"),
    asset!("web", "main.js"),
    asset!("web", "model.js"),
    asset!("web", "builder.js"),
    asset!("web", "results.js"),
];

async fn app_file(path: web::Path<String>) -> HttpResponse {
    pages::serve(APP, &path)
}

async fn query(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<FederatedRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let result = state.coordinator.ask(&who, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// What a question would cost at each site and how precise the answers
/// would be; nothing is spent.
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
async fn sites(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.list_sites().await))
}

async fn history(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.history(&who.caller).await?))
}

async fn look_again(
    state: web::Data<State>,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let result = state.coordinator.look_again(&who, *id).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// A sample request in the BBMRI-ERIC Negotiator from one of the caller's
/// answers: built, and sent when asked.
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
async fn check(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<FederatedRequest>,
) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    let checked = state.coordinator.check_only(&who, &body).await?;
    Ok(HttpResponse::Ok().json(checked))
}

#[derive(Debug, Deserialize)]
struct CodeSearch {
    q: String,
}

/// ICD-10 codes by code (any accepted spelling) or by words of their title.
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
async fn budgets(state: web::Data<State>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let who = state.auth.requester(&req).await?;
    Ok(HttpResponse::Ok().json(state.coordinator.budgets(&who).await))
}
