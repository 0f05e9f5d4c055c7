//! The services' OpenAPI documents: served at `/openapi.json`, generated
//! from the handlers, and held to by the services when schemathesis (from
//! PyPI) throws its generated requests at a network of real nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::Role;
use bonebank_service::tls;
use serde_json::Value;

use crate::http::{get, get_with_certificate, ok};

/// The schemathesis command: `BONEBANK_SCHEMATHESIS`, the virtual
/// environment `.ci/run` installs it into, or the one on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BONEBANK_SCHEMATHESIS").map(PathBuf::from),
        dirs_cache().map(|c| c.join("bonebank/schemathesis/bin/schemathesis")),
        Some(PathBuf::from("schemathesis")),
    ];
    let found = candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("BONEBANK_REQUIRE_SCHEMATHESIS").is_none(),
            "BONEBANK_REQUIRE_SCHEMATHESIS is set but schemathesis is not installed \
             (python3 -m venv ~/.cache/bonebank/schemathesis && \
             ~/.cache/bonebank/schemathesis/bin/pip install schemathesis)"
        );
        eprintln!("NOT RUN: the schemathesis run needs schemathesis from PyPI (CI installs it)");
    }
    found
}

fn dirs_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
}

/// Runs schemathesis against the document at `base/openapi.json`: every
/// operation with generated valid and invalid requests and every check it
/// has. It fails on any 5xx, on any response the document does not describe
/// (status, content type, headers, body), on a request the document allows
/// that is refused as malformed, on one it forbids that is taken, and on an
/// operation that answers without the authentication it names.
/// Each run stops after `seconds` (the generated cases go on until then).
fn fuzz(binary: &Path, base: &str, name: &str, seconds: u32, extra: &[&str], report: &Path) {
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    let out = Command::new(binary)
        .arg("--config-file")
        .arg(settings)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "20",
            "--seed",
            "20261203",
            // One worker: Hypothesis on Python 3.11 can trip over its own
            // source parsing when several threads generate at once.
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--max-time",
            &seconds.to_string(),
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(report.join(format!("{name}.xml")))
        .args(extra)
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of failures goes to the test's folder, not the clone.
        .current_dir(report)
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Each failure with its request (between FAILURES and the warnings),
    // then the summary.
    let failures = stdout
        .split_once(" FAILURES ")
        .map(|(_, rest)| rest.split_once(" WARNINGS ").map_or(rest, |(f, _)| f))
        .unwrap_or("");
    eprintln!(
        "schemathesis against the {name}:\n{failures}\n{}",
        tail(&stdout, 40)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems in the {name}'s answers (above); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every operation the document names, as `METHOD path`.
fn operations(doc: &Value) -> Vec<String> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_publish_their_api_and_keep_to_it() {
    tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 300, 90 + i as u64).unwrap();
    }
    let net =
        LocalNetwork::start_unthrottled(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();
    let coordinator = net.coordinator.url();
    let node = &net.nodes[0].1;
    let node_url = format!("https://localhost:{}", node.addr.port());
    let pages = node.steward_pages.as_ref().unwrap().url();

    // The coordinator's document: OpenAPI 3.1, every endpoint, the wire
    // types' schemas from their serde definitions.
    let doc: Value = ok(get(&format!("{coordinator}/openapi.json"), None).await);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let ops = operations(&doc);
    for expected in [
        "GET /",
        "GET /openapi.json",
        "POST /v1/query",
        "POST /v1/preview",
        "POST /v1/check",
        "GET /v1/sites",
        "GET /v1/budgets",
        "GET /v1/codes",
        "GET /v1/history",
        "GET /v1/history/{id}",
        "POST /v1/history/{id}/negotiator",
        "GET /v1/login",
        "GET /v1/whoami",
        "GET /auth/login",
        "GET /auth/callback",
        "POST /auth/logout",
        "GET /beacon/v2/info",
        "GET /beacon/v2/filtering_terms",
        "POST /beacon/v2/biosamples",
        "GET /beacon/v2/biosamples",
        "POST /beacon/v2/individuals",
        "GET /health",
    ] {
        assert!(
            ops.contains(&expected.to_owned()),
            "{expected} is not in {ops:?}"
        );
    }
    let query = &doc["paths"]["/v1/query"]["post"];
    assert_eq!(
        query["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/FederatedRequest"
    );
    assert_eq!(
        query["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/FederatedResult"
    );
    let schemas = &doc["components"]["schemas"];
    // A filter is one of its forms, each closed to unknown fields as serde
    // is; a measure is tagged by its kind.
    assert!(
        schemas["Filter"]["oneOf"].as_array().unwrap().len() >= 8,
        "{}",
        schemas["Filter"]
    );
    assert!(
        schemas["Measure"].to_string().contains("\"kind\""),
        "{}",
        schemas["Measure"]
    );
    // A question is closed to unknown fields, and is exactly one of SQL
    // and a structured query.
    let question = &schemas["FederatedRequest"]["allOf"];
    assert_eq!(question[0]["additionalProperties"], false, "{question}");
    assert_eq!(
        question[1]["oneOf"],
        serde_json::json!([
            {"type": "object", "required": ["sql"]},
            {"type": "object", "required": ["query"]},
        ]),
        "{question}"
    );
    assert_eq!(
        schemas["Value"]["oneOf"].as_array().map(Vec::len),
        Some(3),
        "a literal is a boolean, an integer or a text: {}",
        schemas["Value"]
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // The node's API and its stewards' pages have documents of their own.
    let node_doc = get_with_certificate(
        &format!("{node_url}/openapi.json"),
        &net.pki.ca_cert(),
        &net.pki.coordinator_cert(),
        &net.pki.coordinator_key(),
    )
    .await;
    let node_ops = operations(&node_doc);
    for expected in [
        "POST /v1/query",
        "POST /v1/preview",
        "GET /v1/budget",
        "GET /v1/site",
        "GET /v1/approvals",
        "POST /v1/approvals/{ticket}",
        "GET /v1/tickets/{ticket}",
        "GET /health",
        "GET /metrics",
        "GET /openapi.json",
    ] {
        assert!(
            node_ops.contains(&expected.to_owned()),
            "{expected} is not in {node_ops:?}"
        );
    }
    let pages_doc: Value = ok(get(&format!("{pages}/openapi.json"), None).await);
    let pages_ops = operations(&pages_doc);
    for expected in [
        "GET /api/approvals",
        "POST /api/approvals/{ticket}",
        "GET /api/audit",
        "GET /api/policy",
    ] {
        assert!(
            pages_ops.contains(&expected.to_owned()),
            "{expected} is not in {pages_ops:?}"
        );
    }
    assert!(pages_doc["components"]["securitySchemes"]["session"].is_object());
    let roles = &pages_doc["components"]["schemas"]["Role"];
    assert!(
        roles["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::from("steward")),
        "value sets are their codes: {roles}"
    );

    let Some(binary) = schemathesis() else {
        return;
    };
    let token = net.token(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]));
    let bearer = format!("Authorization: Bearer {token}");
    let report = tmp.path().join("schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    // The session-only endpoints of the coordinator are called with the
    // bearer token too (it admits either); the pages know sessions only,
    // so there schemathesis sees what a stranger sees.
    fuzz(
        &binary,
        &coordinator,
        "coordinator",
        25,
        &["-H", &bearer],
        &report,
    );
    let ca = net.pki.ca_cert();
    let cert = net.pki.coordinator_cert();
    let key = net.pki.coordinator_key();
    // The node's port: its CA, and the coordinator's certificate.
    let mutual_tls = [
        "--tls-verify",
        ca.to_str().unwrap(),
        "--request-cert",
        cert.to_str().unwrap(),
        "--request-cert-key",
        key.to_str().unwrap(),
    ];
    let node_args = [&["-H", bearer.as_str()], &mutual_tls[..]].concat();
    fuzz(&binary, &node_url, "node", 25, &node_args, &report);
    // The stewards' endpoints again, as a steward of the site.
    let steward = net.token(&DevUser::new(
        "sam",
        Role::Steward,
        None,
        &[net.nodes[0].0.site_id.as_str()],
    ));
    let as_steward = format!("Authorization: Bearer {steward}");
    let steward_args = [
        &[
            "-H",
            as_steward.as_str(),
            "--include-path-regex",
            "^/v1/(approvals|tickets)",
        ],
        &mutual_tls[..],
    ]
    .concat();
    fuzz(
        &binary,
        &node_url,
        "node-steward",
        10,
        &steward_args,
        &report,
    );
    fuzz(&binary, &pages, "pages", 15, &[], &report);
}
