//! Everything outside the query surface is refused, by name, before any data
//! is read; the node re-checks JSON queries as strictly as SQL.

use bonebank_node::Error;
use bonebank_node::service::QueryService;
use bonebank_schemas::{FeasibilityQuery, Filter, Measure, Role, Value};

use crate::common::{TestSite, caller, pure, sql};

/// SQL, and the refusal it must get: policy or query, and a message fragment.
const CASES: &[(&str, bool, &str)] = &[
    (
        "SELECT COUNT(*) FROM samples s JOIN donors d ON s.donor_id = d.donor_id",
        false,
        "JOIN is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples, donors",
        false,
        "more than one table (an implicit join) is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM (SELECT * FROM samples) x",
        false,
        "a subquery in FROM is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE donor_id IN (SELECT donor_id FROM samples)",
        false,
        "a subquery is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE EXISTS (SELECT 1 FROM samples)",
        false,
        "a subquery is not allowed",
    ),
    ("SELECT * FROM samples", false, "SELECT * is not allowed"),
    (
        "SELECT sex FROM samples",
        false,
        "column sex in SELECT is not in GROUP BY",
    ),
    (
        "SELECT sample_type, COUNT(*) FROM samples",
        false,
        "column sample_type in SELECT is not in GROUP BY",
    ),
    (
        "SELECT age_at_sampling, COUNT(*) FROM samples GROUP BY age_at_sampling",
        false,
        "age_at_sampling cannot be grouped by",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE donor_id = 'LUE-D1'",
        false,
        "donor_id is not allowed here",
    ),
    (
        "SELECT donor_id, COUNT(*) FROM samples GROUP BY donor_id",
        false,
        "donor_id cannot be grouped by",
    ),
    (
        "SELECT COUNT(donor_id) FROM samples",
        false,
        "COUNT(donor_id) counts samples, not donors",
    ),
    (
        "SELECT COUNT(DISTINCT sample_id) FROM samples",
        false,
        "is not a supported count",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE sample_id = 'X'",
        false,
        "sample_id is never queryable",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE sampling_date > 3",
        false,
        "sampling_date is never queryable",
    ),
    (
        "SELECT COUNT(*) FROM samples LIMIT 5",
        false,
        "LIMIT is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples ORDER BY 1",
        false,
        "ORDER BY is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE lower(sex) = 'female'",
        false,
        "the function lower is not allowed",
    ),
    (
        "SELECT MAX(age_at_sampling) FROM samples",
        false,
        "the function max is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples GROUP BY sex HAVING COUNT(*) > 5",
        false,
        "HAVING is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples UNION SELECT COUNT(*) FROM samples",
        false,
        "UNION (a set operation) is not allowed",
    ),
    (
        "WITH x AS (SELECT 1) SELECT COUNT(*) FROM samples",
        false,
        "WITH (a common table expression) is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM patients",
        false,
        "there is no relation patients",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE sex = 'F'",
        false,
        "'F' is not a value of sex",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE sample_type IN ('Serum', 'Blood')",
        false,
        "'Blood' is not a value of sample_type",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE diagnosis = 'hip'",
        false,
        "'hip' is not an ICD-10 code",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE colour = 'red'",
        false,
        "there is no column colour",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE age_at_sampling > 'old'",
        false,
        "is not a whole number",
    ),
    (
        "SELECT COUNT(*) FROM samples WHERE diagnosis LIKE '%72'",
        false,
        "is not a prefix",
    ),
    (
        "SELECT SUM(bmi) FROM samples",
        false,
        "SUM of bmi is not allowed",
    ),
    (
        "SELECT COUNT(*) FROM samples; SELECT COUNT(*) FROM samples",
        false,
        "exactly one SELECT",
    ),
    (
        "DELETE FROM samples",
        false,
        "a statement other than SELECT is not allowed",
    ),
    (
        "SELECT sex, sample_type, storage_temperature, COUNT(*) FROM samples GROUP BY sex, sample_type, storage_temperature",
        true,
        "groups by 3 dimensions",
    ),
];

fn refusal(service: &QueryService, text: &str, epsilon: f64) -> Error {
    let request = sql(text, epsilon);
    let who = caller("ana", "p1", Role::Researcher);
    match QueryService::parse(&request).and_then(|q| service.check(&who, &q, request.loss)) {
        Ok(checked) => panic!("{text}: accepted as {:?}", checked.query),
        Err(e) => e,
    }
}

#[test]
fn constructs_outside_the_surface_are_refused_by_name() {
    let site = TestSite::new("DE-LUE", 50, pure());
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    for (text, policy, fragment) in CASES {
        let err = refusal(&service, text, 0.1);
        let (is_policy, message) = match &err {
            Error::QueryRefused(r) => (false, format!("{} / {}", r.message, r.hint)),
            Error::PolicyRefused(r) => (true, format!("{} / {}", r.message, r.hint)),
            other => panic!("{text}: unexpected error {other}"),
        };
        assert_eq!(is_policy, *policy, "{text}: {message}");
        assert!(
            message.contains(fragment),
            "{text}: expected '{fragment}', got '{message}'"
        );
        assert!(
            !message.is_empty() && message.contains(" / ") && !message.ends_with(" / "),
            "{text}: no hint"
        );
    }
}

#[test]
fn epsilon_outside_the_policy_is_refused() {
    let site = TestSite::new("DE-LUE", 20, pure());
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    for eps in [0.0, -1.0, 1.5, f64::NAN, 0.001] {
        match refusal(&service, "SELECT COUNT(*) FROM samples", eps) {
            Error::PolicyRefused(r) => assert!(
                r.message.contains("outside what this site allows"),
                "{eps}: {}",
                r.message
            ),
            other => panic!("{eps}: {other}"),
        }
    }
    // The industry role has a lower ceiling in the policy under test.
    let mut policy = pure();
    policy.roles.get_mut(&Role::Industry).unwrap().max_loss = Some(0.2);
    let site = TestSite::new("DE-LUE", 20, policy);
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    let q = QueryService::parse(&sql("SELECT COUNT(*) FROM samples", 0.3)).unwrap();
    assert!(
        service
            .check(&caller("i", "p", Role::Industry), &q, Some(0.3))
            .is_err()
    );
    assert!(
        service
            .check(&caller("r", "p", Role::Researcher), &q, Some(0.3))
            .is_ok()
    );
}

#[test]
fn json_queries_are_checked_like_sql() {
    let site = TestSite::new("DE-LUE", 20, pure());
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    let who = caller("ana", "p1", Role::Researcher);
    let q = |filter: Filter, group_by: Vec<&str>| FeasibilityQuery {
        measures: vec![Measure::Samples],
        filter,
        group_by: group_by.into_iter().map(String::from).collect(),
    };
    let bad = [
        q(
            Filter::In {
                column: "donor_id".into(),
                values: vec![Value::Text("x".into())],
            },
            vec![],
        ),
        q(Filter::True, vec!["donor_id"]),
        q(
            Filter::In {
                column: "sex".into(),
                values: vec![Value::Int(1)],
            },
            vec![],
        ),
        q(
            Filter::Range {
                column: "sex".into(),
                min: Some(1),
                max: None,
            },
            vec![],
        ),
        q(
            Filter::Prefix {
                column: "consent_genetic".into(),
                prefix: "t".into(),
            },
            vec![],
        ),
        q(
            Filter::IsNull {
                column: "sex".into(),
            },
            vec![],
        ),
        q(
            Filter::In {
                column: "storage_location".into(),
                values: vec![Value::Text("F01".into())],
            },
            vec![],
        ),
        FeasibilityQuery {
            measures: vec![],
            filter: Filter::True,
            group_by: vec![],
        },
    ];
    for query in bad {
        assert!(
            service.check(&who, &query, Some(0.1)).is_err(),
            "accepted {query:?}"
        );
    }
}

#[test]
fn equivalent_queries_have_one_canonical_form() {
    let site = TestSite::new("DE-LUE", 20, pure());
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    let who = caller("ana", "p1", Role::Researcher);
    let canonical = |text: &str| {
        let q = QueryService::parse(&sql(text, 0.1)).unwrap();
        service.check(&who, &q, Some(0.1)).unwrap().query
    };
    let base = canonical(
        "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
         WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 AND diagnosis LIKE 'S72%' GROUP BY sample_type",
    );
    for same in [
        "SELECT sample_type, COUNT(*) AS n, COUNT(DISTINCT donor_id) AS d FROM samples \
         WHERE diagnosis LIKE 's72%' AND ((age_at_sampling >= 50 AND age_at_sampling <= 70)) AND 'Female' = sex GROUP BY sample_type",
        "SELECT COUNT(*), sample_type, COUNT(DISTINCT donor_id) FROM samples \
         WHERE age_at_sampling > 49 AND age_at_sampling < 71 AND sex IN ('Female') AND diagnosis LIKE 'S72%' GROUP BY sample_type",
    ] {
        assert_eq!(canonical(same), base, "{same}");
    }
    let in_a = canonical(
        "SELECT COUNT(*) FROM samples WHERE sample_type IN ('Serum', 'Plasma', 'BuffyCoat')",
    );
    let in_b = canonical(
        "SELECT COUNT(*) FROM samples WHERE sample_type IN ('BuffyCoat', 'Serum', 'Plasma') OR sample_type = 'Serum'",
    );
    assert_eq!(in_a, in_b);
    // Diagnosis spellings normalise; SKS and WHO mean the same code.
    assert_eq!(
        canonical("SELECT COUNT(*) FROM samples WHERE diagnosis = 'DS721'"),
        canonical("SELECT COUNT(*) FROM samples WHERE diagnosis = 'S72.1'")
    );
    // A prefix on a coded dimension is exactly the codes it matches.
    assert_eq!(
        canonical("SELECT COUNT(*) FROM samples WHERE material_subtype LIKE 'bma%'"),
        canonical(
            "SELECT COUNT(*) FROM samples WHERE material_subtype IN ('bma_proximal_femur', 'bma_iliac_crest')"
        )
    );
    assert_ne!(
        canonical("SELECT COUNT(*) FROM samples WHERE sex = 'Male'"),
        canonical("SELECT COUNT(*) FROM samples WHERE sex = 'Female'")
    );
}

#[test]
fn a_query_written_back_as_sql_parses_to_itself() {
    use bonebank_query::sql::parse;
    for text in [
        "SELECT COUNT(*) FROM samples",
        "SELECT sex, age_band, COUNT(DISTINCT donor_id), SUM(aliquots_available), AVG(age_at_sampling) \
         FROM samples WHERE NOT (sex = 'Male' OR age_at_sampling < 18) AND diagnosis LIKE 'S72%' \
         AND passage_number IS NULL AND sample_type IN ('Serum', 'Plasma') \
         AND consent_commercial = true AND sampling_year >= 2015 GROUP BY sex, age_band",
        "SELECT COUNT(*) FROM samples WHERE NOT (NOT (passage_number IS NULL)) OR aliquots_available BETWEEN 1 AND 3",
    ] {
        let q = parse(text).unwrap().canonical();
        let written = q.to_sql();
        assert_eq!(
            parse(&written).unwrap().canonical(),
            q,
            "{text}\n→ {written}"
        );
    }
}

#[test]
fn industry_partners_only_count_commercial_consent() {
    let site = TestSite::new("DE-LUE", 20, pure());
    let service = site.service(std::sync::Arc::new(bonebank_node::privacy::FixedOffset(0)));
    let q = QueryService::parse(&sql("SELECT COUNT(*) FROM samples", 0.1)).unwrap();
    let industry = service
        .check(&caller("i", "p", Role::Industry), &q, None)
        .unwrap();
    assert_eq!(
        industry.query.filter,
        Filter::In {
            column: "consent_commercial".into(),
            values: vec![Value::Bool(true)]
        }
    );
    let researcher = service
        .check(&caller("r", "p", Role::Researcher), &q, None)
        .unwrap();
    assert_eq!(researcher.query.filter, Filter::True);
}
