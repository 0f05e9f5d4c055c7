//! `POST /v1/preview`: what a question would cost and how precise its answer
//! would be, before anything is spent.

use actix_web::web;
use bonebank_schemas::wire::{Preview, QueryRequest};

use super::AppState;
use crate::Error;
use crate::service::Caller;

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
