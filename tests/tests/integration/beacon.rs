//! The coordinator's Beacon v2 count endpoint on a network of real nodes:
//! counts are the network's noisy totals, charged like any question.

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::Role;
use bonebank_schemas::wire::{BudgetListing, FederatedResult};
use bonebank_service::tls;

use crate::http::{get, ok, post};
use serde_json::{Value, json};

/// Checks `response` against one of the Beacon v2 framework's response
/// schemas (`tests/beacon-v2/`, with their relative references resolved),
/// by the `jsonschema` package on Python (CI installs it from PyPI).
fn conforms(schema: &str, response: &Value) {
    use std::io::Write;
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let have = *HAVE.get_or_init(|| {
        let found = std::process::Command::new("python3")
            .args(["-c", "import jsonschema"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var_os("BONEBANK_REQUIRE_BEACON_SCHEMAS").is_none(),
                "BONEBANK_REQUIRE_BEACON_SCHEMAS is set but Python's jsonschema is not installed"
            );
            eprintln!(
                "NOT RUN: the Beacon schema checks need python3 with jsonschema (CI installs it)"
            );
        }
        found
    });
    if !have {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("beacon-v2");
    let mut child = std::process::Command::new("python3")
        .arg(dir.join("validate.py"))
        .arg(format!("framework/json/responses/{schema}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(response.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{schema}:\n{}{}\n{response:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn spent(url: &str, token: &str) -> f64 {
    let budgets: Vec<BudgetListing> = ok(get(&format!("{url}/v1/budgets"), Some(token)).await);
    budgets
        .iter()
        .map(|b| b.budget.as_ref().unwrap().user.spent)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_counts_are_the_networks_noisy_totals_and_cost_budget() {
    tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 400, 70 + i as u64).unwrap();
    }
    let net = LocalNetwork::start(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();
    let url = net.coordinator.url();
    let beacon = format!("{url}/beacon/v2");

    // The informational endpoints are public.
    for (path, schema) in [
        ("", "beaconInfoResponse.json"),
        ("/info", "beaconInfoResponse.json"),
        ("/service-info", "ga4gh-service-info-1-0-0-schema.json"),
        ("/configuration", "beaconConfigurationResponse.json"),
        ("/entry_types", "beaconEntryTypesResponse.json"),
        ("/map", "beaconMapResponse.json"),
        ("/filtering_terms", "beaconFilteringTermsResponse.json"),
    ] {
        let (status, body) = get(&format!("{beacon}{path}"), None).await;
        assert_eq!(status, 200, "{path}");
        conforms(schema, &body);
    }
    let terms: Value = ok(get(&format!("{beacon}/filtering_terms"), None).await);
    let ids_of_terms: Vec<&str> = terms["response"]["filteringTerms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for expected in [
        "ICD10:S72",
        "NCIT:C16576",
        "sample_type:StemCells",
        "storage_temperature:LN_vapour",
        "age_at_sampling",
    ] {
        assert!(ids_of_terms.contains(&expected), "{expected} missing");
    }
    let configuration: Value = ok(get(&format!("{beacon}/configuration"), None).await);
    assert_eq!(
        configuration["response"]["securityAttributes"]["defaultGranularity"],
        "count"
    );

    // An age from 55 (it cuts a ten-year band) with a diagnosis: no table
    // of five-year bands has diagnoses, so the catalogues cannot answer it
    // and it is asked fresh (and charged).
    let request = json!({
        "meta": {"apiVersion": "v2.0.0"},
        "query": {
            "filters": [
                {"id": "ICD10:S72"},
                {"id": "NCIT:C16576"},
                {"id": "age_at_sampling", "operator": ">=", "value": "55"},
            ],
            "requestedGranularity": "record",
        },
    });
    // Counting needs a signed-in user.
    let (status, e) = post(&format!("{beacon}/individuals"), None, &request).await;
    assert_eq!(status, 401);
    conforms("beaconErrorResponse.json", &e);
    assert_eq!(e["error"]["errorCode"], 401);

    let ada = net.token(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]));
    let before = spent(&url, &ada).await;
    let answer: Value = ok(post(&format!("{beacon}/individuals"), Some(&ada), &request).await);
    conforms("beaconCountResponse.json", &answer);
    // Asked for records, answered with a count, and says how it was made.
    assert_eq!(answer["meta"]["returnedGranularity"], "count");
    assert_eq!(
        answer["meta"]["receivedRequestSummary"]["requestedGranularity"],
        "record"
    );
    assert!(
        answer["info"]["differentialPrivacy"]
            .as_str()
            .unwrap()
            .contains("differentially private")
    );
    assert!(answer.get("resultSets").is_none(), "never records");
    let count = answer["responseSummary"]["numTotalResults"]
        .as_i64()
        .unwrap();
    assert_eq!(answer["responseSummary"]["exists"], count > 0);
    let after = spent(&url, &ada).await;
    assert!(after > before, "the count was charged ({before} → {after})");

    // The same question asked as SQL is the same release (remembered, free):
    // the count is the network's noisy total, rounded and never below zero.
    let sql = "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE diagnosis LIKE 'S72%' AND sex = 'Female' AND age_at_sampling >= 55";
    let same: FederatedResult = ok(post(
        &format!("{url}/v1/query"),
        Some(&ada),
        &json!({ "sql": sql }),
    )
    .await);
    let total = same.total[0].values[0].as_ref().unwrap();
    assert_eq!(count, total.value.max(0.0).round() as i64);
    assert_eq!(spent(&url, &ada).await, after, "asked again: free");

    // What is not a Beacon request is a Beacon error, and costs nothing:
    // a body that is not JSON, a field nobody reads (counting everyone for
    // "filterz" would be charged), no body at all, an age at the end of the
    // integers (which once overflowed).
    let raw = |body: &'static str| {
        let (beacon, ada) = (beacon.clone(), ada.clone());
        async move {
            let r = reqwest::Client::new()
                .post(format!("{beacon}/individuals"))
                .bearer_auth(ada)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for body in [
        "{not json",
        r#"{"query": {"filterz": [{"id": "NCIT:C16576"}]}}"#,
        "",
        r#"{"query": {"filters": [{"id": "age_at_sampling", "operator": ">", "value": "9223372036854775807"}]}}"#,
        r#"{"query": {"filters": [{"id": "age_at_sampling", "operator": "<", "value": "-9223372036854775808"}]}}"#,
    ] {
        let (status, e) = raw(body).await;
        assert_eq!(status, 400, "{body}: {e}");
        conforms("beaconErrorResponse.json", &e);
        assert_eq!(e["error"]["errorCode"], 400, "{body}: {e}");
    }
    assert_eq!(
        spent(&url, &ada).await,
        after,
        "refused requests cost nothing"
    );

    // Biosamples count samples; an unknown term is a Beacon error.
    let filters = |id: &str| json!({"query": {"filters": [{ "id": id }]}});
    let biosamples = format!("{beacon}/biosamples");
    let counted: Value = ok(post(&biosamples, Some(&ada), &filters("sample_type:StemCells")).await);
    conforms("beaconCountResponse.json", &counted);
    let (status, e) = post(&biosamples, Some(&ada), &filters("HP:0000118")).await;
    assert_eq!(status, 400);
    conforms("beaconErrorResponse.json", &e);
    assert!(
        e["error"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("filtering_terms"),
        "{e}"
    );
}
