//! The stewards' pages' listener: HTTPS with the node's certificate but no
//! client certificate asked (stewards' browsers have none), while the node's
//! API port still refuses anyone without one; plain HTTP only on loopback;
//! and nothing behind the pages without a steward's session.

use bonebank_dev::local::{self, LocalNetwork};
use bonebank_service::tls;

#[test]
fn the_pages_need_tls_off_loopback_and_the_node_certificate_for_https() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = bonebank_dev::pki::PkiDir::new(tmp.path().join("pki"));
    let site = local::demo_sites().remove(0);
    let idp_settings = bonebank_service::oidc::OidcSettings {
        issuer: "http://127.0.0.1:9".into(),
        audience: "bonebank".into(),
        leeway_seconds: 30,
        claims: Default::default(),
        ca: None,
    };
    let mut config = local::node_config(
        tmp.path(),
        &pki,
        &site,
        local::demo_policy(&site),
        idp_settings,
        Default::default(),
    );
    config.validate().unwrap();
    let pages = config.steward_pages.as_mut().unwrap();
    pages.listen = "10.1.2.3:8443".parse().unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("plain HTTP on 10.1.2.3:8443"), "{e}");
    config.steward_pages.as_mut().unwrap().https = true;
    config.validate().unwrap();
    config.tls = None;
    config.listen = "127.0.0.1:0".parse().unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("needs the node's [tls]"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_speak_https_without_client_certificates_and_admit_only_sessions() {
    tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let sites = local::demo_sites();
    for (i, site) in sites.iter().enumerate() {
        local::generate_site(tmp.path(), site, 50, 70 + i as u64).unwrap();
    }
    let net = LocalNetwork::start_with(tmp.path(), &sites, local::demo_policy, 10_000).unwrap();
    // The same node, its pages now over HTTPS with its certificate.
    let (mut config, _) = net
        .nodes
        .iter()
        .find(|(c, _)| c.site_id.as_str() == "DK-ODE")
        .map(|(c, n)| (c.clone(), n))
        .unwrap();
    config.state_dir = tmp.path().join("second-state");
    config.steward_pages.as_mut().unwrap().https = true;
    let node =
        bonebank_node::server::start(&config, bonebank_node::server::state(&config).unwrap())
            .unwrap();
    let pages = node.steward_pages.as_ref().unwrap();
    assert!(pages.url().starts_with("https://"));

    // A browser: the site's CA, no client certificate.
    let browser = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(tls::read_roots(&net.pki.ca_cert()).unwrap())
                .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let page = browser
        .get(format!("https://localhost:{}/", pages.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/steward/steward.js"));

    // Nothing behind the pages without a steward's session, not even with
    // a steward's bearer token: the pages know sessions only.
    let token = net.token(&bonebank_dev::devidp::DevUser::new(
        "sam",
        bonebank_schemas::Role::Steward,
        None,
        &["DK-ODE"],
    ));
    for path in [
        "/api/approvals",
        "/api/ledger",
        "/api/audit",
        "/api/policy",
        "/api/whoami",
    ] {
        let r = browser
            .get(format!("https://localhost:{}{path}", pages.addr.port()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = browser
        .post(format!(
            "https://localhost:{}/api/approvals/abc",
            pages.addr.port()
        ))
        .json(&serde_json::json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The node's own port still wants a coordinator's certificate.
    let refused = browser
        .get(format!("https://localhost:{}/v1/site", node.addr.port()))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the API port admitted a client without a certificate"
    );
    node.stop().await;
}
