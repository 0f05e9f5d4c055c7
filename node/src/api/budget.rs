//! `GET /v1/budget`: the caller's own remaining privacy budget.

use actix_web::{get, web};
use bonebank_schemas::wire::BudgetStatus;
use bonebank_service::openapi::SignedIn;

use super::AppState;
use crate::Error;
use crate::service::Caller;

#[utoipa::path(
    tag = "questions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the caller, the caller's project and the site have left to spend this period.", body = BudgetStatus),
        SignedIn,
    )
)]
#[get("/v1/budget")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<BudgetStatus>, Error> {
    state.service.budget(&caller).await.map(web::Json)
}
