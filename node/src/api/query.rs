//! `POST /v1/query`: run a feasibility query.

use actix_web::web;
use bonebank_schemas::wire::{QueryRequest, QueryResult};

use super::AppState;
use crate::Error;
use crate::service::Caller;

pub async fn run(
    state: web::Data<AppState>,
    caller: Caller,
    request: web::Json<QueryRequest>,
) -> Result<web::Json<QueryResult>, Error> {
    answer(&state, &caller, &request).await.map(web::Json)
}

/// Answers a question and counts it in the metrics: for this port and for
/// questions that come over the outbound link alike.
pub async fn answer(
    state: &AppState,
    caller: &Caller,
    request: &QueryRequest,
) -> Result<QueryResult, Error> {
    let started = std::time::Instant::now();
    let result = state.service.run(caller, request).await;
    state.metrics.observe(&result, started.elapsed());
    result
}
