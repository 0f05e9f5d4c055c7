//! `GET /v1/site`: the public description of the site, for writing queries.

use actix_web::web;
use bonebank_schemas::wire::SiteDescription;

use super::AppState;
use crate::Error;

pub async fn get(state: web::Data<AppState>) -> Result<web::Json<SiteDescription>, Error> {
    state.service.describe().map(web::Json)
}
