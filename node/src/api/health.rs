//! `GET /health` and `GET /metrics` for operators.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::Error;

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let version = state.service.dataset_version()?;
    Ok(HttpResponse::Ok().json(json!({
        "status": if version.is_some() { "ok" } else { "no_data" },
        "site_id": state.service.site.to_string(),
        "dataset_version": version,
    })))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
