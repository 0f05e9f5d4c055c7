//! `GET /health` and `GET /metrics` for operators.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::Error;

#[utoipa::path(
    tag = "site",
    responses((status = 200, description = "The node is up; whether it has data, and which version.", body = Health))
)]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> Result<web::Json<Health>, Error> {
    let version = state.service.dataset_version()?;
    Ok(web::Json(Health {
        status: if version.is_some() {
            HealthStatus::Ok
        } else {
            HealthStatus::NoData
        },
        site_id: state.service.site.to_string(),
        dataset_version: version,
    }))
}

/// `GET /health`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    pub site_id: String,
    /// The dataset version questions are answered from; absent before the
    /// first import.
    pub dataset_version: Option<String>,
}

/// Whether the node has data to answer from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    NoData,
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
