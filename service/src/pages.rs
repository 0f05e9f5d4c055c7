//! Pages' files, compiled into the binary: a service with pages needs no
//! CDN and fetches nothing at run time. The files every service's pages
//! share (the look, the language catalogues, talking to the API, plain-words
//! questions) live in `service/web/` and are served under `/assets/`; each
//! service serves its own pages' files next to them. Every file goes out
//! with headers that allow only the service's own scripts and styles.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};

/// One file of a page.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its path under the folder it is served from, e.g. `i18n/en.json`.
    pub path: &'static str,
    pub body: &'static [u8],
}

/// An [`Asset`] from a file below the calling crate's folder.
#[macro_export]
macro_rules! asset {
    ($dir:literal, $path:literal) => {
        $crate::pages::Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $path)),
        }
    };
}

/// The files every service's pages share, served under `/assets/`.
pub const SHARED: &[Asset] = &[
    asset!("web", "style.css"),
    asset!("web", "i18n.js"),
    asset!("web", "api.js"),
    asset!("web", "ui.js"),
    asset!("web", "words.js"),
    asset!("web", "i18n/en.json"),
    asset!("web", "i18n/de.json"),
    asset!("web", "i18n/da.json"),
];

/// The pages' words in `lang` (`en`, `de` or `da`; English otherwise), for
/// what a service writes in Rust in the pages' language (the yearly report).
pub fn words(lang: &str) -> &'static serde_json::Map<String, serde_json::Value> {
    use std::sync::OnceLock;
    static WORDS: OnceLock<Vec<(&'static str, serde_json::Map<String, serde_json::Value>)>> =
        OnceLock::new();
    let all = WORDS.get_or_init(|| {
        ["en", "de", "da"]
            .into_iter()
            .map(|l| {
                let file = SHARED
                    .iter()
                    .find(|a| a.path == format!("i18n/{l}.json"))
                    .expect("a catalogue per language");
                (
                    l,
                    serde_json::from_slice(file.body).expect("the catalogues are JSON objects"),
                )
            })
            .collect()
    });
    &all.iter().find(|(l, _)| *l == lang).unwrap_or(&all[0]).1
}

/// One of the pages' strings in `lang`, with `{name}` placeholders filled;
/// the key itself where there is no such string.
pub fn word(lang: &str, key: &str, values: &[(&str, &str)]) -> String {
    let mut s = words(lang)
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or(key)
        .to_owned();
    for (name, value) in values {
        s = s.replace(&format!("{{{name}}}"), value);
    }
    s
}

/// What pages may load: only the service's own files, and talk only to it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// A file's entity tag: a hash of its bytes, so that it changes exactly
/// when a new bonebank serves a changed file.
fn etag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}

/// Whether the browser's copy (`If-None-Match`) is this one.
fn fresh(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == tag
        })
}

/// A page's file with its headers; 404 if there is no such file. Files go
/// out with an entity tag and `Cache-Control: no-cache`: the browser keeps
/// them, asks each time whether they changed, and gets 304 with no body
/// while they have not (the compression middleware shrinks the rest).
pub fn serve(req: &HttpRequest, assets: &[Asset], path: &str) -> HttpResponse {
    match assets.iter().find(|a| a.path == path) {
        Some(a) => {
            let tag = etag(a.body);
            let held = fresh(req, &tag);
            let mut response = if held {
                HttpResponse::NotModified()
            } else {
                HttpResponse::Ok()
            };
            response
                .insert_header((header::CONTENT_TYPE, content_type(a.path)))
                .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .insert_header((header::REFERRER_POLICY, "no-referrer"))
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .insert_header((header::ETAG, tag));
            if held {
                response.finish()
            } else {
                response.body(a.body)
            }
        }
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file\n"),
    }
}

/// What an endpoint that serves pages' files answers ([`serve`]), for
/// the OpenAPI documents.
#[derive(Debug)]
pub struct PageFile;

impl utoipa::IntoResponses for PageFile {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::PartialSchema;
        use utoipa::openapi::{ContentBuilder, ResponseBuilder};
        let file = ["text/javascript", "text/css", "application/json"]
            .into_iter()
            .fold(
                ResponseBuilder::new()
                    .description("The file, with the pages' content security policy."),
                |r, kind| r.content(kind, ContentBuilder::new().build()),
            );
        let missing = ResponseBuilder::new().description("No such file.").content(
            "text/plain",
            ContentBuilder::new().schema(Some(String::schema())).build(),
        );
        [("200", file.build()), ("404", missing.build())]
            .into_iter()
            .map(|(status, r)| (status.to_owned(), r.into()))
            .collect()
    }
}

/// `GET /assets/{path}`: the shared files.
#[utoipa::path(
    tag = "pages",
    params(("path" = String, Path, description = "A shared file, e.g. `style.css` or `i18n/de.json`.")),
    responses(PageFile)
)]
#[get("/assets/{path:.*}")]
pub async fn shared(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve(&req, SHARED, &path)
}

/// `GET /favicon.ico`: nothing, so browsers stop asking.
#[utoipa::path(tag = "pages", responses((status = 204, description = "No icon.")))]
#[get("/favicon.ico")]
pub async fn favicon() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of a catalogue, in order.
    fn keys(lang: &str) -> Vec<String> {
        let file = SHARED
            .iter()
            .find(|a| a.path == format!("i18n/{lang}.json"))
            .expect("a catalogue per language");
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(file.body).expect("a catalogue is a JSON object");
        assert!(
            map.values()
                .all(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())),
            "{lang}: every string is text, none empty"
        );
        map.keys().cloned().collect()
    }

    #[test]
    fn every_language_has_every_string() {
        let en = keys("en");
        assert!(en.len() > 50);
        for lang in ["de", "da"] {
            let other = keys(lang);
            let missing: Vec<_> = en.iter().filter(|k| !other.contains(k)).collect();
            let extra: Vec<_> = other.iter().filter(|k| !en.contains(k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{lang}: missing {missing:?}, not in English {extra:?}"
            );
        }
    }

    #[test]
    fn files_go_out_with_their_type_and_the_page_policy() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let r = serve(&req, SHARED, "i18n.js");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/javascript; charset=utf-8"
        );
        let csp = r
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(serve(&req, SHARED, "../Cargo.toml").status(), 404);
    }

    #[test]
    fn a_file_the_browser_holds_is_not_sent_again() {
        let plain = actix_web::test::TestRequest::default().to_http_request();
        let first = serve(&plain, SHARED, "style.css");
        assert_eq!(first.status(), 200);
        let tag = first
            .headers()
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            first.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-cache"
        );
        let holding = |value: &str| {
            actix_web::test::TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, value))
                .to_http_request()
        };
        let again = serve(&holding(&tag), SHARED, "style.css");
        assert_eq!(again.status(), 304);
        assert_eq!(
            again.headers().get(header::ETAG).unwrap().to_str().unwrap(),
            tag
        );
        // A weak or listed tag is the same copy; another file's tag is not.
        assert_eq!(
            serve(&holding(&format!("\"x\", W/{tag}")), SHARED, "style.css").status(),
            304
        );
        assert_eq!(serve(&holding(&tag), SHARED, "i18n.js").status(), 200);
        // Files differ, and so do their tags.
        let other = serve(&plain, SHARED, "i18n.js");
        assert_ne!(
            other.headers().get(header::ETAG).unwrap().to_str().unwrap(),
            tag
        );
    }
}
