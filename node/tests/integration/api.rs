//! The node's HTTP API in process: answers, the one error shape, the public
//! site description, health and metrics.

use std::sync::Arc;

use actix_web::{test, web};
use bonebank_dev::devidp::DevProvider;
use bonebank_node::api::app;
use bonebank_node::privacy::FixedOffset;
use bonebank_node::server::state_with_noise;
use bonebank_schemas::wire::{BudgetStatus, ErrorBody, ErrorCode, QueryResult, SiteDescription};
use serde_json::json;

use crate::common::{TestSite, pure};

/// A request with a token from the development provider for user "ana" of
/// project "hip-msc" in `role` (any string: the node decides what it means).
fn as_user(req: test::TestRequest, idp: &DevProvider, role: &str) -> test::TestRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = idp.sign(&json!({
        "iss": idp.issuer(), "aud": idp.audience(), "sub": "ana", "exp": now + 300,
        "bonebank_role": role, "bonebank_project": "hip-msc",
    }));
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

/// A development provider, and the site's node set to trust it.
fn provider_for(site: &mut TestSite) -> DevProvider {
    let idp = DevProvider::start(
        "127.0.0.1:0".parse().unwrap(),
        "bonebank",
        Vec::new(),
        std::time::Duration::from_secs(300),
    )
    .unwrap();
    site.config.oidc = idp.settings();
    idp
}

#[actix_web::test]
async fn grouped_answers_list_every_key_and_errors_share_one_shape() {
    let mut site = TestSite::new("DE-LUE", 200, pure());
    let idp = provider_for(&mut site);
    let state = state_with_noise(&site.config, Arc::new(FixedOffset(0))).unwrap();
    let service = test::init_service(app(web::Data::new(state))).await;

    let grouped = json!({"sql": "SELECT sample_type, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sample_type", "epsilon": 0.2});
    let req = as_user(
        test::TestRequest::post().uri("/v1/query"),
        &idp,
        "researcher",
    )
    .set_json(&grouped)
    .to_request();
    let result: QueryResult = test::call_and_read_body_json(&service, req).await;
    assert_eq!(result.dimensions, ["sample_type"]);
    assert_eq!(
        result.rows.len(),
        19,
        "every MIABIS sample type, zeros included"
    );
    assert!(
        result
            .rows
            .iter()
            .any(|r| r.key == ["Urine"] && r.values[0].value == 0.0)
    );
    let serum = result.rows.iter().find(|r| r.key == ["Serum"]).unwrap();
    assert!(serum.values[0].value > 0.0 && serum.values[1].value > 0.0);
    assert!(
        serum.values[0].interval[0] < serum.values[0].value
            && serum.values[0].value < serum.values[0].interval[1]
    );
    assert_eq!(
        result.measures[1].sensitivity, 7.0,
        "donors: one per cell, at most 7 sample types per donor"
    );
    assert_eq!(
        result.measures[0].sensitivity, 35.0,
        "samples: 5 per cell × 7 cells"
    );

    // Industry: the same question counts only commercial consent.
    let req = as_user(test::TestRequest::post().uri("/v1/query"), &idp, "industry")
        .set_json(&grouped)
        .to_request();
    let industry: QueryResult = test::call_and_read_body_json(&service, req).await;
    let total = |r: &QueryResult| r.rows.iter().map(|row| row.values[0].value).sum::<f64>();
    assert!(total(&industry) < total(&result));

    let cases = [
        (
            test::TestRequest::post()
                .uri("/v1/query")
                .set_json(&grouped),
            ErrorCode::Unauthenticated,
            401,
        ),
        (
            as_user(
                test::TestRequest::post().uri("/v1/query"),
                &idp,
                "researcher",
            )
            .set_json(json!({"sql": "SELECT * FROM samples"})),
            ErrorCode::QueryRefused,
            400,
        ),
        (
            as_user(
                test::TestRequest::post().uri("/v1/query"),
                &idp,
                "researcher",
            )
            .set_json(json!({"sql": "SELECT COUNT(*) FROM samples", "epsilon": 9.0})),
            ErrorCode::PolicyRefused,
            403,
        ),
        (
            as_user(
                test::TestRequest::post().uri("/v1/query"),
                &idp,
                "researcher",
            )
            .set_payload("{not json")
            .insert_header(("content-type", "application/json")),
            ErrorCode::BadRequest,
            400,
        ),
        (
            as_user(
                test::TestRequest::post().uri("/v1/query"),
                &idp,
                "researcher",
            )
            .set_json(json!({"sql": "SELECT COUNT(*) FROM samples", "limit": 1})),
            ErrorCode::BadRequest,
            400,
        ),
        (
            as_user(test::TestRequest::post().uri("/v1/query"), &idp, "king").set_json(&grouped),
            ErrorCode::Forbidden,
            403,
        ),
        (
            test::TestRequest::get().uri("/v1/samples"),
            ErrorCode::NotFound,
            404,
        ),
    ];
    for (req, code, status) in cases {
        let resp = test::call_service(&service, req.to_request()).await;
        assert_eq!(resp.status().as_u16(), status);
        let body: ErrorBody = test::read_body_json(resp).await;
        assert_eq!(body.code, code, "{body:?}");
        assert!(!body.message.is_empty());
    }
    let req = as_user(
        test::TestRequest::post().uri("/v1/query"),
        &idp,
        "researcher",
    )
    .set_json(json!({"sql": "SELECT * FROM samples"}));
    let body: ErrorBody =
        test::read_body_json(test::call_service(&service, req.to_request()).await).await;
    assert_eq!(body.message, "SELECT * is not allowed");
    assert!(body.hint.unwrap().contains("COUNT(DISTINCT donor_id)"));
}

#[actix_web::test]
async fn site_budget_health_and_metrics() {
    let mut site = TestSite::new("DK-NAE", 50, pure());
    let idp = provider_for(&mut site);
    let state = state_with_noise(&site.config, Arc::new(FixedOffset(0))).unwrap();
    let service = test::init_service(app(web::Data::new(state))).await;

    let description: SiteDescription = test::call_and_read_body_json(
        &service,
        test::TestRequest::get().uri("/v1/site").to_request(),
    )
    .await;
    assert_eq!(description.site_id, "DK-NAE");
    assert_eq!(description.country, "DK");
    assert!(description.dataset_version.is_some());
    let sex = description
        .dimensions
        .iter()
        .find(|d| d.name == "sex")
        .unwrap();
    assert_eq!(
        sex.values,
        [
            "Female",
            "Male",
            "Unknown",
            "Undifferentiated",
            "NotApplicable"
        ]
    );
    assert!(sex.fixed_per_donor && sex.groups_per_donor == 1);
    let sample_type = description
        .dimensions
        .iter()
        .find(|d| d.name == "sample_type")
        .unwrap();
    assert!(!sample_type.fixed_per_donor);
    assert_eq!(
        sample_type.groups_per_donor,
        pure().groups_per_donor(bonebank_query::Dimension::SampleType)
    );
    let text = serde_json::to_string(&description).unwrap();
    assert!(
        !text.contains("NAE-D") && !text.contains("NAE-S"),
        "the description names no donor or sample"
    );

    let req = as_user(
        test::TestRequest::post().uri("/v1/query"),
        &idp,
        "researcher",
    )
    .set_json(json!({"sql": "SELECT COUNT(*) FROM samples", "epsilon": 0.3}))
    .to_request();
    let _: QueryResult = test::call_and_read_body_json(&service, req).await;
    let budget: BudgetStatus = test::call_and_read_body_json(
        &service,
        as_user(
            test::TestRequest::get().uri("/v1/budget"),
            &idp,
            "researcher",
        )
        .to_request(),
    )
    .await;
    assert!((budget.user.spent - 0.3).abs() < 1e-12);
    assert_eq!(budget.project.name, "hip-msc");

    // Every answer says how to read it and that the site is HTTPS only.
    let answer = test::call_service(
        &service,
        test::TestRequest::get().uri("/health").to_request(),
    )
    .await;
    let headers = answer.headers();
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    assert!(
        headers
            .get("strict-transport-security")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    // TRACE and other unusual methods are refused as such, not "not found".
    for method in ["TRACE", "CONNECT", "BREW"] {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let refused = test::call_service(
            &service,
            test::TestRequest::default()
                .method(m)
                .uri("/health")
                .to_request(),
        )
        .await;
        assert_eq!(refused.status(), 405, "{method}");
        assert_eq!(refused.headers().get("allow").unwrap(), "GET", "{method}");
        let body: serde_json::Value = test::read_body_json(refused).await;
        assert_eq!(body["code"], "method_not_allowed", "{method}: {body}");
    }
    let health: serde_json::Value = test::call_and_read_body_json(
        &service,
        test::TestRequest::get().uri("/health").to_request(),
    )
    .await;
    // Without a token /health says only that the node is up: neither the
    // site's data nor its version, whose id would be published unasked.
    assert_eq!(health, serde_json::json!({"status": "up"}));
    let metrics = test::call_and_read_body(
        &service,
        test::TestRequest::get().uri("/metrics").to_request(),
    )
    .await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains("bonebank_node_queries_total{outcome=\"released\"} 1"),
        "{metrics}"
    );
    // The free space of the state directory's file system.
    let free: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bonebank_node_storage_free_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no storage gauge in {metrics}"));
    assert!(free > 0, "{free}");
}

/// A full disk is said as such, not as an internal error: here SQLite's
/// own "database or disk is full", from a database whose pages ran out.
#[actix_web::test]
async fn a_full_disk_is_its_own_answer() {
    use bonebank_service::error::WireError;
    let tmp = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(tmp.path().join("full.sqlite")).unwrap();
    db.execute_batch("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 3;")
        .unwrap();
    let full = (0..100)
        .find_map(|_| {
            db.execute("INSERT INTO t VALUES (zeroblob(4096))", [])
                .err()
        })
        .expect("the database fills up");
    assert!(full.to_string().contains("full"), "{full}");
    let body = bonebank_node::Error::Database(full).body();
    assert_eq!(body.code, bonebank_schemas::wire::ErrorCode::StorageFull);
    assert_eq!(body.code.status(), 507);
    assert!(
        body.message.contains("storage is full") && body.message.contains("nothing was charged")
    );
    let io = bonebank_node::Error::Io {
        path: "state".into(),
        source: std::io::Error::from(std::io::ErrorKind::StorageFull),
    };
    assert_eq!(
        io.body().code,
        bonebank_schemas::wire::ErrorCode::StorageFull
    );
}
