//! `GET /v1/site`: the public description of the site, for writing queries.

use actix_web::{get, web};
use bonebank_schemas::wire::SiteDescription;

use super::AppState;
use crate::Error;

#[utoipa::path(
    tag = "site",
    responses(
        (status = 200, description = "The site's public description: what can be asked, its limits, budgets and accounting.", body = SiteDescription),
    )
)]
#[get("/v1/site")]
pub async fn get(state: web::Data<AppState>) -> Result<web::Json<SiteDescription>, Error> {
    state.service.describe().map(web::Json)
}
