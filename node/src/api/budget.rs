//! `GET /v1/budget`: the caller's own remaining privacy budget.

use actix_web::web;
use bonebank_schemas::wire::BudgetStatus;

use super::AppState;
use crate::Error;
use crate::service::Caller;

pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<BudgetStatus>, Error> {
    state.service.budget(&caller).await.map(web::Json)
}
