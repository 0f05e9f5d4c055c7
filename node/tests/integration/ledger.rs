//! The budget ledger and remembered releases: concurrent queries never
//! overspend, budgets and releases survive a restart, repeats are free, a new
//! dataset version means fresh noise at a new cost.

use std::sync::Arc;

use bonebank_node::Error;
use bonebank_node::limits::WorkLimits;
use bonebank_node::privacy::OpenDpNoise;
use bonebank_node::store::Account;
use bonebank_query::policy::{Budgets, Policy};
use bonebank_schemas::{Role, Table};

use crate::common::{TestSite, caller, pure, sql};

/// A site whose fair share does not get in the way: these tests race many
/// questions from one user at the ledger on purpose.
fn site(donors: u64, policy: Policy) -> TestSite {
    let mut site = TestSite::new("DE-LUE", donors, policy);
    site.config.limits = WorkLimits::unthrottled();
    site
}

fn policy(user: f64, project: f64, site: f64) -> Policy {
    Policy {
        budget: Budgets {
            user,
            project,
            site,
        },
        ..pure()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_never_overspend() {
    let site = site(300, policy(1.0, 50.0, 50.0));
    let service = site.service(Arc::new(OpenDpNoise));
    let who = caller("ana", "p1", Role::Researcher);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (service, who) = (service.clone(), who.clone());
            tokio::spawn(async move {
                // 200 distinct questions at ε 0.1 against a user budget of 1.0.
                let text = format!("SELECT COUNT(*), COUNT(DISTINCT donor_id) FROM samples WHERE aliquots_available >= {i}");
                service.run(&who, &sql(&text, 0.1)).await
            })
        })
        .collect();
    let (mut released, mut exhausted) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert!(!r.remembered);
                released += 1;
            }
            Err(Error::BudgetExhausted(Account::User)) => exhausted += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((released, exhausted), (10, 190));
    let budget = service.budget(&who).await.unwrap();
    assert!((budget.user.spent - 1.0).abs() < 1e-12, "{budget:?}");
    assert_eq!(budget.user.remaining, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_and_site_budgets_are_enforced_too() {
    let site = TestSite::new("DE-LUE", 50, policy(5.0, 0.3, 50.0));
    let service = site.service(Arc::new(OpenDpNoise));
    let q = |i: i32| {
        sql(
            &format!("SELECT COUNT(*) FROM samples WHERE age_at_sampling >= {i}"),
            0.1,
        )
    };
    for (i, user) in ["a", "b", "c"].iter().enumerate() {
        service
            .run(&caller(user, "shared", Role::Researcher), &q(i as i32))
            .await
            .unwrap();
    }
    let err = service
        .run(&caller("d", "shared", Role::Researcher), &q(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BudgetExhausted(Account::Project)),
        "{err}"
    );
    // Another project still has room.
    service
        .run(&caller("d", "other", Role::Researcher), &q(9))
        .await
        .unwrap();

    let site = TestSite::new("DE-LUE", 50, policy(5.0, 5.0, 0.2));
    let service = site.service(Arc::new(OpenDpNoise));
    service
        .run(&caller("a", "x", Role::Researcher), &q(1))
        .await
        .unwrap();
    service
        .run(&caller("b", "y", Role::Researcher), &q(2))
        .await
        .unwrap();
    let err = service
        .run(&caller("c", "z", Role::Researcher), &q(3))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BudgetExhausted(Account::Site)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_are_free_and_remembered_across_restarts() {
    let site = TestSite::new("DE-LUE", 300, policy(1.0, 10.0, 10.0));
    let who = caller("ana", "p1", Role::Researcher);
    let text = "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
                WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 AND diagnosis LIKE 'S72%' GROUP BY sample_type";
    let rewrite = "SELECT COUNT(*), sample_type, COUNT(DISTINCT donor_id) FROM samples \
                   WHERE diagnosis LIKE 'S72%' AND age_at_sampling <= 70 AND age_at_sampling >= 50 AND sex IN ('Female') GROUP BY sample_type";

    let first = {
        let service = site.service(Arc::new(OpenDpNoise));
        let first = service.run(&who, &sql(text, 0.4)).await.unwrap();
        assert!(!first.remembered);
        assert!((first.charged - 0.4).abs() < 1e-12);
        let again = service.run(&who, &sql(rewrite, 0.4)).await.unwrap();
        assert!(again.remembered);
        assert_eq!(again.charged, 0.0);
        assert_eq!(again.rows, first.rows);
        first
    };
    // A restarted node: new service, same state directory.
    let service = site.service(Arc::new(OpenDpNoise));
    let budget = service.budget(&who).await.unwrap();
    assert!((budget.user.spent - 0.4).abs() < 1e-12, "{budget:?}");
    // The charge comes back when it leaves the 30-day period: the budget
    // says when, for the user and the project; another user has nothing
    // to wait for.
    let renews = |at: &Option<String>| {
        chrono::DateTime::parse_from_rfc3339(at.as_deref().expect("a renewal date")).unwrap()
    };
    let in_30_days = chrono::Utc::now() + chrono::Duration::days(30);
    for at in [&budget.user.renews, &budget.project.renews] {
        let off = (renews(at).timestamp() - in_30_days.timestamp()).abs();
        assert!(off < 120, "{at:?} is 30 days after the charge");
    }
    let other = caller("ben", "p2", Role::Researcher);
    assert_eq!(service.budget(&other).await.unwrap().user.renews, None);
    let after = service.run(&who, &sql(text, 0.4)).await.unwrap();
    assert!(after.remembered);
    assert_eq!(after.rows, first.rows);
    assert_eq!(
        service.budget(&who).await.unwrap().user.spent,
        budget.user.spent
    );

    // A new dataset version (a re-import) gets fresh noise and costs again.
    let export = site.tmp.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let mut files = Vec::new();
    for t in [Table::Donors, Table::Samples, Table::Diagnoses] {
        let out = export.join(format!("{t}.csv"));
        bonebank_node::export::to_csv(&site.dir(), t, &out).unwrap();
        files.push((t, out));
    }
    let version = bonebank_node::import::import(&site.dir(), &files)
        .unwrap()
        .version;
    assert_ne!(version.id, first.dataset_version);
    let fresh = service.run(&who, &sql(text, 0.4)).await.unwrap();
    assert!(!fresh.remembered);
    assert_eq!(fresh.dataset_version, version.id);
    assert_ne!(
        fresh.rows, first.rows,
        "same noise on a new dataset version"
    );
    assert!((service.budget(&who).await.unwrap().user.spent - 0.8).abs() < 1e-12);
    // And the budget runs out: 0.8 spent of 1.0, a 0.4 query is refused.
    let err = service
        .run(&who, &sql("SELECT COUNT(*) FROM samples", 0.4))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BudgetExhausted(Account::User)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_query_costs_nothing() {
    let site = TestSite::new("DE-LUE", 30, policy(1.0, 10.0, 10.0));
    let service = site.service(Arc::new(OpenDpNoise));
    let who = caller("ana", "p1", Role::Researcher);
    assert!(
        service
            .run(&who, &sql("SELECT * FROM samples", 0.5))
            .await
            .is_err()
    );
    assert!(
        service
            .run(
                &who,
                &sql("SELECT COUNT(*) FROM samples WHERE sex = 'X'", 0.5)
            )
            .await
            .is_err()
    );
    assert_eq!(service.budget(&who).await.unwrap().user.spent, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_identical_queries_release_once_and_pay_once() {
    let site = site(300, policy(5.0, 50.0, 50.0));
    let service = site.service(Arc::new(OpenDpNoise));
    let who = caller("ana", "p1", Role::Researcher);
    let text = "SELECT sex, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sex";
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (service, who) = (service.clone(), who.clone());
            tokio::spawn(async move { service.run(&who, &sql(text, 0.1)).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // Whoever lost the race got the winner's numbers and a refund.
    assert!(
        results.iter().all(|r| r.rows == results[0].rows),
        "racing queries saw different noise"
    );
    assert!((service.budget(&who).await.unwrap().user.spent - 0.1).abs() < 1e-12);
    // Another ε is another release: fresh noise, charged again.
    let other = service.run(&who, &sql(text, 0.2)).await.unwrap();
    assert!(!other.remembered);
    assert!((service.budget(&who).await.unwrap().user.spent - 0.3).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_zcdp_the_ledger_counts_rho_and_converts_earlier_epsilon() {
    // First pure ε: two questions at ε 0.4 and 0.2.
    let mut site = site(200, policy(5.0, 50.0, 50.0));
    let who = caller("ana", "p1", Role::Researcher);
    let service = site.service(Arc::new(OpenDpNoise));
    for (text, e) in [
        ("SELECT COUNT(*) FROM samples", 0.4),
        ("SELECT COUNT(DISTINCT donor_id) FROM samples", 0.2),
    ] {
        service.run(&who, &sql(text, e)).await.unwrap();
    }
    let same_number = sql("SELECT COUNT(*) FROM samples WHERE sex = 'Female'", 0.02);
    let pure_release = service.run(&who, &same_number).await.unwrap();
    // Then the site moves to zCDP: an ε-DP release is ε²/2-zCDP, so what
    // was spent counts as 0.08 + 0.02 = 0.1 of ρ, never less.
    site.config.policy = Policy::default();
    let service = site.service(Arc::new(OpenDpNoise));
    let budget = service.budget(&who).await.unwrap();
    assert_eq!(budget.accounting, bonebank_schemas::wire::Accounting::Zcdp);
    // 0.4²/2 + 0.2²/2 + 0.02²/2
    assert!((budget.user.spent - 0.1002).abs() < 1e-8, "{budget:?}");
    // ε 0.02 then is not ρ 0.02 now: a fresh release, not the remembered one.
    let zcdp_release = service.run(&who, &same_number).await.unwrap();
    assert!(!zcdp_release.remembered);
    assert_ne!(zcdp_release.accounting, pure_release.accounting);
    let spent_before = service.budget(&who).await.unwrap().user.spent - zcdp_release.charged;
    assert!((spent_before - 0.1002).abs() < 1e-8);
    assert_eq!(budget.user.limit, Policy::default().zcdp.budget.user);
    // /v1/site says so, with the (ε, δ) a user's budget amounts to.
    let described = service.describe().unwrap();
    assert_eq!(
        described.accounting,
        bonebank_schemas::wire::Accounting::Zcdp
    );
    assert_eq!(described.loss, Policy::default().zcdp.rho);
    assert_eq!(described.budgets.user, 0.46);
    let approx = described.user_budget_approx_dp.unwrap();
    assert!(
        (4.9..=5.0).contains(&approx.epsilon) && approx.delta == 1e-6,
        "{approx:?}"
    );
    // A question at ρ 0.023 is charged exactly that (the privacy map's ρ
    // rounded up to whole nano units), and shows the (ε, δ) it amounts to.
    let r = service
        .run(
            &who,
            &sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.023),
        )
        .await
        .unwrap();
    assert!(r.charged <= 0.023 + 1e-9 && r.charged > 0.023 - 1e-8);
    let approx = r.approx_dp.expect("zCDP results state their (ε, δ)");
    assert_eq!(approx.delta, 1e-6);
    let expected = bonebank_node::privacy::zcdp_epsilon(r.charged, 1e-6).unwrap();
    assert_eq!(approx.epsilon, expected);
    let spent = service.budget(&who).await.unwrap().user.spent;
    assert!(
        (spent - 0.1002 - zcdp_release.charged - r.charged).abs() < 1e-8,
        "{spent}"
    );
    // Until the user's ρ budget is used up.
    let mut refused = None;
    for age in 0..40 {
        let text = format!("SELECT COUNT(*) FROM samples WHERE age_at_sampling > {age}");
        match service.run(&who, &sql(&text, 0.05)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(Error::BudgetExhausted(Account::User))),
        "{refused:?}"
    );
    let spent = service.budget(&who).await.unwrap().user.spent;
    assert!(spent <= 0.46 + 1e-9, "{spent}");

    // Back to pure ε: ρ charges cannot be counted in ε, so the node refuses
    // instead of under-counting.
    site.config.policy = pure();
    let service = site.service(Arc::new(OpenDpNoise));
    let e = service
        .run(
            &who,
            &sql("SELECT COUNT(*) FROM samples WHERE sex = 'Male'", 0.1),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot count"), "{e}");
}

#[test]
fn an_epsilon_charge_counts_as_half_its_square_in_rho_rounded_up() {
    use bonebank_node::store::rho_units_of_epsilon;
    assert_eq!(rho_units_of_epsilon(400_000_000), 80_000_000);
    assert_eq!(rho_units_of_epsilon(1_000_000_000), 500_000_000);
    // 3 nano-ε: 4.5e-18 of ρ, which is one nano unit, not zero.
    assert_eq!(rho_units_of_epsilon(3), 1);
    assert_eq!(rho_units_of_epsilon(0), 0);
    // ε 100 does not overflow.
    assert_eq!(rho_units_of_epsilon(100_000_000_000), 5_000_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_states_the_cost_and_precision_and_spends_nothing() {
    let site = site(200, Policy::default());
    let service = site.service(Arc::new(OpenDpNoise));
    let who = caller("ana", "p1", Role::Researcher);
    let text = "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
                WHERE sex = 'Female' GROUP BY sample_type";
    let preview = service.preview(&who, &sql(text, 0.023)).await.unwrap();
    assert_eq!(service.budget(&who).await.unwrap().user.spent, 0.0);
    assert_eq!(
        preview.cells_per_donor, 7,
        "sample types one donor may add to"
    );
    assert!(!preview.needs_approval);
    let mut audit = Vec::new();
    service.store().export_audit(&mut audit).unwrap();
    assert!(
        !String::from_utf8(audit).unwrap().contains("\"request\""),
        "a preview is not a request"
    );
    // The release then has exactly the stated cost and ± per measure.
    let r = service.run(&who, &sql(text, 0.023)).await.unwrap();
    assert_eq!(r.charged, preview.loss);
    assert_eq!(r.approx_dp, preview.approx_dp);
    for (m, p) in r.measures.iter().zip(&preview.measures) {
        assert_eq!((m.scale, m.sensitivity), (p.scale, p.sensitivity));
        let row = &r.rows[0].values[r.measures.iter().position(|x| x == m).unwrap()];
        let half = (row.interval[1] - row.interval[0]) / 2.0;
        assert_eq!(Some(half), p.halfwidth, "{}", p.label);
    }
    // The donor count's ± at 95% is 1.96 σ with σ = √7 / √(2 · 16/17 · 0.023).
    let sigma = 7f64.sqrt() / (2.0f64 * 0.023 * 16.0 / 17.0).sqrt();
    let donors = preview
        .measures
        .iter()
        .find(|m| m.measure == bonebank_schemas::Measure::Donors)
        .and_then(|m| m.halfwidth)
        .unwrap();
    assert!(
        (donors - 1.96 * sigma).abs() <= 1.0,
        "{donors} vs {}",
        1.96 * sigma
    );

    // A question the rules deny is refused in preview too.
    let mut policy = Policy::default();
    policy.rules.push(bonebank_query::policy::Rule {
        reason: Some("no breakdowns here".into()),
        ..crate::common::rule(bonebank_query::policy::Action::Deny)
    });
    let site = self::site(50, policy);
    let service = site.service(Arc::new(OpenDpNoise));
    let e = service.preview(&who, &sql(text, 0.023)).await.unwrap_err();
    assert!(matches!(e, Error::PolicyRefused(_)), "{e}");
}

#[test]
fn a_stored_release_is_answered_from_memory_as_stored() {
    use bonebank_node::store::{Committed, Payer, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let store = Store::open(&path).unwrap();
    let payer = Payer {
        user: "ana".into(),
        project: "p1".into(),
    };
    let reservation = store
        .reserve(&payer, 10, &policy(1.0, 1.0, 1.0))
        .unwrap()
        .unwrap();
    assert_eq!(store.recent_release("k"), None);
    let committed = reservation
        .commit(
            "k",
            "v1",
            "{}",
            r#"{"n":1}"#,
            10,
            "ana",
            bonebank_node::audit::Question::default(),
        )
        .unwrap();
    assert_eq!(committed, Committed::Released);
    let stored = Some((r#"{"n":1}"#.to_owned(), 10));
    assert_eq!(store.recent_release("k"), stored);
    // Another process's store has it only in the database: it reads it
    // there once, and from then on has it in memory.
    let other = Store::open(&path).unwrap();
    assert_eq!(other.recent_release("k"), None);
    assert_eq!(other.release("k").unwrap(), stored);
    assert_eq!(other.recent_release("k"), stored);
    assert_eq!(other.release("missing").unwrap(), None);
    assert_eq!(other.recent_release("missing"), None);
}
