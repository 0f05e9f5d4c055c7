//! Site policy rules (run, approve, deny), forced filters checked against
//! the data, and the stewards' approval queue.

use std::sync::Arc;

use bonebank_node::Error;
use bonebank_node::privacy::FixedOffset;
use bonebank_node::service::QueryService;
use bonebank_query::policy::{Action, Policy, Rule};
use bonebank_schemas::wire::ApprovalDecision;
use bonebank_schemas::{Role, Table};

use crate::common::{TestSite, approve, caller, pure, rule, sql, steward};

/// DESIGN.md's example: researchers up to ε 0.5 and one dimension run at
/// once; industry partners and two-dimension breakdowns wait; a third
/// dimension is refused.
fn example_rules() -> Vec<Rule> {
    vec![
        Rule {
            min_dimensions: Some(3),
            reason: Some("this site answers at most two dimensions".into()),
            ..rule(Action::Deny)
        },
        Rule {
            role: Some(Role::Industry),
            ..rule(Action::Approve)
        },
        Rule {
            min_dimensions: Some(2),
            ..rule(Action::Approve)
        },
        Rule {
            loss_above: Some(0.5),
            ..rule(Action::Approve)
        },
        Rule {
            measures: Some(vec!["sum".into(), "avg".into()]),
            dimensions: Some(vec!["diagnosis_3char".into()]),
            reason: Some("no sums by diagnosis".into()),
            ..rule(Action::Deny)
        },
    ]
}

#[test]
fn policy_decisions_follow_the_first_matching_rule() {
    let policy = Policy {
        rules: example_rules(),
        max_dimensions: 3,
        ..pure()
    };
    policy.validate_rules().unwrap();
    let cases: &[(Role, &str, f64, Action, Option<usize>)] = &[
        (
            Role::Researcher,
            "SELECT COUNT(*) FROM samples",
            0.25,
            Action::Run,
            None,
        ),
        (
            Role::Researcher,
            "SELECT sex, COUNT(*) FROM samples GROUP BY sex",
            0.5,
            Action::Run,
            None,
        ),
        (
            Role::Researcher,
            "SELECT COUNT(*) FROM samples",
            0.51,
            Action::Approve,
            Some(4),
        ),
        (
            Role::Researcher,
            "SELECT sex, age_band, COUNT(*) FROM samples GROUP BY sex, age_band",
            0.1,
            Action::Approve,
            Some(3),
        ),
        (
            Role::Researcher,
            "SELECT sex, age_band, country, COUNT(*) FROM samples GROUP BY sex, age_band, country",
            0.1,
            Action::Deny,
            Some(1),
        ),
        (
            Role::Industry,
            "SELECT COUNT(*) FROM samples",
            0.1,
            Action::Approve,
            Some(2),
        ),
        (
            Role::Industry,
            "SELECT sex, age_band, country, COUNT(*) FROM samples GROUP BY sex, age_band, country",
            0.1,
            Action::Deny,
            Some(1),
        ),
        (
            Role::Researcher,
            "SELECT diagnosis_3char, SUM(aliquots_available) FROM samples GROUP BY diagnosis_3char",
            0.1,
            Action::Deny,
            Some(5),
        ),
        (
            Role::Researcher,
            "SELECT diagnosis_3char, COUNT(*) FROM samples GROUP BY diagnosis_3char",
            0.1,
            Action::Run,
            None,
        ),
        (
            Role::Researcher,
            "SELECT sex, SUM(aliquots_available) FROM samples GROUP BY sex",
            0.1,
            Action::Run,
            None,
        ),
    ];
    for (role, text, epsilon, action, rule) in cases {
        let q = bonebank_query::sql::parse(text).unwrap();
        let d = policy.decide(*role, "p", &q, *epsilon);
        assert_eq!(
            (d.action, d.rule),
            (*action, *rule),
            "{role} {text} ε {epsilon}"
        );
    }
    assert_eq!(
        policy.decide(Role::Researcher, "p", &bonebank_query::sql::parse("SELECT sex, age_band, country, COUNT(*) FROM samples GROUP BY sex, age_band, country").unwrap(), 0.1).reason.as_deref(),
        Some("this site answers at most two dimensions")
    );
}

use crate::common::OIDC_SECTION as OIDC;

#[test]
fn an_invalid_rule_stops_the_node_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (rule, message) in [
        ("action = \"deny\"", "needs a reason"),
        (
            "action = \"approve\"\ndimensions = [\"donor_id\"]",
            "not a dimension",
        ),
        (
            "action = \"approve\"\nmeasures = [\"median\"]",
            "unknown measure",
        ),
        ("action = \"maybe\"", "unknown variant"),
    ] {
        let path = tmp.path().join("node.toml");
        std::fs::write(
            &path,
            format!(
                "site_id = \"DK-ODE\"\ndata_dir = \"d\"\nstate_dir = \"s\"\n\n[[policy.rules]]\nrole = \"industry\"\naction = \"approve\"\n\n[[policy.rules]]\n{rule}\n{OIDC}"
            ),
        )
        .unwrap();
        let err = bonebank_node::config::NodeConfig::load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{rule}: {err}");
        if !message.starts_with("unknown variant") {
            assert!(err.contains("line 9: policy rule 2"), "{rule}: {err}");
        }
    }
}

#[test]
fn any_invalid_policy_setting_is_named_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let head = "site_id = \"DK-ODE\"\ndata_dir = \"d\"\nstate_dir = \"s\"\n\n";
    for (body, line, message) in [
        ("[policy]\nmax_dimensions = \"two\"\n", 6, "max_dimensions"),
        (
            "[policy]\nmax_dimensions = 2\n\n[policy.epsilon]\nmin = 0.5\nmax = 0.2\ndefault = 0.3\n",
            8,
            "policy.epsilon",
        ),
        (
            "[policy]\nbudget_period_days = 0\n",
            6,
            "budget_period_days",
        ),
        (
            "[policy.groups_per_donor]\nsample_type = 6\nsex = 2\n",
            7,
            "sex is fixed per donor",
        ),
        (
            "[policy.groups_per_donor]\nsample_typ = 6\n",
            6,
            "sample_typ is not a dimension",
        ),
        (
            "[policy.groups_per_donor]\nage_band = 0\n",
            6,
            "age_band must be at least 1",
        ),
    ] {
        let path = tmp.path().join("node.toml");
        std::fs::write(&path, format!("{head}{body}{OIDC}")).unwrap();
        let err = bonebank_node::config::NodeConfig::load(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("line {line}:")) && err.contains(message),
            "{body}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn industry_counts_only_donors_with_commercial_consent_in_the_data() {
    let site = TestSite::new("DE-LUE", 300, pure());
    let service = site.service(Arc::new(FixedOffset(0)));
    let q = sql("SELECT COUNT(DISTINCT donor_id) FROM samples", 0.5);
    let industry = service
        .run(&caller("i", "p", Role::Industry), &q)
        .await
        .unwrap();
    let everyone = service
        .run(&caller("r", "p", Role::Researcher), &q)
        .await
        .unwrap();
    let industry = industry.rows[0].values[0].value as u64;
    let everyone = everyone.rows[0].values[0].value as u64;

    // From the stored tables: donors not withdrawn, with commercial consent
    // and at least one sample.
    let dir = site.dir();
    let version = dir.current().unwrap().unwrap();
    let mut with_samples = std::collections::HashSet::new();
    for b in dir.read_all(&version, Table::Samples).unwrap() {
        let ids = arrow::array::AsArray::as_string::<i32>(b.column_by_name("donor_id").unwrap());
        with_samples.extend(ids.iter().flatten().map(str::to_owned));
    }
    let (mut commercial, mut all) = (0, 0);
    for b in dir.read_all(&version, Table::Donors).unwrap() {
        let col = |n| arrow::array::AsArray::as_boolean(b.column_by_name(n).unwrap()).clone();
        let ids = arrow::array::AsArray::as_string::<i32>(b.column_by_name("donor_id").unwrap());
        let (withdrawn, consent) = (col("consent_withdrawn"), col("consent_commercial"));
        for i in 0..b.num_rows() {
            if withdrawn.value(i) || !with_samples.contains(ids.value(i)) {
                continue;
            }
            all += 1;
            commercial += u64::from(consent.value(i));
        }
    }
    assert!(
        commercial < all,
        "the data has donors without commercial consent"
    );
    assert_eq!(industry, commercial);
    assert_eq!(everyone, all);
}

fn pending_ticket(r: Result<bonebank_schemas::wire::QueryResult, Error>) -> String {
    match r {
        Err(Error::Pending { ticket, site, .. }) => {
            assert_eq!(site, "DK-ODE");
            ticket
        }
        other => panic!("expected a pending ticket, got {other:?}"),
    }
}

pub(crate) fn approval_site() -> TestSite {
    TestSite::new(
        "DK-ODE",
        60,
        Policy {
            rules: vec![Rule {
                role: Some(Role::Industry),
                ..rule(Action::Approve)
            }],
            ..pure()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_waits_for_a_steward_and_the_next_look_has_the_answer() {
    let site = approval_site();
    let service = site.service(Arc::new(FixedOffset(0)));
    let ida = caller("ida", "scoping", Role::Industry);
    let q = sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.2);

    let ticket = pending_ticket(service.run(&ida, &q).await);
    // Looking again is the same ticket, and nothing is charged yet.
    assert_eq!(pending_ticket(service.run(&ida, &q).await), ticket);
    assert_eq!(service.budget(&ida).await.unwrap().user.spent, 0.0);

    // Only a steward of this site gets in: the queue and the decision take
    // a `Steward`, and only stewards of DK-ODE are admitted as one here.
    for who in [
        crate::common::steward_caller("DE-LUE"),
        caller("ana", "p1", Role::Researcher),
        ida.clone(),
    ] {
        assert!(
            matches!(
                bonebank_node::service::Steward::admit(who.clone(), "DK-ODE"),
                Err(bonebank_service::Error::Forbidden(_))
            ),
            "{who:?}"
        );
    }

    // Pending requests survive a restart.
    let service = site.service(Arc::new(FixedOffset(0)));
    let pending = service.approvals(&steward("DK-ODE")).await.unwrap();
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(
        (p.ticket.as_str(), p.user.as_str(), p.project.as_str()),
        (ticket.as_str(), "ida", "scoping")
    );
    assert!(p.sql.contains("consent_commercial = true"), "{}", p.sql);
    assert_eq!(p.loss, 0.2);
    assert_eq!(p.user_remaining, 5.0);
    // The rule that sent it here, and ida's record at the site so far.
    assert_eq!(p.rule, Some(1));
    assert_eq!(p.purpose, None, "ida stated no purpose");
    assert_eq!(
        p.history,
        bonebank_schemas::wire::RequesterHistory {
            answered: 0,
            approved: 0,
            rejected: 0
        }
    );

    let status = service
        .decide(&steward("DK-ODE"), &ticket, &approve())
        .await
        .unwrap();
    assert_eq!(status.state, "approved");
    assert!(
        service
            .approvals(&steward("DK-ODE"))
            .await
            .unwrap()
            .is_empty()
    );
    // Charged to the requester at approval.
    assert!((service.budget(&ida).await.unwrap().user.spent - 0.2).abs() < 1e-9);

    // The answer says where its numbers came from and what they cost her:
    // the charge at approval, not "released before, free".
    let answer = service.run(&ida, &q).await.unwrap();
    assert!(!answer.remembered);
    assert_eq!(answer.source, bonebank_schemas::wire::Source::Approval);
    assert!((answer.charged - 0.2).abs() < 1e-9, "{}", answer.charged);
    assert_eq!(answer.rows.len(), 5);
    // Picking it up again charges nothing more.
    service.run(&ida, &q).await.unwrap();
    assert!((service.budget(&ida).await.unwrap().user.spent - 0.2).abs() < 1e-9);
    // Her record now: one approval and its one answer (picking it up
    // twice is not two answers).
    let decided = service.recent_approvals(&steward("DK-ODE")).await.unwrap();
    assert_eq!(
        decided[0].history,
        bonebank_schemas::wire::RequesterHistory {
            answered: 1,
            approved: 1,
            rejected: 0
        }
    );
    assert_eq!(
        service.ticket_status(&ida, &ticket).await.unwrap().state,
        "approved"
    );
    // Deciding twice is refused.
    assert!(
        service
            .decide(&steward("DK-ODE"), &ticket, &approve())
            .await
            .is_err()
    );
    bonebank_node::audit::verify(&rusqlite::Connection::open(site.config.state_db()).unwrap())
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_carries_its_reason_and_expired_requests_start_over() {
    let site = approval_site();
    let service = site.service(Arc::new(FixedOffset(0)));
    let ida = caller("ida", "scoping", Role::Industry);
    let q = sql("SELECT COUNT(*) FROM samples", 0.1);
    let ticket = pending_ticket(service.run(&ida, &q).await);

    let no_reason = ApprovalDecision {
        decision: "reject".into(),
        reason: None,
    };
    assert!(matches!(
        service
            .decide(&steward("DK-ODE"), &ticket, &no_reason)
            .await,
        Err(Error::BadRequest(_))
    ));
    let reject = ApprovalDecision {
        decision: "reject".into(),
        reason: Some("no contract with this partner yet".into()),
    };
    service
        .decide(&steward("DK-ODE"), &ticket, &reject)
        .await
        .unwrap();
    match service.run(&ida, &q).await {
        Err(Error::PolicyRefused(r)) => assert!(
            r.message.contains("no contract with this partner yet"),
            "{r:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(service.budget(&ida).await.unwrap().user.spent, 0.0);

    // An undecided request expires after the policy's period; asking again
    // files a new one.
    let q2 = sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.1);
    let first = pending_ticket(service.run(&ida, &q2).await);
    rusqlite::Connection::open(site.config.state_db())
        .unwrap()
        .execute(
            "UPDATE tickets SET expires = created WHERE id = ?1",
            [&first],
        )
        .unwrap();
    assert!(
        service
            .approvals(&steward("DK-ODE"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        service.ticket_status(&ida, &first).await.unwrap().state,
        "expired"
    );
    assert!(
        service
            .decide(&steward("DK-ODE"), &first, &approve())
            .await
            .is_err()
    );
    let second = pending_ticket(service.run(&ida, &q2).await);
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_rules_refuse_with_their_reason() {
    let site = TestSite::new(
        "DK-ODE",
        20,
        Policy {
            rules: vec![Rule {
                dimensions: Some(vec!["sampling_year".into()]),
                reason: Some("no breakdowns by year here".into()),
                ..rule(Action::Deny)
            }],
            ..pure()
        },
    );
    let service: QueryService = site.service(Arc::new(FixedOffset(0)));
    let r = service
        .run(
            &caller("ana", "p", Role::Researcher),
            &sql(
                "SELECT sampling_year, COUNT(*) FROM samples GROUP BY sampling_year",
                0.1,
            ),
        )
        .await;
    match r {
        Err(Error::PolicyRefused(r)) => assert_eq!(r.message, "no breakdowns by year here"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stewards_decide_from_the_command_line() {
    let site = approval_site();
    let service = site.service(Arc::new(FixedOffset(0)));
    let ida = caller("ida", "scoping", Role::Industry);
    let first = pending_ticket(
        service
            .run(&ida, &sql("SELECT COUNT(*) FROM samples", 0.1))
            .await,
    );
    let second = pending_ticket(
        service
            .run(
                &ida,
                &sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.1),
            )
            .await,
    );
    // The same policy as the service above: pure ε accounting.
    let config = site.write_config(
        "\n[policy]\naccounting = \"pure\"\n\n[[policy.rules]]\nrole = \"industry\"\naction = \"approve\"\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
            .arg("steward")
            .args(args)
            .arg("--config")
            .arg(&config)
            .args(["--as", "sam"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, list) = run(&["list"]);
    assert!(ok, "{list}");
    assert!(list.contains(&first) && list.contains(&second), "{list}");
    assert!(list.contains("consent_commercial = true"), "{list}");

    let (ok, out) = run(&["reject", &first, "--reason", "not this one"]);
    assert!(ok && out.contains("rejected"), "{out}");
    let (ok, out) = run(&["approve", &second]);
    assert!(ok && out.contains("approved"), "{out}");
    let (ok, out) = run(&["approve", &second]);
    assert!(!ok && out.contains("not pending"), "{out}");

    let service = site.service(Arc::new(FixedOffset(0)));
    let answer = service
        .run(
            &ida,
            &sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.1),
        )
        .await
        .unwrap();
    // Approved from the command line, charged to ida then.
    assert_eq!(answer.source, bonebank_schemas::wire::Source::Approval);
    assert!(answer.charged > 0.0);
    let (ok, list) = run(&["list"]);
    assert!(ok && list.contains("no queries are waiting"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_values_are_rounded_for_display_when_the_policy_says_so() {
    let q = sql(
        "SELECT sex, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sex",
        0.5,
    );
    let ana = caller("ana", "p", Role::Researcher);
    // Grouped by a dimension fixed per donor, so that no donor is over a
    // bound and both runs count the same. FixedOffset(0) releases the exact bounded values, so the rounding is visible.
    let exact = TestSite::new("DE-LUE", 150, pure());
    let exact = exact
        .service(Arc::new(FixedOffset(0)))
        .run(&ana, &q)
        .await
        .unwrap();
    let site = TestSite::new(
        "DE-LUE",
        150,
        Policy {
            round_to: 10,
            ..pure()
        },
    );
    let rounded = site
        .service(Arc::new(FixedOffset(0)))
        .run(&ana, &q)
        .await
        .unwrap();
    assert!(rounded.measures.iter().all(|m| m.rounded_to == 10));
    let mut moved = 0;
    for (e, r) in exact.rows.iter().zip(&rounded.rows) {
        for (e, r) in e.values.iter().zip(&r.values) {
            assert_eq!(r.value % 10.0, 0.0, "{r:?}");
            assert!((r.value - e.value).abs() <= 5.0, "{e:?} → {r:?}");
            assert!(
                r.interval[0] <= e.value && e.value <= r.interval[1],
                "{e:?} → {r:?}"
            );
            assert!(
                r.interval[0] % 10.0 == 0.0 && r.interval[1] % 10.0 == 0.0,
                "{r:?}"
            );
            moved += usize::from(r.value != e.value);
        }
    }
    assert!(moved > 0, "some values were not multiples of 10 before");
    let bad = Policy {
        round_to: 0,
        ..pure()
    };
    assert!(bad.validate_rules().is_err());
}

/// A data steward of DK-ODE with a name of their own.
fn steward_named(name: &str) -> bonebank_node::service::Steward {
    let caller = bonebank_node::service::Caller {
        user: name.into(),
        ..crate::common::steward_caller("DK-ODE")
    };
    bonebank_node::service::Steward::admit(caller, "DK-ODE").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_eyes_rule_needs_two_different_stewards() {
    let site = TestSite::new(
        "DK-ODE",
        60,
        Policy {
            rules: vec![Rule {
                role: Some(Role::Industry),
                approvals_required: Some(2),
                ..rule(Action::Approve)
            }],
            ..pure()
        },
    );
    let service = site.service(Arc::new(FixedOffset(0)));
    let ida = caller("ida", "scoping", Role::Industry);
    // Asked with its purpose, which the stewards see.
    let purpose = bonebank_schemas::wire::Purpose {
        text: "Scoping a trial of MSC from femoral fractures".into(),
        reference: Some("EK 2026-114".into()),
    };
    let q = bonebank_schemas::wire::QueryRequest {
        purpose: Some(purpose.clone()),
        ..sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.2)
    };
    let ticket = match service.run(&ida, &q).await {
        Err(Error::Pending { ticket, .. }) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    };
    let (sam, kim) = (steward_named("sam"), steward_named("kim"));

    // The first approval: still waiting, nothing charged, nothing released.
    let first = service.decide(&sam, &ticket, &approve()).await.unwrap();
    assert_eq!(first.state, "pending");
    assert_eq!(service.budget(&ida).await.unwrap().user.spent, 0.0);
    assert!(matches!(
        service.run(&ida, &q).await,
        Err(Error::Pending { .. })
    ));
    let waiting = service.approvals(&sam).await.unwrap();
    assert_eq!(waiting[0].first_approval.as_deref(), Some("sam"));
    assert_eq!(waiting[0].approvals_required, 2);
    assert_eq!(waiting[0].purpose.as_ref(), Some(&purpose));
    // The same steward again is refused.
    let again = service
        .decide(&sam, &ticket, &approve())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        again.contains("a second, different data steward"),
        "{again}"
    );

    // A second steward: approved, charged to ida, and the answer says so,
    // with the steward's note.
    let noted = bonebank_schemas::wire::ApprovalDecision {
        decision: "approve".into(),
        reason: Some("for the scoping study only".into()),
    };
    let second = service.decide(&kim, &ticket, &noted).await.unwrap();
    assert_eq!(second.state, "approved");
    assert!((service.budget(&ida).await.unwrap().user.spent - 0.2).abs() < 1e-9);
    let answer = service.run(&ida, &q).await.unwrap();
    assert_eq!(answer.source, bonebank_schemas::wire::Source::Approval);
    assert_eq!(
        answer.steward_note.as_deref(),
        Some("for the scoping study only")
    );

    // Both approvals are in the audit log, and the release names both.
    let conn = rusqlite::Connection::open(site.config.state_db()).unwrap();
    let decisions: Vec<(String, String)> = conn
        .prepare("SELECT actor, json_extract(detail, '$.decision') FROM audit WHERE kind = 'decision' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        decisions,
        [
            ("sam".into(), "approve_first".into()),
            ("kim".into(), "approve".into())
        ]
    );
    let by: String = conn
        .query_row(
            "SELECT json_extract(detail, '$.approved_by') FROM audit WHERE kind = 'request' AND json_extract(detail, '$.outcome') = 'released'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "sam and kim");

    // A rule asking for three, or four eyes on a deny, does not load.
    for bad in [
        "approvals_required = 3\naction = \"approve\"",
        "approvals_required = 2\naction = \"deny\"\nreason = \"no\"",
    ] {
        let config = site.tmp.path().join("bad.toml");
        std::fs::write(
            &config,
            format!("site_id = \"DK-ODE\"\ndata_dir = \"d\"\nstate_dir = \"s\"\n\n[[policy.rules]]\n{bad}\n{}", crate::common::OIDC_SECTION),
        )
        .unwrap();
        let e = bonebank_node::config::NodeConfig::load(&config)
            .unwrap_err()
            .to_string();
        assert!(e.contains("approvals_required"), "{e}");
    }
}
