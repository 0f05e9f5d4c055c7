//! Who is calling. Every request carries an OIDC access token as
//! `Authorization: Bearer`; the node checks it itself (see [`crate::oidc`]).
//! Handlers get callers only through the `Caller` extractor, so no handler can
//! skip the check.

use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;

use crate::Error;
use crate::api::AppState;
use crate::service::Caller;

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<String, Error> {
    let value = headers
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            Error::Unauthenticated("no access token; sign in and send Authorization: Bearer".into())
        })?;
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("the Authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(Error::Unauthenticated(
            "the Authorization header must be \"Bearer <access token>\"".into(),
        )),
    }
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req.headers());
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::Engine("no application state".into()))?;
            state.identity.verify(&token?).await
        })
    }
}
