//! Hostile and heavy questions cannot take a site down: oversized and deeply
//! nested questions are refused before they cost anything, a plan estimated
//! past the site's limit is turned away and charged nothing (whatever rows
//! match), one user's flood gets 429s
//! while others are answered, and the ledger charges what the privacy maps
//! state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bonebank_dev::devidp::DevProvider;
use bonebank_node::Error;
use bonebank_node::limits::WorkLimits;
use bonebank_node::privacy::{self, FixedOffset, OpenDpNoise};
use bonebank_schemas::wire::QueryRequest;
use bonebank_schemas::{FeasibilityQuery, Filter, Measure, Role};

use crate::common::{TestSite, caller, pure, sql};

fn nested(levels: usize) -> String {
    format!(
        "SELECT COUNT(*) FROM samples WHERE {}sex = 'Female'{}",
        "NOT (".repeat(levels),
        ")".repeat(levels)
    )
}

fn hostile_questions() -> Vec<(String, &'static str)> {
    let values: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let conditions: Vec<String> = (0..100)
        .map(|i| format!("age_at_sampling <> {i}"))
        .collect();
    vec![
        (nested(40), "nests parentheses 40 deep"),
        (nested(1_000), "nests parentheses 1000 deep"),
        (
            format!(
                "SELECT COUNT(*) FROM samples WHERE {}",
                "NOT ".repeat(1_500) + "consent_research"
            ),
            "1500 AND, OR and NOT",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM samples WHERE age_at_sampling IN ({})",
                values.join(", ")
            ),
            "IN list has 300 values",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM samples WHERE {}",
                conditions.join(" OR ")
            ),
            "100 conditions",
        ),
        (
            format!("SELECT COUNT(*) FROM samples WHERE {}", "(".repeat(20_000)),
            "bytes long",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_questions_are_refused_in_milliseconds() {
    let site = TestSite::new("DE-LUE", 50, pure());
    let service = site.service(Arc::new(FixedOffset(0)));
    let rita = caller("rita", "p1", Role::Researcher);
    for (text, expected) in hostile_questions() {
        let started = Instant::now();
        let r = service.run(&rita, &sql(&text, 0.1)).await;
        let took = started.elapsed();
        match r {
            Err(Error::QueryRefused(refusal)) => assert!(
                refusal.message.contains(expected),
                "{expected:?} not in {:?}",
                refusal.message
            ),
            other => panic!("{expected}: {other:?}"),
        }
        assert!(took < Duration::from_secs(1), "{expected}: {took:?}");
    }

    // A JSON query is held to the same limits: 100 levels of NOT.
    let mut filter = Filter::IsNull {
        column: "diagnosis".into(),
    };
    for _ in 0..100 {
        filter = Filter::Not(Box::new(filter));
    }
    let request = QueryRequest {
        sql: None,
        query: Some(FeasibilityQuery {
            measures: vec![Measure::Samples],
            filter,
            group_by: Vec::new(),
        }),
        loss: Some(0.1),
        purpose: None,
    };
    let r = service.run(&rita, &request).await;
    assert!(
        matches!(&r, Err(Error::QueryRefused(x)) if x.message.contains("100 deep")),
        "{r:?}"
    );
    assert_eq!(service.budget(&rita).await.unwrap().user.spent, 0.0);
    let audit = service.store().last_audit("request").unwrap().unwrap();
    assert_eq!(audit["outcome"], "query_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_past_the_plan_limit_is_stopped_and_charged_nothing() {
    // Large enough that the pass is estimated at well over a millisecond.
    let mut site = TestSite::new("DE-LUE", 20_000, pure());
    site.config.limits.plan_timeout_ms = 1;
    let rita = caller("rita", "p1", Role::Researcher);
    let q = sql(
        "SELECT sample_type, age_band, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sample_type, age_band",
        0.2,
    );
    let service = site.service(Arc::new(OpenDpNoise));
    let r = service.run(&rita, &q).await;
    assert!(matches!(r, Err(Error::TooSlow(1))), "{r:?}");
    assert_eq!(service.budget(&rita).await.unwrap().user.spent, 0.0);
    let audit = service.store().last_audit("request").unwrap().unwrap();
    assert_eq!(audit["outcome"], "stopped");

    // Under the default limit the same question runs, is charged once, and
    // nothing of the stopped attempt was remembered.
    site.config.limits = WorkLimits::default();
    let service = site.service(Arc::new(OpenDpNoise));
    let r = service.run(&rita, &q).await.unwrap();
    assert!(!r.remembered);
    assert_eq!(service.budget(&rita).await.unwrap().user.spent, r.charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_charges_what_the_privacy_maps_state_rounded_up() {
    let site = TestSite::new("DE-LUE", 100, pure());
    let service = site.service(Arc::new(OpenDpNoise));
    let rita = caller("rita", "p1", Role::Researcher);
    for (n, epsilon) in [(1, 0.25), (2, 0.3), (3, 0.25), (3, 0.1)] {
        let before = service.budget(&rita).await.unwrap().user.spent;
        let measures = [
            "COUNT(*)",
            "COUNT(DISTINCT donor_id)",
            "SUM(aliquots_available)",
        ];
        // A new filter each time, so each question is fresh.
        let text = format!(
            "SELECT {} FROM samples WHERE age_at_sampling >= {}",
            measures[..n].join(", "),
            n * 10 + (epsilon * 100.0) as usize
        );
        let r = service.run(&rita, &sql(&text, epsilon)).await.unwrap();
        let spent = service.budget(&rita).await.unwrap().user.spent - before;
        let charged = privacy::units(spent);
        let stated: i64 = r.measures.iter().map(|m| privacy::units_up(m.loss)).sum();
        assert_eq!(
            charged, stated,
            "{text}: the ledger charges each map's ε rounded up"
        );
        assert_eq!(privacy::units(r.charged), charged, "{text}");
        // Each measure's share is charged at least what its map states
        // (a float sum of the maps could round above the exact total).
        for m in &r.measures {
            assert!(
                privacy::epsilon(privacy::units_up(m.loss)) >= m.loss,
                "{text}: under-charged"
            );
        }
        assert!(
            charged <= privacy::units(epsilon),
            "{text}: more than asked"
        );
    }
}

/// A token for `user` of `project` from the development provider.
fn token(idp: &DevProvider, user: &str, project: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    idp.sign(&serde_json::json!({
        "iss": idp.issuer(), "aud": idp.audience(), "sub": user, "exp": now + 600,
        "bonebank_role": "researcher", "bonebank_project": project,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_gets_429s_while_another_user_is_answered() {
    let mut site = TestSite::new("DE-LUE", 4_000, pure());
    let idp = DevProvider::start(
        "127.0.0.1:0".parse().unwrap(),
        "bonebank",
        Vec::new(),
        Duration::from_secs(600),
    )
    .unwrap();
    site.config.oidc = idp.settings();
    let mut policy = pure();
    policy.budget.user = 1_000.0;
    policy.budget.project = 1_000.0;
    policy.budget.site = 1_000.0;
    site.config.policy = policy;
    let state =
        bonebank_node::server::state_with_noise(&site.config, Arc::new(FixedOffset(0))).unwrap();
    let node = bonebank_node::server::start(&site.config, state).unwrap();
    let url = format!("{}/v1/query", node.url());
    bonebank_service::tls::install_default_provider();
    let client = reqwest::Client::new();
    let ask = |token: String, text: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let started = Instant::now();
            let r = client
                .post(&url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "sql": text, "epsilon": 0.01 }))
                .send()
                .await
                .unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry_after, started.elapsed())
        }
    };
    let question = |i: usize| {
        format!(
            "SELECT sample_type, age_band, COUNT(*), COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling >= {i} GROUP BY sample_type, age_band"
        )
    };
    // The first question loads the dataset version; the second is how long
    // Bob waits on a quiet site.
    let (status, _, _) = ask(token(&idp, "bob", "b"), question(99)).await;
    assert_eq!(status, 200);
    let (status, _, alone) = ask(token(&idp, "bob", "b"), question(98)).await;
    assert_eq!(status, 200);

    // Ann sends 16 fresh questions at once; Bob asks 4 of his own meanwhile.
    let ann = token(&idp, "ann", "a");
    let flood: Vec<_> = (0..16).map(|i| ask(ann.clone(), question(i))).collect();
    let bob = token(&idp, "bob", "b");
    let bobs = async {
        let mut out = Vec::new();
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            out.push(ask(bob.clone(), question(50 + i)).await);
        }
        out
    };
    let (flood, bobs) = tokio::join!(futures::future::join_all(flood), bobs);

    let refused: Vec<_> = flood.iter().filter(|(s, _, _)| *s == 429).collect();
    let answered = flood.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(!refused.is_empty(), "{flood:?}");
    assert_eq!(answered + refused.len(), 16, "{flood:?}");
    assert!(answered >= 4, "at least the allowed four ran: {flood:?}");
    assert!(
        refused
            .iter()
            .all(|(_, retry, _)| retry.as_deref() == Some("1")),
        "{refused:?}"
    );
    for (status, _, took) in &bobs {
        assert_eq!(*status, 200, "bob was queued out: {bobs:?}");
        assert!(
            *took < alone * 10 + Duration::from_secs(1),
            "bob waited {took:?}, {alone:?} alone"
        );
    }

    // The limits are public.
    let site_info: serde_json::Value = client
        .get(format!("{}/v1/site", node.url()))
        .bearer_auth(token(&idp, "bob", "b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site_info["limits"]["concurrent_per_user"], 4);
    assert_eq!(site_info["limits"]["question"]["max_nesting"], 10);
    // A deep question at the HTTP layer: refused at once.
    let (status, _, took) = ask(token(&idp, "bob", "b"), nested(60)).await;
    assert_eq!(status, 400);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_fresh_questions_only() {
    let mut site = TestSite::new("DE-LUE", 50, pure());
    site.config.limits.user_questions_per_minute = 3;
    let service = site.service(Arc::new(FixedOffset(0)));
    let rita = caller("rita", "p1", Role::Researcher);
    let q = |i: i32| {
        sql(
            &format!("SELECT COUNT(*) FROM samples WHERE age_at_sampling >= {i}"),
            0.01,
        )
    };
    for i in 0..3 {
        service.run(&rita, &q(i)).await.unwrap();
    }
    let r = service.run(&rita, &q(3)).await;
    assert!(
        matches!(&r, Err(Error::TooManyRequests { retry_after, .. }) if *retry_after == 20),
        "{r:?}"
    );
    assert_eq!(
        service.store().last_audit("request").unwrap().unwrap()["outcome"],
        "too_many_requests"
    );
    // Remembered answers stay free.
    for _ in 0..10 {
        assert!(service.run(&rita, &q(1)).await.unwrap().remembered);
    }
    // Another user is not limited by rita's questions.
    service
        .run(&caller("rosa", "p2", Role::Researcher), &q(3))
        .await
        .unwrap();
}

/// Whether a question is turned away for its work must not depend on
/// which rows match: a stop that came sooner for a filter keeping a heavy
/// donor's rows than for one keeping nobody's was a free oracle (stopped
/// questions are charged nothing). With a donor planted with 300,000
/// samples of a type nobody else has, the same question about that type and
/// about a type nobody has is turned away equally often at every limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_rate_does_not_move_with_which_rows_match() {
    use bonebank_node::dataset::DataDir;
    use bonebank_node::{generate, import};

    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    generate::into_csv(&crate::common::spec("DE-LUE", 2_000, 11), &export).unwrap();
    let mut samples = crate::common::Csv::read(&export.join("samples.csv"));
    let template = samples.rows[0].clone();
    let (id, ty, material, passage) = (
        samples.col("sample_id"),
        samples.col("sample_type"),
        samples.col("material_subtype"),
        samples.col("passage_number"),
    );
    for n in 0..300_000 {
        let mut row = template.clone();
        row[id] = format!("HEAVY-{n}");
        row[ty] = "Urine".into();
        row[material] = "other".into();
        row[passage] = String::new();
        samples.rows.push(row);
    }
    std::fs::write(export.join("samples.csv"), samples.to_string()).unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    import::import(&data, &crate::common::Site::all_files(&export)).unwrap();

    let mut policy = pure();
    policy.budget = bonebank_query::policy::Budgets {
        site: 1e9,
        project: 1e9,
        user: 1e9,
    };
    let mut site = TestSite::new("DE-LUE", 10, policy);
    site.config.data_dir = data.path().to_owned();
    let rita = caller("rita", "p1", Role::Researcher);
    let (heavy, nobody) = (
        "SELECT COUNT(*) FROM samples WHERE sample_type = 'Urine'",
        "SELECT COUNT(*) FROM samples WHERE sample_type = 'Saliva'",
    );
    let (mut turned_away, mut answered) = (0, 0);
    for limit_ms in [1, 2, 3, 5, 10, 60_000] {
        site.config.limits.plan_timeout_ms = limit_ms;
        let service = site.service(Arc::new(OpenDpNoise));
        let mut stops = [0u32; 2];
        for attempt in 0..15 {
            for (q, question) in [heavy, nobody].into_iter().enumerate() {
                // A loss of its own each time: a fresh release, not a
                // remembered one.
                let loss =
                    0.1 + f64::from(attempt) * 0.001 + f64::from(limit_ms as u32 % 7) * 0.0001;
                match service.run(&rita, &sql(question, loss)).await {
                    Ok(_) => answered += 1,
                    Err(Error::TooSlow(ms)) => {
                        assert_eq!(ms, limit_ms);
                        stops[q] += 1;
                        turned_away += 1;
                    }
                    Err(e) => panic!("{question}: {e}"),
                }
            }
        }
        assert_eq!(
            stops[0], stops[1],
            "at a limit of {limit_ms} ms the heavy donor's question was stopped {} times in 15, the nobody question {}",
            stops[0], stops[1]
        );
    }
    // The limit does turn questions away, and lets them through.
    assert!(
        turned_away > 0 && answered > 0,
        "{turned_away} turned away, {answered} answered"
    );
}
