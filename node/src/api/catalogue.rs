//! `GET /v1/catalogue`: the site's catalogue, measured once per dataset
//! version. Released data, public as `/v1/site` is: reading it costs no
//! one anything.

use actix_web::{get, web};
use bonebank_schemas::wire::{Catalogue, ErrorBody};

use super::AppState;
use crate::Error;

#[utoipa::path(
    tag = "site",
    responses(
        (status = 200, description = "The catalogue: noisy donor and sample counts per cell of each table, the dataset version they describe, and what they cost the site, once.", body = Catalogue),
        (status = 404, description = "No catalogue: the site measures none (pure accounting, or the catalogue switched off), has no data yet, or has used the year's catalogues.", body = ErrorBody),
    )
)]
#[get("/v1/catalogue")]
pub async fn get(state: web::Data<AppState>) -> Result<web::Json<Catalogue>, Error> {
    match state.service.catalogue().await? {
        Some(catalogue) => Ok(web::Json(catalogue.as_ref().clone())),
        None => Err(Error::NoCatalogue(state.service.why_no_catalogue()?)),
    }
}
