//! `POST /v1/preview`: what a question would cost and how precise its answer
//! would be, before anything is spent.

use actix_web::{post, web};
use bonebank_schemas::wire::{ErrorBody, Preview, QueryRequest};
use bonebank_service::openapi::SignedIn;

use super::AppState;
use crate::Error;
use crate::service::Caller;

#[utoipa::path(
    tag = "questions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the question would cost here and how precise its answer would be; nothing is spent.", body = Preview),
        (status = 400, description = "The body is not a query request, or the question is outside the supported subset.", body = ErrorBody),
        (status = 403, description = "The site's policy does not allow the question.", body = ErrorBody),
        SignedIn,
    )
)]
#[post("/v1/preview")]
pub async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    request: web::Json<QueryRequest>,
) -> Result<web::Json<Preview>, Error> {
    state
        .service
        .preview(&caller, &request)
        .await
        .map(web::Json)
}
