//! Who is calling. A verifier turns a request's headers into a [`Caller`];
//! the OIDC verifier will replace the development one. Handlers get callers
//! only through the `Caller` extractor, so no handler can skip the check.

use std::future::{Ready, ready};

use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpRequest, web};
use bonebank_schemas::Role;

use crate::Error;
use crate::api::AppState;
use crate::service::Caller;

/// Turns request headers into a verified caller.
pub trait IdentityVerifier: Send + Sync + std::fmt::Debug {
    fn verify(&self, headers: &HeaderMap) -> Result<Caller, Error>;
}

/// Development only: trusts `X-Bonebank-User`, `X-Bonebank-Project` and
/// `X-Bonebank-Role` as sent. A node refuses to use it unless it listens on
/// a loopback address.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevelopmentIdentity;

pub const USER_HEADER: &str = "x-bonebank-user";
pub const PROJECT_HEADER: &str = "x-bonebank-project";
pub const ROLE_HEADER: &str = "x-bonebank-role";
/// For stewards: the site ids they steward, comma-separated.
pub const SITES_HEADER: &str = "x-bonebank-sites";

impl IdentityVerifier for DevelopmentIdentity {
    fn verify(&self, headers: &HeaderMap) -> Result<Caller, Error> {
        let get = |name: &str| -> Result<String, Error> {
            let v = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .ok_or_else(|| {
                    Error::Unauthenticated(format!(
                        "missing the {name} header (development identity mode)"
                    ))
                })?;
            Ok(v.to_owned())
        };
        let role = get(ROLE_HEADER)?
            .parse::<Role>()
            .map_err(|e| Error::Unauthenticated(e.to_string()))?;
        let sites = headers
            .get(SITES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            user: get(USER_HEADER)?,
            project: get(PROJECT_HEADER)?,
            role,
            sites,
        })
    }
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => state.identity.verify(req.headers()),
            None => Err(Error::Engine("no application state".into())),
        };
        ready(result)
    }
}
