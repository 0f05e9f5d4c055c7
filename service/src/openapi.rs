//! Each service's OpenAPI 3.1 document, served at `/openapi.json`.
//!
//! Every handler carries `#[utoipa::path]` beside its actix route attribute
//! and is registered through `utoipa_actix_web`, which takes the path and
//! method from the route attribute and the request body from the handler's
//! `Json<T>` argument. A handler is served only by being documented, so the
//! document cannot drift from what the service answers. The wire types'
//! schemas come from their serde definitions (`ToSchema` in
//! `bonebank-schemas`). This module finishes a document (what the service
//! is, how callers identify themselves, the one error shape) and serves it.

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::{App, HttpResponse, get, web};
use bonebank_schemas::wire::ErrorBody;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};
use utoipa_actix_web::UtoipaApp;

/// What a document says about its service.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub title: &'a str,
    pub description: &'a str,
    /// The browser session's cookie, for a service that signs people in.
    pub session_cookie: Option<&'a str>,
}

/// The security scheme of a bearer access token from the network's
/// OpenID Connect provider.
pub const BEARER: &str = "bearer";
/// The security scheme of a browser session (a cookie set by
/// `/auth/callback`; requests that change something also carry the
/// session's CSRF token in `x-csrf-token`).
pub const SESSION: &str = "session";

/// The served document, as JSON.
#[derive(Debug)]
struct Document(String);

/// The application with its documented services, and the document served
/// at `/openapi.json`.
pub fn finish<T, B>(
    app: UtoipaApp<T>,
    about: About<'_>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody + use<T, B>>,
        Error = actix_web::Error,
        InitError = (),
    > + use<T, B>,
>
where
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let (app, doc) = app.service(document).split_for_parts();
    let doc = complete(doc, about);
    let json = doc.to_json().expect("an OpenAPI document is JSON");
    let routes = Routes::of(&doc);
    // On every listener: one client address holds a bounded number of
    // open requests, bodies arrive in time or the connection is closed,
    // a path asked with a method it does not answer gets 405 with
    // `Allow` (see [`fallback`]), and every answer says it is
    // to be read as its type says and only over HTTPS (browsers ignore
    // HSTS on plain HTTP, which bonebank serves on loopback only).
    app.app_data(web::Data::new(Document(json)))
        .app_data(web::Data::new(routes))
        .default_service(web::to(fallback))
        // Answers (the pages' files, a researcher's history) are gzipped
        // for clients that ask for it.
        .wrap(actix_web::middleware::Compress::default())
        .wrap(actix_web::middleware::from_fn(crate::server::body_deadline))
        .wrap(actix_web::middleware::from_fn(crate::server::per_address))
        .wrap(
            actix_web::middleware::DefaultHeaders::new()
                .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((
                    actix_web::http::header::STRICT_TRANSPORT_SECURITY,
                    "max-age=31536000",
                )),
        )
}

/// The document's title, version, security schemes and error shape.
fn complete(mut doc: OpenApi, about: About<'_>) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title(about.title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(about.description))
        .build();
    let mut components = ComponentsBuilder::new()
        .schema(ErrorBody::name(), ErrorBody::schema())
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from the network's OpenID Connect provider (`bonebank login`).",
                    ))
                    .build(),
            ),
        );
    if let Some(cookie) = about.session_cookie {
        components = components.security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie,
                "A browser session started at /auth/login. Requests that change something \
                 also send the session's CSRF token in the x-csrf-token header.",
            ))),
        );
    }
    let mut built = components.build();
    if let Some(existing) = doc.components.take() {
        built.schemas.extend(existing.schemas);
        built.responses.extend(existing.responses);
    }
    for name in ONE_QUESTION {
        if let Some(schema) = built.schemas.remove(*name) {
            built.schemas.insert((*name).into(), one_question(schema));
        }
    }
    doc.components = Some(built);
    doc
}

/// The request schemas that carry a question as `sql` or as `query`.
const ONE_QUESTION: &[&str] = &["QueryRequest", "FederatedRequest"];

/// `schema`, which names `sql` and `query` among its properties, with the
/// rule the handlers keep: exactly one of the two (neither `{}` nor both
/// is a question).
fn one_question(schema: RefOr<Schema>) -> RefOr<Schema> {
    let with = |field: &str| ObjectBuilder::new().required(field).build();
    let exactly_one = OneOfBuilder::new().item(with("sql")).item(with("query"));
    RefOr::T(Schema::AllOf(
        AllOfBuilder::new().item(schema).item(exactly_one).build(),
    ))
}

/// The document's paths, as segments (`None` for a `{parameter}`), each
/// with the methods it is answered by.
#[derive(Debug)]
struct Routes(Vec<(Vec<Option<String>>, Vec<&'static str>)>);

impl Routes {
    fn of(doc: &OpenApi) -> Self {
        Self(
            doc.paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let segments = path
                        .trim_start_matches('/')
                        .split('/')
                        .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                        .collect();
                    let methods = [
                        ("GET", item.get.is_some()),
                        ("PUT", item.put.is_some()),
                        ("POST", item.post.is_some()),
                        ("DELETE", item.delete.is_some()),
                        ("OPTIONS", item.options.is_some()),
                        ("HEAD", item.head.is_some()),
                        ("PATCH", item.patch.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, has)| has.then_some(m))
                    .collect();
                    (segments, methods)
                })
                .collect(),
        )
    }

    /// The methods `path` is answered by; empty if the document has no
    /// such path.
    fn allowed(&self, path: &str) -> Vec<&'static str> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut methods = Vec::new();
        for (segments, answered) in &self.0 {
            let matches = segments.len() == parts.len()
                && segments
                    .iter()
                    .zip(&parts)
                    // A `{parameter}` takes any segment but an empty one.
                    .all(|(s, p)| s.as_deref().map_or(!p.is_empty(), |s| s == *p));
            if matches {
                for m in answered {
                    if !methods.contains(m) {
                        methods.push(*m);
                    }
                }
            }
        }
        methods
    }
}

/// What no route took: 405 with `Allow` for a documented path asked with
/// another method, else 404; both in the wire shape.
async fn fallback(req: actix_web::HttpRequest, routes: web::Data<Routes>) -> HttpResponse {
    use bonebank_schemas::wire::ErrorCode;
    let allowed = routes.allowed(req.path());
    let (code, message, hint) = if allowed.is_empty() {
        (
            ErrorCode::NotFound,
            "no such endpoint".to_owned(),
            "the endpoints are listed in /openapi.json",
        )
    } else {
        (
            ErrorCode::MethodNotAllowed,
            format!(
                "{} is not answered here; {} is",
                req.method().as_str().chars().take(20).collect::<String>(),
                allowed.join(" or ")
            ),
            "/openapi.json describes each path's methods",
        )
    };
    let mut response = crate::error::answer(ErrorBody {
        code,
        message,
        hint: Some(hint.to_owned()),
        ticket: None,
    });
    if !allowed.is_empty() {
        let allow = actix_web::http::header::HeaderValue::from_str(&allowed.join(", "))
            .expect("method names are header text");
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, allow);
    }
    response
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    tag = "service",
    responses((status = 200, description = "This service's OpenAPI 3.1 document.", content_type = "application/json", body = Object))
)]
#[get("/openapi.json")]
async fn document(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// The answers of an endpoint that needs a signed-in caller, besides its
/// own.
#[derive(Debug, utoipa::IntoResponses)]
pub enum SignedIn {
    /// No access token or session, or one that did not check out.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The identity provider's keys could not be fetched, so no token can
    /// be checked just now.
    #[response(status = 503)]
    IdentityUnavailable(ErrorBody),
}

/// The answers of an endpoint only the site's data stewards may use,
/// besides its own.
#[derive(Debug, utoipa::IntoResponses)]
pub enum StewardOnly {
    /// No access token or session, or one that did not check out.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The caller is not a data steward of this site (or a session's
    /// request came without its CSRF token).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The identity provider's keys could not be fetched, so no token can
    /// be checked just now.
    #[response(status = 503)]
    IdentityUnavailable(ErrorBody),
}

/// What `GET /auth/callback` answers, wherever people sign in.
#[derive(Debug, utoipa::IntoResponses)]
pub enum SignInCallback {
    /// Signed in: on to the pages with a session cookie. Someone the
    /// service does not admit goes to the first page with the reason
    /// (`refused=…`).
    #[response(status = 303)]
    Redirect,
    /// Not signed in: the provider's answer carries an error, has no code
    /// or state, does not belong to a sign-in started in this browser, or
    /// its tokens did not check out.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The identity provider could not be reached.
    #[response(status = 503)]
    IdentityUnavailable(ErrorBody),
}

/// What `POST /auth/logout` answers, wherever people sign out.
#[derive(Debug, utoipa::IntoResponses)]
pub enum SignOut {
    /// Signed out, or there was no session: the cookie is removed.
    #[response(status = 204)]
    SignedOut,
    /// The request came without the session's CSRF token.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}
