//! From an answer to a sample request in the BBMRI-ERIC Negotiator: the
//! coordinator builds the Negotiator v3 request for the chosen sites and
//! sends it to a stand-in on loopback that checks it the way the Negotiator
//! validates a request from a discovery service.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bonebank_coordinator::config::NegotiatorConfig;
use bonebank_coordinator::config::biobank_of;
use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::Role;
use bonebank_schemas::wire::{FederatedResult, NegotiatorHandoff, NegotiatorRequest, WhoAmI};
use bonebank_service::tls;
use serde_json::json;

use crate::http::{get, ok, post};

const USER: &str = "bonebank-coordinator";
const PASSWORD: &str = "s3cret";

/// The requests the stand-in accepted.
type Received = Arc<Mutex<Vec<NegotiatorRequest>>>;

/// What the Negotiator checks of a request from a discovery service: its
/// credentials, a link, a description, and resources that are Directory
/// collections with their biobanks.
fn problems(request: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |key: &str| request.get(key).and_then(|v| v.as_str()).unwrap_or("");
    match reqwest::Url::parse(text("url")) {
        Ok(u) if ["http", "https"].contains(&u.scheme()) => {}
        _ => out.push("url must be an http(s) URL".to_owned()),
    }
    if text("humanReadable").trim().is_empty() {
        out.push("humanReadable must not be blank".to_owned());
    }
    let resources = request
        .get("resources")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    if resources.is_empty() {
        out.push("resources must not be empty".to_owned());
    }
    for r in &resources {
        let id = r.get("id").and_then(|v| v.as_str()).unwrap_or("");
        let org = r
            .pointer("/organization/externalId")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if biobank_of(id).is_none() {
            out.push(format!("{id:?} is not a collection id"));
        } else if biobank_of(id) != Some(org) {
            out.push(format!("{id} does not belong to {org}"));
        }
        for key in ["/name", "/organization/name"] {
            if r.pointer(key)
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
            {
                out.push(format!("{id}: {key} is blank"));
            }
        }
    }
    for key in request.as_object().into_iter().flat_map(|o| o.keys()) {
        if !["url", "humanReadable", "resources"].contains(&key.as_str()) {
            out.push(format!("unknown field {key}"));
        }
    }
    out
}

async fn requests(
    req: HttpRequest,
    body: web::Json<serde_json::Value>,
    received: web::Data<Received>,
) -> HttpResponse {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    if auth != Some(expected.as_str()) {
        return HttpResponse::Unauthorized()
            .json(serde_json::json!({"title": "Unauthorized", "detail": "bad credentials"}));
    }
    let problems = problems(&body);
    if !problems.is_empty() {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"title": "Bad Request", "detail": problems.join("; ")}));
    }
    let request: NegotiatorRequest = serde_json::from_value(body.into_inner()).unwrap();
    let n = {
        let mut all = received.lock().unwrap();
        all.push(request.clone());
        all.len()
    };
    HttpResponse::Created().json(serde_json::json!({
        "id": format!("req-{n}"),
        "url": request.url,
        "redirectUrl": format!("http://{}/requests/new-{n}", req.connection_info().host()),
    }))
}

/// The stand-in, on a loopback port; its base URL.
fn stand_in(received: Received) -> String {
    let data = web::Data::new(received);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/v3/requests", web::post().to(requests))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.disable_signals().run());
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_becomes_a_negotiator_request() {
    tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 300, 50 + i as u64).unwrap();
    }
    let net = LocalNetwork::start(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();
    let received = Received::default();
    let credentials = tmp.path().join("negotiator.secret");
    std::fs::write(&credentials, format!("{USER}:{PASSWORD}\n")).unwrap();
    let mut config = net.coordinator_config.clone();
    config.state_dir = tmp.path().join("coordinator-negotiator");
    config.negotiator = Some(NegotiatorConfig {
        url: stand_in(received.clone()),
        credentials_file: Some(credentials.clone()),
    });
    let coordinator = bonebank_coordinator::server::start(&config).unwrap();
    let url = coordinator.url();
    let ada = net.token(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]));

    let who: WhoAmI = ok(get(&format!("{url}/v1/whoami"), Some(&ada)).await);
    assert!(who.negotiator, "the app is told it can send");

    let sql = "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE diagnosis LIKE 'S72%'";
    let answer: FederatedResult = ok(post(
        &format!("{url}/v1/query"),
        Some(&ada),
        &json!({ "sql": sql }),
    )
    .await);
    let id = answer.id.unwrap();
    let hand_off = format!("{url}/v1/history/{id}/negotiator");

    // Built only: every answered site with its Directory collection.
    let built: NegotiatorHandoff = ok(post(&hand_off, Some(&ada), &json!({})).await);
    assert_eq!(built.redirect_url, None);
    assert!(received.lock().unwrap().is_empty(), "nothing sent");
    assert_eq!(built.request.url, format!("{url}/#a={id}"));
    assert!(
        built.request.human_readable.contains("S72"),
        "{}",
        built.request.human_readable
    );
    let sites: Vec<_> = built
        .request
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(sites, ["DE-LUE", "DK-ODE", "DK-NAE"]);
    assert!(
        problems(&serde_json::to_value(&built.request).unwrap()).is_empty(),
        "the built request is one the Negotiator takes"
    );

    // Sent, for one chosen site: the researcher continues at redirectUrl.
    let chosen = json!({"sites": ["dk-ode"], "send": true});
    let sent: NegotiatorHandoff = ok(post(&hand_off, Some(&ada), &chosen).await);
    assert!(
        sent.redirect_url
            .as_deref()
            .unwrap()
            .ends_with("/requests/new-1"),
        "{:?}",
        sent.redirect_url
    );
    let got = received.lock().unwrap().clone();
    eprintln!(
        "the stand-in received: {}",
        serde_json::to_string(&got).unwrap()
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], sent.request);
    assert_eq!(got[0].resources.len(), 1);
    assert_eq!(got[0].resources[0].name, "DK-ODE");
    assert_eq!(
        got[0].resources[0].organization.external_id,
        "bbmri-eric:ID:DK_ODE_DEMO"
    );

    // A site that was not asked, and another user's answer: refused.
    let (status, e) = post(&hand_off, Some(&ada), &json!({"sites": ["DE-XYZ"]})).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("conflict")), "{e}");
    let bo = net.token(&DevUser::new("bo", Role::Researcher, Some("p1"), &[]));
    let (status, e) = post(&hand_off, Some(&bo), &json!({})).await;
    assert_eq!(status, 404, "bo cannot hand on ada's answer: {e}");
    assert_eq!(e["code"], "not_found");

    // The Negotiator refuses (wrong credentials): the researcher is told it
    // was the Negotiator, with what it said, as 502, not as our own failure.
    std::fs::write(&credentials, format!("{USER}:wrong\n")).unwrap();
    let mut config = config.clone();
    config.state_dir = tmp.path().join("coordinator-negotiator-2");
    let other = bonebank_coordinator::server::start(&config).unwrap();
    let answer: FederatedResult = ok(post(
        &format!("{}/v1/query", other.url()),
        Some(&ada),
        &json!({"sql": "SELECT COUNT(*) FROM samples"}),
    )
    .await);
    let (status, e) = post(
        &format!(
            "{}/v1/history/{}/negotiator",
            other.url(),
            answer.id.unwrap()
        ),
        Some(&ada),
        &json!({"send": true}),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(e["code"], "upstream_failed");
    assert!(
        e["message"].as_str().unwrap().contains("bad credentials"),
        "{e}"
    );
    assert_eq!(received.lock().unwrap().len(), 1);
}
