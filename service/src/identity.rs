//! Who is calling. An API request carries an OIDC access token as
//! `Authorization: Bearer`; the service checks it itself with the
//! [`TokenVerifier`] in its app data. Pages' requests carry a session cookie
//! instead, where the app has a [`BrowserLogin`] (its session's token is
//! checked the same way, and a request that changes something must carry
//! the session's CSRF token). Handlers get callers only through the
//! [`Caller`] extractor, so no handler can skip the check, and a steward's
//! handlers only through [`Steward`], so none can skip that check either.

use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpRequest, web};
use bonebank_schemas::Role;
use futures::future::LocalBoxFuture;

use crate::Error;
use crate::browser::BrowserLogin;
use crate::grant::GrantVerifier;
use crate::oidc::TokenVerifier;

/// A caller whose identity was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub project: String,
    pub role: Role,
    /// For stewards: the sites they steward.
    pub sites: Vec<String>,
    /// Where to write to the user, from the token's `email` claim; only
    /// the coordinator uses it, and it never goes to a node.
    pub email: Option<String>,
}

/// The site a service decides for, in its app data: whose stewards the
/// [`Steward`] extractor admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StewardedSite(pub String);

/// A verified data steward of this service's site. Made only by the
/// extractor (a token naming the caller a steward of [`StewardedSite`]) or,
/// on the node's own machine, by [`Steward::on_site_machine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steward {
    caller: Caller,
}

impl Steward {
    /// Admits `caller` as a steward of `site`, or says why not.
    pub fn admit(caller: Caller, site: &str) -> Result<Self, Error> {
        if caller.role != Role::Steward {
            return Err(Error::Forbidden(
                "only the site's data stewards decide on queries".into(),
            ));
        }
        if !Self::stewards(&caller, site) {
            return Err(Error::Forbidden(format!(
                "you are not a data steward of {site}"
            )));
        }
        Ok(Self { caller })
    }

    /// Whether `caller`'s token names them a steward of `site`.
    pub fn stewards(caller: &Caller, site: &str) -> bool {
        caller.role == Role::Steward && caller.sites.iter().any(|s| s == site)
    }

    /// A steward acting from the node's own machine (`bonebank-node steward
    /// …`): whoever can run commands there can read the site's state anyway,
    /// so the operator's shell is trusted with the name it gives.
    pub fn on_site_machine(name: &str, site: &str) -> Self {
        Self {
            caller: Caller {
                user: name.to_owned(),
                project: "stewardship".into(),
                role: Role::Steward,
                sites: vec![site.to_owned()],
                email: None,
            },
        }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn user(&self) -> &str {
        &self.caller.user
    }
}

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

/// The caller `token` names: a coordinator's grant checked by `grants`
/// (where the service takes grants), any other token by `verifier`.
pub async fn verify(
    token: &str,
    verifier: &TokenVerifier,
    grants: Option<&GrantVerifier>,
) -> Result<Caller, Error> {
    if crate::grant::is_grant(token) {
        return grants
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "this service takes no grants: a node needs [grants] coordinator_key, and the coordinator takes users' own tokens only".into(),
                )
            })?
            .verify(token);
    }
    verifier.verify(token).await
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        if let Some(login) = req.app_data::<web::Data<BrowserLogin>>().cloned() {
            let req = req.clone();
            return Box::pin(async move {
                login
                    .signed_in(&req)
                    .await?
                    .map(|s| s.caller)
                    .ok_or_else(|| {
                        Error::Unauthenticated("not signed in: sign in at /auth/login".into())
                    })
            });
        }
        let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
        let grants = req.app_data::<web::Data<GrantVerifier>>().cloned();
        let token = bearer(req.headers());
        Box::pin(async move {
            let verifier = verifier
                .ok_or_else(|| Error::Internal("the service has no token verifier".into()))?;
            verify(&token?, &verifier, grants.as_ref().map(|g| g.get_ref())).await
        })
    }
}

impl FromRequest for Steward {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let site = req.app_data::<web::Data<StewardedSite>>().cloned();
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let site =
                site.ok_or_else(|| Error::Internal("the service names no stewarded site".into()))?;
            Steward::admit(caller.await?, &site.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, sites: &[&str]) -> Caller {
        Caller {
            user: "u".into(),
            project: "p".into(),
            role,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            email: None,
        }
    }

    #[test]
    fn only_stewards_of_this_site_are_admitted() {
        assert!(Steward::admit(caller(Role::Steward, &["DK-ODE"]), "DK-ODE").is_ok());
        let other = Steward::admit(caller(Role::Steward, &["DE-LUE"]), "DK-ODE").unwrap_err();
        assert!(
            other.to_string().contains("not a data steward of DK-ODE"),
            "{other}"
        );
        let researcher =
            Steward::admit(caller(Role::Researcher, &["DK-ODE"]), "DK-ODE").unwrap_err();
        assert!(matches!(researcher, Error::Forbidden(_)), "{researcher}");
    }
}
