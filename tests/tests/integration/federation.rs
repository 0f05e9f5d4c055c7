//! A network on loopback: three real nodes with real data, mutual TLS with
//! real certificates, and a coordinator in front.

use std::time::{Duration, Instant};

use bonebank_coordinator::config::SiteEndpoint;
use bonebank_coordinator::server;
use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_dev::pki::{self, Ca, PkiDir};
use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{FederatedRequest, FederatedResult, SiteStatus};
use bonebank_schemas::{Role, SampleType, SiteId, ValueSet};
use bonebank_service::tls;

const DONORS: u64 = 400;

/// Generates the three demo sites once per test into a temporary directory.
fn sites(tmp: &tempfile::TempDir) -> Vec<SiteId> {
    let sites = local::demo_sites();
    for (i, s) in sites.iter().enumerate() {
        local::generate_site(tmp.path(), s, DONORS, 10 + i as u64).unwrap();
    }
    sites
}

fn generous() -> Policy {
    let mut p = Policy::default();
    p.budget.site = 1000.0;
    p.budget.project = 1000.0;
    p.budget.user = 1000.0;
    p.zcdp.budget = p.budget;
    p
}

/// A request with an access token from the network's development provider.
fn as_user(
    req: reqwest::RequestBuilder,
    net: &LocalNetwork,
    user: &str,
    project: &str,
    role: Role,
) -> reqwest::RequestBuilder {
    req.bearer_auth(net.token(&DevUser::new(user, role, Some(project), &[])))
}

/// An industry partner's token.
fn industry(net: &LocalNetwork) -> String {
    net.token(&DevUser::new("ida", Role::Industry, Some("scoping"), &[]))
}

/// Status and JSON body of a request, with an optional JSON body sent.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn ask(net: &LocalNetwork, url: &str, sql: &str) -> FederatedResult {
    tls::install_default_provider();
    let request = FederatedRequest {
        sql: Some(sql.into()),
        query: None,
        loss: Some(0.05),
        sites: None,
        fresh: true,
        purpose: None,
    };
    let req = as_user(
        reqwest::Client::new().post(format!("{url}/v1/query")),
        net,
        "ada",
        "p1",
        Role::Researcher,
    );
    let (status, body) = send(req, Some(serde_json::to_value(request).unwrap())).await;
    assert_eq!(status, 200);
    serde_json::from_value(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_query_adds_up_the_sites() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let net = LocalNetwork::start(tmp.path(), &ids, &generous(), 10_000).unwrap();
    let url = net.coordinator.url();

    // Listing the sites asks every node: signed-in users only.
    tls::install_default_provider();
    let sites_url = format!("{url}/v1/sites");
    let anonymous = reqwest::get(&sites_url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let req = as_user(
        reqwest::Client::new().get(&sites_url),
        &net,
        "ada",
        "p1",
        Role::Researcher,
    );
    let listed: Vec<serde_json::Value> = req.send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|s| s["status"] == "up"), "{listed:?}");

    let r = ask(
        &net,
        &url,
        "SELECT COUNT(*), COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling >= 40",
    )
    .await;
    assert_eq!(r.sites.len(), 3);
    assert!(r.missing.is_empty(), "{:?}", r.sites);
    for (site, id) in r.sites.iter().zip(&ids) {
        assert_eq!(site.site_id, id.to_string());
        assert_eq!(site.status, SiteStatus::Answered, "{site:?}");
    }
    assert_eq!(r.total.len(), 1);
    for m in 0..2 {
        let sum: f64 = r
            .sites
            .iter()
            .map(|s| s.result.as_ref().unwrap().rows[0].values[m].value)
            .sum();
        let t = r.total[0].values[m].as_ref().unwrap();
        assert_eq!(t.unclamped, sum);
        assert_eq!(t.value, sum.max(0.0));
        assert_eq!(t.sites, 3);
        assert!(t.interval[0] <= t.value && t.value <= t.interval[1]);
    }

    // Grouped: every key of the dimension, at every site and in the total.
    let r = ask(
        &net,
        &url,
        "SELECT sample_type, COUNT(*) FROM samples GROUP BY sample_type",
    )
    .await;
    let keys: Vec<Vec<String>> = SampleType::ALL
        .iter()
        .map(|t| vec![t.to_string()])
        .collect();
    for site in &r.sites {
        let got: Vec<Vec<String>> = site
            .result
            .as_ref()
            .unwrap()
            .rows
            .iter()
            .map(|r| r.key.clone())
            .collect();
        assert_eq!(got, keys, "{}", site.site_id);
    }
    let total_keys: Vec<Vec<String>> = r.total.iter().map(|t| t.key.clone()).collect();
    assert_eq!(total_keys, keys);
    for (k, row) in r.total.iter().enumerate() {
        let sum: f64 = r
            .sites
            .iter()
            .map(|s| s.result.as_ref().unwrap().rows[k].values[0].value)
            .sum();
        assert_eq!(row.values[0].as_ref().unwrap().unclamped, sum);
    }

    // A hostile question is refused by the coordinator before it is parsed,
    // and one too deep for JSON as well.
    for (body, expected) in [
        (
            serde_json::json!({ "sql": format!(
                "SELECT COUNT(*) FROM samples WHERE {}sex = 'Female'{}",
                "NOT (".repeat(40),
                ")".repeat(40)
            ) }),
            "nests parentheses 40 deep",
        ),
        (
            serde_json::json!({ "query": {
                "measures": [{ "kind": "samples" }],
                "filter": (0..30).fold(serde_json::json!({"is_null": {"column": "diagnosis"}}), |f, _| serde_json::json!({ "not": f })),
                "group_by": [],
            } }),
            "30 deep",
        ),
    ] {
        let started = Instant::now();
        let req = as_user(
            reqwest::Client::new().post(format!("{url}/v1/query")),
            &net,
            "ada",
            "p1",
            Role::Researcher,
        );
        let (status, answer) = send(req, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(expected),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    // Grouped by site: each site lists only its own id, and so does the total.
    let r = ask(
        &net,
        &url,
        "SELECT site_id, COUNT(*) FROM samples GROUP BY site_id",
    )
    .await;
    assert_eq!(r.total.len(), 3);
    for (row, site) in r.total.iter().zip(&r.sites) {
        assert_eq!(row.key, vec![site.site_id.clone()]);
        let v = row.values[0].as_ref().unwrap();
        assert_eq!(v.sites, 1);
        assert_eq!(
            v.unclamped,
            site.result.as_ref().unwrap().rows[0].values[0].value
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_reported_unreachable_and_the_rest_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let mut net = LocalNetwork::start(tmp.path(), &ids, &generous(), 3_000).unwrap();
    let (_, odense) = net.nodes.remove(1);
    odense.stop().await;

    let started = Instant::now();
    let r = ask(&net, &net.coordinator.url(), "SELECT COUNT(*) FROM samples").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.sites[1].site_id, "DK-ODE");
    assert_eq!(r.sites[1].status, SiteStatus::Unreachable);
    assert_eq!(r.missing, vec!["DK-ODE".to_owned()]);
    assert_eq!(r.sites[0].status, SiteStatus::Answered);
    assert_eq!(r.sites[2].status, SiteStatus::Answered);
    let t = r.total[0].values[0].as_ref().unwrap();
    assert_eq!(t.sites, 2);
    // No internal addresses in what researchers see.
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("127.0.0.1"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_times_out_and_the_answer_still_arrives_by_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let net = LocalNetwork::start(tmp.path(), &ids, &generous(), 10_000).unwrap();

    // A "node" that accepts connections and then says nothing at all.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_addr = stall.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = stall.accept().await {
            open.push(s);
        }
    });

    let deadline_ms = 1_500;
    let mut config = net.coordinator_config.clone();
    config.deadline_ms = deadline_ms;
    config.state_dir = tmp.path().join("coordinator-2");
    config.sites[2].url = Some(format!("https://{stall_addr}"));
    let coordinator = server::start(&config).unwrap();

    let started = Instant::now();
    let r = ask(&net, &coordinator.url(), "SELECT COUNT(*) FROM samples").await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(deadline_ms - 50), "{took:?}");
    assert!(took < Duration::from_millis(deadline_ms + 700), "{took:?}");
    assert_eq!(r.sites[2].status, SiteStatus::TimedOut, "{:?}", r.sites[2]);
    assert_eq!(r.sites[0].status, SiteStatus::Answered);
    assert_eq!(r.sites[1].status, SiteStatus::Answered);
    assert_eq!(r.missing, vec!["DK-NAE".to_owned()]);
    held.abort();
}

/// An HTTPS client that trusts the development CA and presents `identity`.
pub(crate) fn client(pki: &PkiDir, identity: Option<(&str, &str)>) -> reqwest::Client {
    let roots = tls::read_roots(&pki.ca_cert()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let dir = tempfile::tempdir().unwrap();
            let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            builder
                .with_client_auth_cert(
                    tls::read_certificates(&c).unwrap(),
                    tls::read_key(&k).unwrap(),
                )
                .unwrap()
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post_to_node(
    net: &LocalNetwork,
    client: &reqwest::Client,
    port: u16,
    body: serde_json::Value,
) -> Result<reqwest::Response, reqwest::Error> {
    // The node's certificate names localhost, so the CA check passes.
    let req = client.post(format!("https://localhost:{port}/v1/query"));
    as_user(req, net, "eve", "p1", Role::Researcher)
        .json(&body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_refuse_clients_at_the_tls_layer_unless_trusted_and_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let ca = Ca::generate("test CA").unwrap();
    PkiDir::new(tmp.path().join("pki"))
        .init_with(&ca, &ids)
        .unwrap();
    let net = LocalNetwork::start(tmp.path(), &ids, &generous(), 10_000).unwrap();
    let port = net.nodes[0].1.addr.port();
    let query = serde_json::json!({ "sql": "SELECT COUNT(*) FROM samples" });
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();

    // The coordinator's own certificate works (the control).
    let coordinator = (
        read(net.pki.coordinator_cert()),
        read(net.pki.root.join("coordinator.key")),
    );
    let ok = post_to_node(
        &net,
        &client(&net.pki, Some((&coordinator.0, &coordinator.1))),
        port,
        query.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);

    // No certificate.
    let e = post_to_node(&net, &client(&net.pki, None), port, query.clone()).await;
    assert!(
        e.is_err(),
        "a client without a certificate got {:?}",
        e.map(|r| r.status())
    );

    // A certificate with the right name from another CA.
    let other = Ca::generate("someone else's CA")
        .unwrap()
        .issue_client(pki::COORDINATOR_NAME)
        .unwrap();
    let e = post_to_node(
        &net,
        &client(&net.pki, Some((&other.cert_pem, &other.key_pem))),
        port,
        query.clone(),
    )
    .await;
    assert!(
        e.is_err(),
        "a certificate from another CA got {:?}",
        e.map(|r| r.status())
    );

    // A certificate from the right CA with a name not on the allow-list.
    let intruder = ca.issue_client("intruder.bonebank.test").unwrap();
    let e = post_to_node(
        &net,
        &client(&net.pki, Some((&intruder.cert_pem, &intruder.key_pem))),
        port,
        query.clone(),
    )
    .await;
    assert!(
        e.is_err(),
        "a name off the allow-list got {:?}",
        e.map(|r| r.status())
    );
    // A wildcard from the right CA that covers the allowed name, such as a
    // hospital holds for its whole domain, does not stand in for the
    // coordinator: the allow-list names exact names.
    for wildcard in ["*.bonebank.test", "*.BONEBANK.test"] {
        let rogue = ca.issue_client(wildcard).unwrap();
        let e = post_to_node(
            &net,
            &client(&net.pki, Some((&rogue.cert_pem, &rogue.key_pem))),
            port,
            query.clone(),
        )
        .await;
        assert!(
            e.is_err(),
            "a wildcard certificate {wildcard} got {:?}",
            e.map(|r| r.status())
        );
    }
    let allowed = ca.issue_client(pki::COORDINATOR_NAME).unwrap();
    let ok = post_to_node(
        &net,
        &client(&net.pki, Some((&allowed.cert_pem, &allowed.key_pem))),
        port,
        query.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ok.status(),
        200,
        "a fresh certificate for the allowed name works"
    );

    // With a valid certificate, the node still checks every query itself.
    let trusted = client(&net.pki, Some((&coordinator.0, &coordinator.1)));
    for body in [
        serde_json::json!({ "sql": "SELECT * FROM samples" }),
        serde_json::json!({ "query": { "measures": [{ "kind": "samples" }], "group_by": ["donor_id"] } }),
        serde_json::json!({ "query": { "measures": [{ "kind": "samples" }], "group_by": ["sex", "sample_type", "country"] } }),
        serde_json::json!({ "sql": "SELECT COUNT(*) FROM samples", "loss": 50.0 }),
    ] {
        let r = post_to_node(&net, &trusted, port, body.clone())
            .await
            .unwrap();
        let status = r.status().as_u16();
        let error: serde_json::Value = r.json().await.unwrap();
        assert!(status == 400 || status == 403, "{body}: {status} {error}");
        assert!(
            ["query_refused", "policy_refused"].contains(&error["code"].as_str().unwrap()),
            "{body}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_refuses_a_node_whose_certificate_does_not_match() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let net = LocalNetwork::start(tmp.path(), &ids, &generous(), 10_000).unwrap();
    let mut config = net.coordinator_config.clone();
    config.state_dir = tmp.path().join("coordinator-2");
    // DE-LUE's address, but the coordinator expects DK-ODE's certificate there.
    config.sites = vec![SiteEndpoint {
        id: SiteId::parse("DK-ODE").unwrap(),
        url: Some(format!("https://{}", net.nodes[0].1.addr)),
        server_name: Some(pki::node_name(&SiteId::parse("DK-ODE").unwrap())),
        directory_collection: None,
    }];
    let coordinator = server::start(&config).unwrap();
    let r = ask(&net, &coordinator.url(), "SELECT COUNT(*) FROM samples").await;
    assert_eq!(r.sites[0].status, SiteStatus::Unreachable);
    assert_eq!(
        r.sites[0].message.as_deref(),
        Some("the site's certificate did not verify")
    );

    // A node whose certificate comes from another CA is refused the same way.
    let other = tempfile::tempdir().unwrap();
    let other_pki = PkiDir::new(other.path());
    other_pki.init(&ids).unwrap();
    let mut config = net.coordinator_config.clone();
    config.state_dir = tmp.path().join("coordinator-3");
    config.tls.ca = other_pki.ca_cert();
    let coordinator = server::start(&config).unwrap();
    let r = ask(&net, &coordinator.url(), "SELECT COUNT(*) FROM samples").await;
    assert!(
        r.sites.iter().all(|s| s.status == SiteStatus::Unreachable),
        "{:?}",
        r.sites
    );
    // No site answered: the total is no number, with the reason, never an
    // exact zero (as JSON too: `null`).
    assert_eq!(r.total[0].values, vec![None], "{:?}", r.total);
    assert!(r.no_total.as_deref().unwrap().contains("no site answered"));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["total"][0]["values"][0].is_null(), "{json}");
}

/// A call to the coordinator with `token`.
async fn as_role(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    tls::install_default_provider();
    let req = reqwest::Client::new().request(method, format!("{url}{path}"));
    send(req.bearer_auth(token), body).await
}

/// A steward's call straight to a node, over mutual TLS with the
/// coordinator's certificate (as the node's own web page would).
pub(crate) async fn steward_call(
    net: &LocalNetwork,
    node: usize,
    steward_of: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    let (cert, key) = (
        read(net.pki.coordinator_cert()),
        read(net.pki.coordinator_key()),
    );
    let req = client(&net.pki, Some((&cert, &key))).request(
        method,
        format!("https://localhost:{}{path}", net.nodes[node].1.addr.port()),
    );
    let req = req.bearer_auth(net.token(&DevUser::new("sam", Role::Steward, None, &[steward_of])));
    send(req, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_waits_at_one_site_and_the_next_look_has_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    // The demo's rules: DK-ODE's stewards approve every industry query; the
    // others run them.
    let policy = |site: &SiteId| {
        let mut p = generous();
        p.rules = local::demo_policy(site).rules;
        p
    };
    let mut net = LocalNetwork::start_with(tmp.path(), &ids, policy, 10_000).unwrap();
    tls::install_default_provider();
    net.wait_for_catalogues(Duration::from_secs(60))
        .await
        .unwrap();
    let url = net.coordinator.url();
    let industry_token = industry(&net);
    let ask_industry = |sql: &'static str| {
        let (url, token) = (url.clone(), industry_token.clone());
        async move {
            as_role(
                &url,
                &token,
                reqwest::Method::POST,
                "/v1/query",
                Some(serde_json::json!({ "sql": sql, "loss": 0.02 })),
            )
            .await
        }
    };

    let (status, r) = ask_industry("SELECT sex, COUNT(*) FROM samples GROUP BY sex").await;
    assert_eq!(status, 200, "{r}");
    let r: FederatedResult = serde_json::from_value(r).unwrap();
    assert_eq!(
        r.sites[1].status,
        SiteStatus::WaitingForApproval,
        "{:?}",
        r.sites[1]
    );
    assert!(r.sites[1].message.as_deref().unwrap().contains("DK-ODE"));
    assert_eq!(
        (r.sites[0].status, r.sites[2].status),
        (SiteStatus::Answered, SiteStatus::Answered)
    );
    assert_eq!(r.missing, vec!["DK-ODE".to_owned()]);
    // Where no rule names industry partners, their catalogue-shaped
    // questions are answered from the catalogue; DK-ODE's steward, whose
    // rule names them, sees every one of theirs instead.
    for i in [0, 2] {
        let result = r.sites[i].result.as_ref().unwrap();
        assert_eq!(result.source, bonebank_schemas::wire::Source::Catalogue);
    }
    let id = r.id.unwrap();

    // A steward of another site may not decide at DK-ODE.
    let (status, list) = steward_call(
        &net,
        1,
        "DE-LUE",
        reqwest::Method::GET,
        "/v1/approvals",
        None,
    )
    .await;
    assert_eq!(status, 403, "{list}");

    // The pending request survives a restart of DK-ODE's node.
    let (config, node) = net.nodes.remove(1);
    let addr = node.addr;
    node.stop().await;
    let mut config = config;
    config.listen = addr;
    let restarted =
        bonebank_node::server::start(&config, bonebank_node::server::state(&config).unwrap())
            .unwrap();
    net.nodes.insert(1, (config, restarted));

    let (status, list) = steward_call(
        &net,
        1,
        "DK-ODE",
        reqwest::Method::GET,
        "/v1/approvals",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user"], "ida");
    let ticket = list[0]["ticket"].as_str().unwrap().to_owned();

    // Before the decision, looking again still shows it waiting.
    let (_, again) = as_role(
        &url,
        &industry_token,
        reqwest::Method::GET,
        &format!("/v1/history/{id}"),
        None,
    )
    .await;
    assert_eq!(again["sites"][1]["status"], "waiting_for_approval");

    let (status, decided) = steward_call(
        &net,
        1,
        "DK-ODE",
        reqwest::Method::POST,
        &format!("/v1/approvals/{ticket}"),
        Some(serde_json::json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 200, "{decided}");

    let (_, again) = as_role(
        &url,
        &industry_token,
        reqwest::Method::GET,
        &format!("/v1/history/{id}"),
        None,
    )
    .await;
    let again: FederatedResult = serde_json::from_value(again).unwrap();
    assert_eq!(
        again.sites[1].status,
        SiteStatus::Answered,
        "{:?}",
        again.sites[1]
    );
    assert!(again.missing.is_empty());
    assert_eq!(again.total[0].values[0].as_ref().unwrap().sites, 3);
    // The first two sites' numbers did not change.
    assert_eq!(again.sites[0].result, r.sites[0].result);

    // A rejection shows the steward's reason.
    let (_, r) = ask_industry("SELECT COUNT(*) FROM samples").await;
    let id = r["id"].as_i64().unwrap();
    let (_, list) = steward_call(
        &net,
        1,
        "DK-ODE",
        reqwest::Method::GET,
        "/v1/approvals",
        None,
    )
    .await;
    let ticket = list[0]["ticket"].as_str().unwrap().to_owned();
    let (status, _) = steward_call(
        &net,
        1,
        "DK-ODE",
        reqwest::Method::POST,
        &format!("/v1/approvals/{ticket}"),
        Some(
            serde_json::json!({ "decision": "reject", "reason": "no agreement with this partner" }),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (_, again) = as_role(
        &url,
        &industry_token,
        reqwest::Method::GET,
        &format!("/v1/history/{id}"),
        None,
    )
    .await;
    assert_eq!(again["sites"][1]["status"], "refused");
    assert!(
        again["sites"][1]["message"]
            .as_str()
            .unwrap()
            .contains("no agreement with this partner"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_states_each_sites_cost_and_precision_and_spends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let net = LocalNetwork::start(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();
    let url = net.coordinator.url();
    tls::install_default_provider();
    let sql = "SELECT sex, COUNT(DISTINCT donor_id) FROM samples GROUP BY sex";
    // Asked fresh: a catalogue would answer it for nothing.
    let body = serde_json::json!({ "sql": sql, "loss": 0.023, "fresh": true });
    let req = as_user(
        reqwest::Client::new().post(format!("{url}/v1/preview")),
        &net,
        "ada",
        "p1",
        Role::Researcher,
    );
    let (status, preview) = send(req, Some(body)).await;
    assert_eq!(status, 200, "{preview}");
    let preview: bonebank_schemas::wire::FederatedPreview =
        serde_json::from_value(preview).unwrap();
    assert_eq!(preview.sites.len(), ids.len());
    let halfwidths: Vec<f64> = preview
        .sites
        .iter()
        .map(|s| {
            let p = s.preview.as_ref().unwrap_or_else(|| panic!("{s:?}"));
            assert_eq!(p.cells_per_donor, 1, "a donor has one sex");
            assert!((p.loss - 0.023).abs() < 1e-8);
            p.measures[0].halfwidth.unwrap()
        })
        .collect();
    // Δ₂ = 1, ρ 0.023: σ = 4.66, so ±9 at every site; the total of three
    // is about √3 times as wide.
    assert!(halfwidths.iter().all(|h| *h == 9.0), "{halfwidths:?}");
    let total = preview.total_halfwidth[0].unwrap();
    assert!((14.0..=17.0).contains(&total), "{total}");

    // Nothing was spent: the same question then answers with the stated ±.
    let answer = {
        let request = FederatedRequest {
            sql: Some(sql.into()),
            query: None,
            loss: Some(0.023),
            sites: None,
            fresh: true,
            purpose: None,
        };
        let req = as_user(
            reqwest::Client::new().post(format!("{url}/v1/query")),
            &net,
            "ada",
            "p1",
            Role::Researcher,
        );
        let (status, body) = send(req, Some(serde_json::to_value(request).unwrap())).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value::<FederatedResult>(body).unwrap()
    };
    for s in &answer.sites {
        let r = s.result.as_ref().unwrap();
        assert!(!r.remembered);
        let v = &r.rows[0].values[0];
        assert_eq!((v.interval[1] - v.interval[0]) / 2.0, 9.0);
    }
}

/// Asks as ada, `fresh` or not; the merged answer.
async fn ask_as_ada(net: &LocalNetwork, sql: &str, fresh: bool) -> FederatedResult {
    let request = FederatedRequest {
        sql: Some(sql.into()),
        query: None,
        loss: Some(0.05),
        sites: None,
        fresh,
        purpose: None,
    };
    let req = as_user(
        reqwest::Client::new().post(format!("{}/v1/query", net.coordinator.url())),
        net,
        "ada",
        "p1",
        Role::Researcher,
    );
    let (status, body) = send(req, Some(serde_json::to_value(request).unwrap())).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// What the node of `site` has charged, by account, and its audit log's
/// requests.
fn charged_at(net: &LocalNetwork, i: usize) -> (Vec<String>, Option<serde_json::Value>) {
    let (config, _) = &net.nodes[i];
    let store = bonebank_node::store::Store::open(&config.state_db()).unwrap();
    let users = store
        .overview(&config.policy)
        .unwrap()
        .users
        .into_keys()
        .collect();
    (users, store.last_audit("request").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_question_is_answered_free_from_the_sites_catalogues() {
    use bonebank_schemas::wire::Source;
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(&tmp);
    let net = LocalNetwork::start(tmp.path(), &ids, &generous(), 10_000).unwrap();
    tls::install_default_provider();
    net.wait_for_catalogues(Duration::from_secs(60))
        .await
        .unwrap();
    let flagship = "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
                    WHERE sex = 'Female' AND diagnosis LIKE 'S72%' GROUP BY sample_type";

    let r = ask_as_ada(&net, flagship, false).await;
    assert_eq!(r.sites.len(), 3);
    for (i, (site, id)) in r.sites.iter().zip(&ids).enumerate() {
        assert_eq!(site.site_id, id.to_string());
        assert_eq!(site.status, SiteStatus::Answered, "{site:?}");
        let result = site.result.as_ref().unwrap();
        assert_eq!(result.source, Source::Catalogue, "{id}");
        assert_eq!(result.charged, 0.0);
        assert_eq!(result.rows.len(), SampleType::ALL.len());
        for row in &result.rows {
            for v in &row.values {
                assert!(v.interval[0] <= v.value && v.value <= v.interval[1]);
            }
        }
        // Nothing but the catalogue left the node: no request of ada's
        // reached it, and no one but the site's own accounts was charged.
        let (users, request) = charged_at(&net, i);
        assert!(
            users.iter().all(|u| u.starts_with("(site")),
            "{id}: {users:?}"
        );
        assert!(request.is_none(), "{id}: {request:?}");
    }
    // The total adds up the catalogue estimates as it adds up releases.
    assert!(r.total.iter().all(|row| {
        row.values
            .iter()
            .all(|v| v.as_ref().is_some_and(|t| t.sites == 3))
    }));

    // Asked fresh, the same question is measured and charged at each site.
    let f = ask_as_ada(&net, flagship, true).await;
    for (i, site) in f.sites.iter().enumerate() {
        let result = site.result.as_ref().unwrap();
        assert_eq!(result.source, Source::Fresh);
        assert!(result.charged > 0.0);
        let (users, request) = charged_at(&net, i);
        assert!(users.iter().any(|u| u == "ada"), "{users:?}");
        assert!(request.is_some());
    }

    // What the catalogue cannot answer goes fresh by itself: a donor count
    // over two sample types would count a donor twice.
    let union = ask_as_ada(
        &net,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'BoneMarrowWhole')",
        false,
    )
    .await;
    for site in &union.sites {
        assert_eq!(
            site.result.as_ref().unwrap().source,
            Source::Fresh,
            "{site:?}"
        );
    }
    // An age range of five-year bands (45 to 69, which cuts the ten-year
    // bands) is answered from the tables of five-year bands: free, every
    // band a row when broken down by them.
    let fives = ask_as_ada(
        &net,
        "SELECT age_band_5, COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 45 AND 69 GROUP BY age_band_5",
        false,
    )
    .await;
    for site in &fives.sites {
        let result = site.result.as_ref().expect("answered");
        assert_eq!(result.source, Source::Catalogue, "{site:?}");
        assert_eq!(result.charged, 0.0);
        let keys: Vec<&str> = result.rows.iter().map(|r| r.key[0].as_str()).collect();
        assert_eq!(
            keys,
            bonebank_query::dimensions::AGE_BANDS_5,
            "every five-year band is listed"
        );
        // The bands outside 45 to 69 are filtered out, so they hold none.
        for row in result
            .rows
            .iter()
            .filter(|r| !["45-49", "50-54", "55-59", "60-64", "65-69"].contains(&r.key[0].as_str()))
        {
            assert_eq!(row.values[0].value, 0.0, "{row:?}");
        }
    }
    // The preview says which path each site's part takes, and why.
    let preview = |sql: &str| {
        let req = as_user(
            reqwest::Client::new().post(format!("{}/v1/preview", net.coordinator.url())),
            &net,
            "ada",
            "p1",
            Role::Researcher,
        );
        send(req, Some(serde_json::json!({ "sql": sql, "loss": 0.05 })))
    };
    let (status, body) = preview(flagship).await;
    assert_eq!(status, 200, "{body}");
    for site in body["sites"].as_array().unwrap() {
        assert_eq!(site["source"], "catalogue", "{site}");
        assert_eq!(site["preview"]["loss"], 0.0, "{site}");
        assert!(site.get("why_fresh").is_none(), "{site}");
    }
    // And it carries the catalogues' estimate itself, free: the numbers
    // the question gets when asked.
    let estimate: bonebank_schemas::wire::FederatedResult =
        serde_json::from_value(body["estimate"].clone()).unwrap();
    assert_eq!(estimate.sites.len(), 3);
    for (e, a) in estimate.sites.iter().zip(&r.sites) {
        assert_eq!(
            e.result.as_ref().unwrap().rows,
            a.result.as_ref().unwrap().rows
        );
    }
    assert_eq!(estimate.total, r.total);
    let (_, fresh_only) = preview(
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'BoneMarrowWhole')",
    )
    .await;
    assert!(fresh_only.get("estimate").is_none(), "{fresh_only}");
    let (_, body) = preview(
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'BoneMarrowWhole')",
    )
    .await;
    for site in body["sites"].as_array().unwrap() {
        assert_eq!(site["source"], "fresh", "{site}");
        assert!(site["preview"]["loss"].as_f64().unwrap() > 0.0, "{site}");
        assert!(
            site["why_fresh"]
                .as_str()
                .unwrap()
                .contains("count a donor once"),
            "{site}"
        );
    }

    // An industry partner's questions carry the site's consent filter,
    // `consent_commercial = true`: they are answered, free, from the
    // catalogue's tables of the donors with that consent, and the answer
    // states the filter. A researcher who asks for that consent gets the
    // same numbers, and without it counts more samples.
    let women = "SELECT COUNT(*) FROM samples WHERE sex = 'Female'";
    let request = serde_json::json!({"sql": women, "loss": 0.05});
    let req = reqwest::Client::new()
        .post(format!("{}/v1/query", net.coordinator.url()))
        .bearer_auth(industry(&net));
    let (status, body) = send(req, Some(request)).await;
    assert_eq!(status, 200, "{body}");
    let partner: FederatedResult = serde_json::from_value(body).unwrap();
    let consented = ask_as_ada(
        &net,
        &format!("{women} AND consent_commercial = true"),
        false,
    )
    .await;
    let everyone = ask_as_ada(&net, women, false).await;
    for ((p, c), e) in partner
        .sites
        .iter()
        .zip(&consented.sites)
        .zip(&everyone.sites)
    {
        let (p, c, e) = (
            p.result.as_ref().unwrap(),
            c.result.as_ref().unwrap(),
            e.result.as_ref().unwrap(),
        );
        assert_eq!(p.source, Source::Catalogue, "{p:?}");
        assert_eq!(p.charged, 0.0);
        assert!(
            p.query.filter.to_sql(false).contains("consent_commercial"),
            "{:?}",
            p.query.filter
        );
        assert_eq!(p.rows, c.rows);
        assert!(
            p.rows[0].values[0].value < e.rows[0].values[0].value,
            "{:?} against {:?}",
            p.rows,
            e.rows
        );
    }
}
