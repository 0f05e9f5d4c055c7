//! Snapshots of every wire type: each example below is serialised and
//! compared with its committed JSON in `schemas/tests/wire/snapshots/`, and
//! that JSON must read back to the same value. A renamed or retyped field
//! changes the JSON and fails here, so a breaking change to what nodes,
//! coordinators and clients send each other is never silent. After a
//! deliberate change, `BONEBANK_UPDATE_SNAPSHOTS=1 cargo test -p
//! bonebank-schemas` rewrites the files; review their diff.

use std::path::PathBuf;

use bonebank_schemas::wire::*;
use bonebank_schemas::{FeasibilityQuery, Filter, Measure, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn snapshot<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    // Read when the test runs (cargo sets it), not baked in at build time:
    // a shared build cache may hold a binary built in another checkout.
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/wire/snapshots")
        .join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("BONEBANK_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &json).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (BONEBANK_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(stored, json, "{name}: the wire format changed");
    let back: T = serde_json::from_str(&stored).unwrap();
    assert_eq!(&back, value, "{name}: the snapshot does not read back");
}

fn query() -> FeasibilityQuery {
    FeasibilityQuery {
        measures: vec![Measure::Donors, Measure::Samples],
        filter: Filter::And(vec![
            Filter::In {
                column: "sex".into(),
                values: vec![Value::Text("Female".into())],
            },
            Filter::Range {
                column: "age_at_sampling".into(),
                min: Some(50),
                max: Some(70),
            },
        ]),
        group_by: vec!["sample_type".into()],
    }
}

fn approx() -> ApproxDp {
    ApproxDp {
        epsilon: 0.97,
        delta: 1e-6,
    }
}

fn result() -> QueryResult {
    QueryResult {
        site_id: "DE-LUE".into(),
        dataset_version: "20261124T000000Z-abc".into(),
        query: query(),
        accounting: Accounting::Zcdp,
        charged: 0.023,
        loss: 0.023,
        approx_dp: Some(approx()),
        remembered: false,
        measures: vec![MeasureNoise {
            measure: Measure::Donors,
            label: "donors".into(),
            mechanism: Mechanism::DiscreteGaussian,
            sensitivity: 2.6457513110645907,
            scale: 12.7,
            loss: 0.021647058,
            rounded_to: 1,
        }],
        dimensions: vec!["sample_type".into()],
        rows: vec![ResultRow {
            key: vec!["StemCells".into()],
            values: vec![NoisyValue {
                value: 272.0,
                interval: [247.0, 297.0],
            }],
        }],
        source: Source::Fresh,
        steward_note: None,
    }
}

fn limits() -> SiteLimits {
    SiteLimits {
        question: QueryLimits {
            max_sql_bytes: 8192,
            max_body_bytes: 65536,
            max_nesting: 10,
            max_boolean_words: 200,
            max_predicates: 64,
            max_in_values: 256,
            max_measures: 8,
            max_group_by: 8,
        },
        plan_timeout_ms: 10_000,
        concurrent_per_user: 4,
        user_questions_per_minute: 30,
        project_questions_per_minute: 120,
    }
}

fn budget() -> BudgetStatus {
    BudgetStatus {
        site_id: "DE-LUE".into(),
        accounting: Accounting::Zcdp,
        period_days: 30,
        user: BudgetAccount {
            name: "alice".into(),
            limit: 0.46,
            spent: 0.046,
            remaining: 0.414,
            renews: Some("2027-01-05T14:02:00Z".into()),
        },
        project: BudgetAccount {
            name: "hip-fracture-msc".into(),
            limit: 4.5,
            spent: 0.046,
            remaining: 4.454,
            renews: Some("2027-01-05T14:02:00Z".into()),
        },
    }
}

fn description() -> SiteDescription {
    SiteDescription {
        site_id: "DE-LUE".into(),
        country: "DE".into(),
        dataset_version: Some("20261124T000000Z-abc".into()),
        dimensions: vec![DimensionDescription {
            name: "sex".into(),
            values: vec!["Female".into(), "Male".into()],
            fixed_per_donor: true,
            groups_per_donor: 1,
        }],
        filters: vec![FilterColumn {
            name: "sex".into(),
            operators: "=, <>, IN".into(),
        }],
        bounded_columns: vec![BoundedColumn {
            name: "aliquots_available".into(),
            min: 0,
            max: 20,
        }],
        max_dimensions: 2,
        accounting: Accounting::Zcdp,
        loss: LossRange {
            min: 0.0005,
            max: 0.1,
            default: 0.023,
        },
        budgets: SiteBudgets {
            site: 48.0,
            project: 4.5,
            user: 0.46,
        },
        user_budget_approx_dp: Some(ApproxDp {
            epsilon: 4.98,
            delta: 1e-6,
        }),
        max_samples_per_donor: 5,
        sample_bounds: None,
        max_groups_per_donor: 4,
        budget_period_days: 30,
        role_filters: [(
            "industry".to_owned(),
            "consent_commercial = true".to_owned(),
        )]
        .into_iter()
        .collect(),
        limits: limits(),
        yearly: Some(YearlyLoss {
            catalogues: 8.0,
            fresh: 8.0,
            total: 16.0,
            approx_dp: ApproxDp {
                epsilon: 33.6,
                delta: 1e-6,
            },
            spent: 3.1,
        }),
    }
}

fn preview() -> Preview {
    Preview {
        site_id: "DE-LUE".into(),
        accounting: Accounting::Zcdp,
        query: query(),
        loss: 0.023,
        approx_dp: Some(approx()),
        needs_approval: false,
        cells_per_donor: 7,
        measures: vec![MeasurePreview {
            measure: Measure::Avg {
                column: "passage_number".into(),
            },
            label: "avg_passage_number".into(),
            mechanism: Mechanism::DiscreteGaussian,
            sensitivity: 132.3,
            scale: 900.0,
            loss: 0.002,
            halfwidth: None,
        }],
    }
}

fn federated() -> FederatedResult {
    FederatedResult {
        id: Some(7),
        query: query(),
        dimensions: vec!["sample_type".into()],
        measures: vec!["donors".into()],
        sites: vec![
            SiteAnswer {
                site_id: "DE-LUE".into(),
                status: SiteStatus::Answered,
                message: None,
                hint: None,
                ticket: None,
                result: Some(result()),
            },
            SiteAnswer {
                site_id: "DK-NAE".into(),
                status: SiteStatus::WaitingForApproval,
                message: Some("waiting for a steward (ticket abc)".into()),
                hint: Some("look again later".into()),
                ticket: Some("abc".into()),
                result: None,
            },
        ],
        total: vec![TotalRow {
            key: vec!["StemCells".into()],
            values: vec![Some(TotalValue {
                value: 0.0,
                unclamped: -3.0,
                interval: [0.0, 22.0],
                sites: 1,
            })],
        }],
        no_total: None,
        missing: vec!["DK-NAE".into()],
        elapsed_ms: 41,
    }
}

#[test]
fn requests() {
    snapshot(
        "query_request",
        &QueryRequest {
            sql: Some("SELECT COUNT(*) FROM samples".into()),
            query: None,
            loss: Some(0.023),
            purpose: None,
        },
    );
    snapshot(
        "federated_request",
        &FederatedRequest {
            sql: None,
            query: Some(query()),
            loss: None,
            sites: Some(vec!["DE-LUE".into()]),
            fresh: true,
            purpose: None,
        },
    );
    snapshot(
        "approval_decision",
        &ApprovalDecision {
            decision: "reject".into(),
            reason: Some("not this one".into()),
        },
    );
}

#[test]
fn answers() {
    snapshot("query_result", &result());
    snapshot("federated_result", &federated());
    snapshot("preview", &preview());
    snapshot(
        "federated_preview",
        &FederatedPreview {
            query: query(),
            sites: vec![SitePreview {
                site_id: "DE-LUE".into(),
                status: SiteStatus::Answered,
                message: None,
                hint: None,
                preview: Some(preview()),
                source: Source::Fresh,
                why_fresh: Some(
                    "a donor count over several values of age_band would count a donor once for each: it is answered fresh".into(),
                ),
                why_fresh_code: Some("donors_over_cells".into()),
            }],
            total_halfwidth: vec![Some(43.0), None],
            estimate: None,
        },
    );
    snapshot(
        "history_entry",
        &HistoryEntry {
            id: 7,
            at: "2026-11-24T12:00:00Z".into(),
            query: query(),
            loss: None,
            result: federated(),
        },
    );
}

#[test]
fn catalogue() {
    snapshot(
        "catalogue",
        &Catalogue {
            site: "DE-LUE".into(),
            dataset_version: "v-0003".into(),
            measured_at: "2026-12-07T02:00:00Z".into(),
            loss: 2.0,
            cell_bounds_loss: 0.125,
            approx_dp: ApproxDp {
                epsilon: 19.3,
                delta: 1e-6,
            },
            mechanism: Mechanism::DiscreteGaussian,
            coverage: 0.95,
            role_filters: [(
                "industry".to_owned(),
                "consent_commercial = true".to_owned(),
            )]
            .into(),
            caller_rules: vec![CallerRule {
                role: Some("industry".into()),
                projects: Some(vec!["p-external".into()]),
                asked_fresh: true,
            }],
            one_per_donor: vec!["age_band".into()],
            tables: vec![CatalogueTable {
                dimensions: vec!["sex".into(), "sample_type".into()],
                keys: vec![
                    vec!["Female".into(), "Male".into()],
                    vec!["Serum".into(), "StemCells".into()],
                ],
                cells_per_donor: 7,
                samples_per_donor: 12,
                consent: Some("commercial".into()),
                donors: NoisyCounts {
                    values: vec![119.5, 31.0, 97.25, 0.0],
                    measured: vec![120, 31, 98, 0],
                    variances: vec![ComponentVariance {
                        dimensions: vec![],
                        variance: 12.5,
                    }],
                    sensitivity: 2.65,
                    scale: 4.1,
                    loss: 0.08,
                },
                samples: NoisyCounts {
                    values: vec![612.0, 95.5, 377.0, 0.0],
                    measured: vec![610, 95, 377, -8],
                    variances: vec![ComponentVariance {
                        dimensions: vec!["sex".into()],
                        variance: 310.0,
                    }],
                    sensitivity: 15.9,
                    scale: 38.2,
                    loss: 0.05,
                },
            }],
        },
    );
}

#[test]
fn descriptions_budgets_and_approvals() {
    snapshot("site_description", &description());
    snapshot(
        "site_listing",
        &SiteListing {
            site_id: "DE-LUE".into(),
            status: "up".into(),
            description: Some(description()),
            connection: "outbound".into(),
            last_seen: Some("2026-12-02T10:00:00Z".into()),
        },
    );
    snapshot(
        "link_poll",
        &LinkPoll {
            requests: vec![LinkRequest {
                id: 17,
                method: "POST".into(),
                path: "v1/query".into(),
                grant: Some("eyJ…".into()),
                body: Some(serde_json::json!({"sql": "SELECT COUNT(*) FROM samples"})),
            }],
            heartbeat_ms: 2000,
        },
    );
    snapshot(
        "link_response",
        &LinkResponse {
            id: 17,
            status: 403,
            body: serde_json::json!({"code": "forbidden", "message": "no"}),
        },
    );
    snapshot("budget_status", &budget());
    snapshot(
        "approval_request",
        &ApprovalRequest {
            ticket: "abc".into(),
            user: "ingrid".into(),
            project: "msc-scoping".into(),
            role: "industry".into(),
            sql: "SELECT COUNT(*) FROM samples WHERE consent_commercial = true".into(),
            loss: 0.023,
            created: "2026-11-24T12:00:00Z".into(),
            expires: "2026-12-08T12:00:00Z".into(),
            user_remaining: 0.46,
            project_remaining: 4.5,
            user_spent: 0.0,
            project_spent: 0.0,
            query: Some(FeasibilityQuery {
                measures: vec![Measure::Samples],
                filter: Filter::In {
                    column: "consent_commercial".into(),
                    values: vec![Value::Bool(true)],
                },
                group_by: vec![],
            }),
            state: "rejected".into(),
            decided_by: Some("sam".into()),
            decided_at: Some("2026-11-25T09:30:00Z".into()),
            reason: Some("no agreement with this partner yet".into()),
            rule: Some(1),
            history: RequesterHistory {
                answered: 4,
                approved: 1,
                rejected: 1,
            },
            approvals_required: 2,
            first_approval: None,
            purpose: Some(Purpose {
                text: "Scoping a study of MSC from femoral fractures".into(),
                reference: Some("EK 2026-114".into()),
            }),
        },
    );
    snapshot(
        "site_ledger",
        &SiteLedger {
            site_id: "DK-ODE".into(),
            accounting: Accounting::Zcdp,
            period_days: 30,
            site: BudgetAccount {
                name: "DK-ODE".into(),
                limit: 48.0,
                spent: 0.046,
                remaining: 47.954,
                renews: None,
            },
            users: vec![BudgetAccount {
                name: "alice".into(),
                limit: 0.46,
                spent: 0.046,
                remaining: 0.414,
                renews: None,
            }],
            projects: vec![BudgetAccount {
                name: "hip-fracture-msc".into(),
                limit: 4.5,
                spent: 0.046,
                remaining: 4.454,
                renews: None,
            }],
            days: vec![LedgerDay {
                day: "2026-11-24".into(),
                releases: 2,
                spent: 0.046,
            }],
            yearly: Some(YearlyLoss {
                catalogues: 8.0,
                fresh: 8.0,
                total: 16.0,
                approx_dp: ApproxDp {
                    epsilon: 44.3,
                    delta: 1e-6,
                },
                spent: 3.046,
            }),
            catalogue: Some(CatalogueSummary {
                dataset_version: "20261201T020000Z-3f2a9c1b7d44".into(),
                measured_at: "2026-12-01T02:00:05Z".into(),
                loss: 2.0,
                approx_dp: ApproxDp {
                    epsilon: 11.69,
                    delta: 1e-6,
                },
                tables: 20,
                cells: 27013,
                consented_tables: 4,
                consented_loss: 0.4,
            }),
            no_catalogue: None,
        },
    );
    snapshot(
        "audit_page",
        &AuditPage {
            site_id: "DK-ODE".into(),
            entries: vec![AuditEntry {
                seq: 7,
                at: "2026-11-25T09:30:00.120Z".into(),
                kind: "decision".into(),
                actor: "sam".into(),
                detail: serde_json::json!({"ticket": "abc", "requester": "ingrid", "decision": "reject", "reason": "no agreement with this partner yet"}),
                prev: "1f".repeat(32),
                hash: "2e".repeat(32),
            }],
            total: 7,
            intact: true,
            broken: None,
            head: Some("2e".repeat(32)),
        },
    );
    snapshot(
        "ticket_status",
        &TicketStatus {
            ticket: "abc".into(),
            state: "rejected".into(),
            reason: Some("not this one".into()),
        },
    );
}

#[test]
fn errors() {
    for code in [
        ErrorCode::BadRequest,
        ErrorCode::QueryRefused,
        ErrorCode::PolicyRefused,
        ErrorCode::BudgetExhausted,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NoData,
        ErrorCode::PendingApproval,
        ErrorCode::NotFound,
        ErrorCode::IdentityUnavailable,
        ErrorCode::TooManyRequests,
        ErrorCode::TooSlow,
        ErrorCode::Internal,
    ] {
        let name = serde_json::to_value(code).unwrap();
        snapshot(
            &format!("error_{}", name.as_str().unwrap()),
            &ErrorBody {
                code,
                message: "what went wrong".into(),
                hint: Some("what would work".into()),
                ticket: (code == ErrorCode::PendingApproval).then(|| "0f".repeat(16)),
            },
        );
    }
}

#[test]
fn sign_in_types() {
    snapshot(
        "login_info",
        &LoginInfo {
            issuer: "https://login.example/realms/bonebank".into(),
            client_id: "bonebank-cli".into(),
            scopes: vec!["openid".into(), "offline_access".into()],
            resource: Some("bonebank".into()),
            development: false,
        },
    );
    snapshot(
        "who_am_i",
        &WhoAmI {
            user: "alice".into(),
            role: "researcher".into(),
            project: "p1".into(),
            sites: vec![],
            csrf: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
            negotiator: true,
        },
    );
    snapshot(
        "checked_question",
        &CheckedQuestion {
            query: query(),
            sql: query().to_sql(),
        },
    );
    snapshot(
        "budget_listing",
        &vec![
            BudgetListing {
                site_id: "DE-LUE".into(),
                status: SiteStatus::Answered,
                message: None,
                budget: Some(budget()),
            },
            BudgetListing {
                site_id: "DK-NAE".into(),
                status: SiteStatus::Unreachable,
                message: Some("no connection to the site".into()),
                budget: None,
            },
        ],
    );
    snapshot(
        "code_match",
        &bonebank_schemas::icd10_titles::search("DS721", 1),
    );
}

#[test]
fn old_names_still_read() {
    // Requests and stored results from before zCDP used ε names.
    let old: QueryRequest =
        serde_json::from_str(r#"{"sql": "SELECT COUNT(*) FROM samples", "epsilon": 0.25}"#)
            .unwrap();
    assert_eq!(old.loss, Some(0.25));
    let mut stored = serde_json::to_value(result()).unwrap();
    let o = stored.as_object_mut().unwrap();
    o.remove("accounting");
    o.remove("approx_dp");
    let charged = o.remove("charged").unwrap();
    let loss = o.remove("loss").unwrap();
    o.insert("epsilon_charged".into(), charged);
    o.insert("epsilon".into(), loss);
    let back: QueryResult = serde_json::from_value(stored).unwrap();
    assert_eq!(back.accounting, Accounting::Pure, "old results were pure ε");
    assert_eq!(back.loss, 0.023);
}

#[test]
fn negotiator_hand_off() {
    let request = NegotiatorRequest {
        url: "https://bonebank.example.org/#a=7".into(),
        human_readable: "Donors and samples by sample type, women aged 50 to 70".into(),
        resources: vec![NegotiatorResource {
            id: "bbmri-eric:ID:DE_LUE:collection:MSC".into(),
            name: "DE-LUE".into(),
            organization: NegotiatorOrganization {
                id: 0,
                external_id: "bbmri-eric:ID:DE_LUE".into(),
                name: "DE-LUE".into(),
            },
        }],
    };
    snapshot("negotiator_request", &request);
    snapshot(
        "negotiator_handoff_request",
        &NegotiatorHandoffRequest {
            sites: Some(vec!["DE-LUE".into()]),
            send: true,
        },
    );
    snapshot(
        "negotiator_handoff",
        &NegotiatorHandoff {
            request,
            redirect_url: Some("https://negotiator.example.org/requests/new-1".into()),
        },
    );
}

/// A hand-off request is a JSON object: an array (which serde's derived
/// reading would take field by field, `[]` as the empty request) is
/// refused, and an empty object is every field's default.
#[test]
fn a_handoff_request_is_read_from_an_object_only() {
    let read = |json: &str| serde_json::from_str::<NegotiatorHandoffRequest>(json);
    assert_eq!(read("{}").unwrap(), NegotiatorHandoffRequest::default());
    assert_eq!(
        read(r#"{"sites": ["DE-LUE"], "send": true}"#).unwrap(),
        NegotiatorHandoffRequest {
            sites: Some(vec!["DE-LUE".into()]),
            send: true,
        }
    );
    for refused in ["[]", r#"[["DE-LUE"], true]"#, "null", "true"] {
        let e = read(refused).unwrap_err();
        assert!(e.to_string().contains("a JSON object"), "{refused}: {e}");
    }
}

/// A catalogue a node stored before catalogues were reconciled (integer
/// values, no `measured`, no `variances`) still reads: a node upgraded
/// with it in its state keeps publishing it until the next version.
#[test]
fn a_catalogue_stored_before_the_fit_still_reads() {
    let stored = r#"{"site":"DE-LUE","dataset_version":"v1","measured_at":"2026-12-01T02:00:05Z",
        "loss":2.0,"approx_dp":{"epsilon":11.69,"delta":1e-6},"mechanism":"discrete_gaussian",
        "coverage":0.95,"tables":[{"dimensions":["sex"],"keys":[["Female","Male"]],
        "cells_per_donor":1,"samples_per_donor":5,
        "donors":{"values":[120,-3],"sensitivity":1.0,"scale":4.1,"loss":0.05},
        "samples":{"values":[610,95],"sensitivity":5.0,"scale":20.5,"loss":0.05}}]}"#;
    let c: Catalogue = serde_json::from_str(stored).unwrap();
    let donors = &c.tables[0].donors;
    assert_eq!(donors.values, [120.0, -3.0]);
    assert!(donors.measured.is_empty() && donors.variances.is_empty());
}
