//! The coordinator's HTTP API for researchers and the CLI.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, ResponseError, web};
use bonebank_schemas::wire::FederatedRequest;

use crate::Error;
use crate::auth::{self, Auth};
use crate::service::Coordinator;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct State {
    pub coordinator: Coordinator,
    pub auth: web::Data<Auth>,
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
        .route("/", web::get().to(auth::home))
        .route("/auth/login", web::get().to(auth::login))
        .route("/auth/callback", web::get().to(auth::callback))
        .route("/auth/logout", web::post().to(auth::logout))
        .route("/v1/login", web::get().to(auth::login_info))
        .route("/v1/whoami", web::get().to(auth::whoami))
        .route("/v1/query", web::post().to(query))
        .route("/v1/preview", web::post().to(preview))
        .route("/v1/sites", web::get().to(sites))
        .route("/v1/history", web::get().to(history))
        .route("/v1/history/{id}", web::get().to(look_again))
        .route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
        )
        .default_service(web::to(|| async { Error::NotFound.error_response() }))
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
