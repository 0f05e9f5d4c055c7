//! `POST /v1/query`: run a feasibility query.

use actix_web::{post, web};
use bonebank_schemas::wire::{ErrorBody, QueryRequest, QueryResult};

use super::AppState;
use crate::Error;
use crate::service::Caller;

#[utoipa::path(
    tag = "questions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The differentially private answer; the loss is charged to the caller, the project and the site.", body = QueryResult),
        (status = 202, description = "The question waits for a data steward of the site; the message names the ticket. Asking again later gets the answer.", body = ErrorBody),
        (status = 400, description = "The body is not a query request, or the question is outside the supported subset.", body = ErrorBody),
        (status = 403, description = "The site's policy does not allow the question.", body = ErrorBody),
        (status = 422, description = "The question's plan ran longer than the site allows and was stopped; nothing was charged.", body = ErrorBody),
        (status = 429, description = "The question would overspend a privacy budget, or the caller asked too much too fast (Retry-After).", body = ErrorBody),
        (status = 503, description = "The site has no data yet, or its identity provider cannot be reached.", body = ErrorBody),
        (status = 401, description = "No access token, or one that did not check out.", body = ErrorBody),
    )
)]
#[post("/v1/query")]
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
