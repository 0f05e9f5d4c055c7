//! `GET /health` and `GET /metrics` for operators.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

#[utoipa::path(
    tag = "site",
    responses((status = 200, description = "The node is up. Nothing else: it asks no token, so it names neither the site's data nor its version (an operator reads those with `bonebank-node info`).", body = Health))
)]
#[get("/health")]
pub async fn health() -> web::Json<Health> {
    web::Json(Health {
        status: HealthStatus::Up,
    })
}

/// `GET /health`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

/// The node answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Up,
}

#[utoipa::path(
    tag = "site",
    responses((status = 200, description = "Prometheus metrics: questions by outcome, latencies, the outbound link.", content_type = "text/plain", body = String))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
