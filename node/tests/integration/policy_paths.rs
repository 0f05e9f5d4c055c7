//! A steward's rules hold on every path: a remembered release goes only to
//! callers the rules allow to receive it, and role settings in a config are
//! merged over the defaults, so industry's consent filter cannot silently
//! disappear.

use std::sync::Arc;

use bonebank_node::Error;
use bonebank_node::privacy::FixedOffset;
use bonebank_node::service::{Caller, QueryService};
use bonebank_query::policy::{Action, Policy, Rule};
use bonebank_schemas::wire::{QueryResult, Source};
use bonebank_schemas::{Filter, Role, Value};

use crate::common::{self, TestSite, approve, caller, pure, sql};

fn rule(action: Action) -> Rule {
    Rule {
        reason: Some("not for this caller".into()),
        ..common::rule(action)
    }
}

fn steward() -> bonebank_node::service::Steward {
    common::steward("DK-ODE")
}

/// One rule kind: the rule, a question it matches only for `second`, and
/// two callers asking the same canonical question.
struct Case {
    name: &'static str,
    rule: Rule,
    sql: &'static str,
    epsilon: f64,
    first: Caller,
    second: Caller,
}

/// Every condition a rule can have. Conditions on the question alone are
/// paired with the industry role, so that the same canonical question is
/// allowed for the researcher who asks first (writing the industry filter
/// out) and matched for the industry partner who asks second.
fn cases() -> Vec<Case> {
    let researcher = caller("rita", "open", Role::Researcher);
    let industry = caller("ida", "scoping", Role::Industry);
    let plain = "SELECT COUNT(*) FROM samples WHERE consent_commercial = true";
    let grouped = "SELECT sex, COUNT(*) FROM samples WHERE consent_commercial = true GROUP BY sex";
    // A deny rule for industry partners with one more condition set.
    let industry_case = |name, set: fn(&mut Rule), sql, epsilon| {
        let mut rule = Rule {
            role: Some(Role::Industry),
            ..rule(Action::Deny)
        };
        set(&mut rule);
        Case {
            name,
            rule,
            sql,
            epsilon,
            first: researcher.clone(),
            second: industry.clone(),
        }
    };
    vec![
        industry_case("role", |_| {}, plain, 0.2),
        Case {
            name: "projects",
            rule: Rule {
                projects: Some(vec!["closed".into()]),
                ..rule(Action::Deny)
            },
            sql: plain,
            epsilon: 0.2,
            first: researcher.clone(),
            second: caller("cleo", "closed", Role::Researcher),
        },
        industry_case(
            "measures",
            |r| r.measures = Some(vec!["donors".into()]),
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE consent_commercial = true",
            0.2,
        ),
        industry_case(
            "min_dimensions",
            |r| r.min_dimensions = Some(1),
            grouped,
            0.2,
        ),
        industry_case(
            "dimensions",
            |r| r.dimensions = Some(vec!["sex".into()]),
            grouped,
            0.2,
        ),
        industry_case("loss_above", |r| r.loss_above = Some(0.3), plain, 0.4),
    ]
}

fn site_with(rules: Vec<Rule>) -> TestSite {
    TestSite::new("DK-ODE", 60, Policy { rules, ..pure() })
}

/// The last request entry of the audit log.
fn last_request(service: &QueryService) -> serde_json::Value {
    service.store().last_audit("request").unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_rule_holds_for_a_release_someone_else_made() {
    for case in cases() {
        let site = site_with(vec![case.rule.clone()]);
        let service = site.service(Arc::new(FixedOffset(0)));
        let q = sql(case.sql, case.epsilon);
        let first = service.run(&case.first, &q).await;
        assert!(
            first.is_ok(),
            "{}: the first caller is allowed: {first:?}",
            case.name
        );
        let second = service.run(&case.second, &q).await;
        assert!(
            matches!(&second, Err(Error::PolicyRefused(r)) if r.message == "not for this caller"),
            "{}: {second:?}",
            case.name
        );
        let audit = last_request(&service);
        assert_eq!(audit["outcome"], "policy_refused", "{}", case.name);
        assert_eq!(audit["user"], case.second.user.as_str(), "{}", case.name);
        assert_eq!(audit["rule"], 1, "{}", case.name);
        // The first caller still gets the remembered answer.
        assert!(
            service.run(&case.first, &q).await.unwrap().remembered,
            "{}",
            case.name
        );
    }
}

fn pending(r: Result<QueryResult, Error>, what: &str) -> String {
    match r {
        Err(Error::Pending { ticket, .. }) => ticket,
        other => panic!("{what}: expected to wait for a steward, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approve_rule_needs_a_stewards_yes_to_this_requester() {
    for case in cases() {
        let site = site_with(vec![Rule {
            action: Action::Approve,
            reason: None,
            ..case.rule.clone()
        }]);
        let service = site.service(Arc::new(FixedOffset(0)));
        let q = sql(case.sql, case.epsilon);
        let first = service.run(&case.first, &q).await.unwrap();
        assert!(!first.remembered, "{}", case.name);

        let ticket = pending(service.run(&case.second, &q).await, case.name);
        let audit = last_request(&service);
        assert_eq!(audit["outcome"], "pending_approval", "{}", case.name);
        assert_eq!(audit["ticket"], ticket.as_str(), "{}", case.name);
        // Asking again is still waiting: the release exists, the approval not.
        assert_eq!(
            pending(service.run(&case.second, &q).await, case.name),
            ticket
        );

        service
            .decide(&steward(), &ticket, &approve())
            .await
            .unwrap();
        let answer = service.run(&case.second, &q).await.unwrap();
        assert_eq!(answer.source, Source::Approval, "{}", case.name);
        // Someone else's question made the release: approving it cost this
        // requester nothing, and the answer says so.
        assert_eq!(answer.charged, 0.0, "{}", case.name);
        assert_eq!(answer.rows, first.rows, "{}: the same release", case.name);
        assert_eq!(last_request(&service)["ticket"], ticket.as_str());
        // The release was made before: approving it charged nobody again.
        assert_eq!(
            service.budget(&case.second).await.unwrap().user.spent,
            0.0,
            "{}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_requesters_approval_is_not_anothers() {
    let site = site_with(vec![Rule {
        role: Some(Role::Industry),
        ..rule(Action::Approve)
    }]);
    let service = site.service(Arc::new(FixedOffset(0)));
    let q = sql("SELECT COUNT(*) FROM samples", 0.2);
    let (ida, ivo) = (
        caller("ida", "scoping", Role::Industry),
        caller("ivo", "scoping", Role::Industry),
    );
    let ticket = pending(service.run(&ida, &q).await, "ida");
    service
        .decide(&steward(), &ticket, &approve())
        .await
        .unwrap();
    // Approving ran the question: ida's next look gets it.
    assert_eq!(
        service.run(&ida, &q).await.unwrap().source,
        Source::Approval
    );
    // Ivo of the same project asks the same question: his own request waits.
    let ivos = pending(service.run(&ivo, &q).await, "ivo");
    assert_ne!(ivos, ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_settings_hold_for_remembered_releases() {
    let q = sql(
        "SELECT COUNT(*) FROM samples WHERE consent_commercial = true",
        0.4,
    );
    let (rita, ida) = (
        caller("rita", "open", Role::Researcher),
        caller("ida", "scoping", Role::Industry),
    );
    for name in ["denied", "max_loss"] {
        let mut policy = pure();
        let industry = policy.roles.get_mut(&Role::Industry).unwrap();
        match name {
            "denied" => industry.denied = true,
            _ => industry.max_loss = Some(0.3),
        }
        let site = TestSite::new("DK-ODE", 60, policy);
        let service = site.service(Arc::new(FixedOffset(0)));
        service.run(&rita, &q).await.unwrap();
        let r = service.run(&ida, &q).await;
        assert!(matches!(r, Err(Error::PolicyRefused(_))), "{name}: {r:?}");
        assert_eq!(
            last_request(&service)["outcome"],
            "policy_refused",
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_added_later_holds_for_releases_made_before_it() {
    let mut site = TestSite::new("DK-ODE", 60, pure());
    let q = sql("SELECT sex, COUNT(*) FROM samples GROUP BY sex", 0.2);
    let rita = caller("rita", "open", Role::Researcher);
    let before = site.service(Arc::new(FixedOffset(0)));
    before.run(&rita, &q).await.unwrap();
    // Under an approve rule for industry, ida's request waits.
    site.config.policy.rules = vec![Rule {
        role: Some(Role::Industry),
        ..rule(Action::Approve)
    }];
    let ida = caller("ida", "scoping", Role::Industry);
    let waiting = site.service(Arc::new(FixedOffset(0))).run(&ida, &q).await;
    let filed = pending(waiting, "ida under the approve rule");

    // The steward forbids breakdowns by sex; the node restarts with it.
    site.config.policy.rules = vec![Rule {
        dimensions: Some(vec!["sex".into()]),
        ..rule(Action::Deny)
    }];
    let after = site.service(Arc::new(FixedOffset(0)));
    let r = after.run(&rita, &q).await;
    assert!(matches!(r, Err(Error::PolicyRefused(_))), "{r:?}");
    // Nor can a steward approve what the policy now refuses.
    let r = after.decide(&steward(), &filed, &approve()).await;
    assert!(matches!(r, Err(Error::PolicyRefused(_))), "{r:?}");
}

fn commercial_consent() -> Filter {
    Filter::In {
        column: "consent_commercial".into(),
        values: vec![Value::Bool(true)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_only_a_researcher_section_keeps_the_industry_filter() {
    let site = TestSite::new("DK-ODE", 60, pure());
    let path = site.write_config("\n[policy.roles.researcher]\nmax_loss = 0.5\n");
    let config = bonebank_node::config::NodeConfig::load(&path).unwrap();
    assert_eq!(
        config.policy.forced_filter(Role::Industry).unwrap(),
        Some(commercial_consent())
    );
    assert_eq!(config.policy.roles[&Role::Researcher].max_loss, Some(0.5));
    // And the question an industry partner asks runs with it.
    let service = bonebank_node::server::state_with_noise(&config, Arc::new(FixedOffset(0)))
        .unwrap()
        .service;
    let r = service
        .run(
            &caller("ida", "scoping", Role::Industry),
            // The config leaves the accounting at its default, zCDP.
            &sql("SELECT COUNT(*) FROM samples", 0.02),
        )
        .await
        .unwrap();
    assert_eq!(r.query.filter, commercial_consent());

    // An industry section that sets something else keeps the filter too.
    let path = site.write_config("\n[policy.roles.industry]\nmax_loss = 0.5\n");
    let config = bonebank_node::config::NodeConfig::load(&path).unwrap();
    assert_eq!(
        config.policy.forced_filter(Role::Industry).unwrap(),
        Some(commercial_consent())
    );
}

#[test]
fn counting_industry_without_commercial_consent_must_be_said_on_purpose() {
    let site = TestSite::new("DK-ODE", 20, pure());
    // write_config puts the policy text on line 4 onwards.
    for (policy, refused) in [
        (
            "\n[policy.roles.industry]\nforce_filter = \"consent_research = true\"\n",
            true,
        ),
        ("\n[policy.roles.industry]\nforce_filter = \"\"\n", true),
        (
            "\n[policy.roles.industry]\nforce_filter = \"consent_commercial = true OR consent_research = true\"\n",
            true,
        ),
        (
            "\n[policy.roles.industry]\nforce_filter = \"consent_commercial = false\"\n",
            true,
        ),
        (
            "\n[policy.roles.industry]\nforce_filter = \"consent_genetic = true AND consent_commercial = true\"\n",
            false,
        ),
        (
            "\n[policy.roles.industry]\nforce_filter = \"\"\ncount_without_commercial_consent = true\n",
            false,
        ),
        (
            "\n[policy.roles.industry]\ndenied = true\nforce_filter = \"\"\n",
            false,
        ),
    ] {
        let path = site.write_config(policy);
        let loaded = bonebank_node::config::NodeConfig::load(&path);
        if refused {
            let err = loaded.unwrap_err().to_string();
            assert!(
                err.contains("line 6:") && err.contains("without commercial consent"),
                "{policy}: {err}"
            );
        } else {
            loaded.unwrap_or_else(|e| panic!("{policy}: {e}"));
        }
    }
    let path =
        site.write_config("\n[policy.roles.researcher]\ncount_without_commercial_consent = true\n");
    let err = bonebank_node::config::NodeConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 6:") && err.contains("industry role only"),
        "{err}"
    );
}

#[test]
fn policy_show_prints_the_effective_policy_with_its_defaults() {
    let site = TestSite::new("DK-ODE", 20, pure());
    let path = site.write_config(
        "\n[policy]\nmax_dimensions = 1\n\n[policy.roles.researcher]\nmax_loss = 0.5\n\n[[policy.rules]]\nrole = \"industry\"\naction = \"approve\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
        .args(["policy", "show", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "max_dimensions = 1",
        "max_samples_per_donor = 5",
        "[policy.roles.industry]",
        "force_filter = \"consent_commercial = true\"",
        "[policy.roles.researcher]",
        "[[policy.rules]]",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // What it prints is a config section that reads back as the same policy.
    #[derive(serde::Deserialize)]
    struct Section {
        policy: Policy,
    }
    let shown: Section = toml::from_str(&text).unwrap();
    let loaded = bonebank_node::config::NodeConfig::load(&path).unwrap();
    assert_eq!(shown.policy, loaded.policy);
}

#[test]
fn a_config_that_bounds_one_dimension_keeps_the_other_bounds() {
    let site = TestSite::new("DK-ODE", 20, pure());
    let path = site.write_config("\n[policy.groups_per_donor]\nsample_type = 5\n");
    let config = bonebank_node::config::NodeConfig::load(&path).unwrap();
    let defaults = bonebank_query::policy::Policy::default().groups_per_donor;
    assert_eq!(config.policy.groups_per_donor["sample_type"], 5);
    for (d, g) in defaults.iter().filter(|(d, _)| *d != "sample_type") {
        assert_eq!(config.policy.groups_per_donor.get(d), Some(g), "{d}");
    }
}

/// Any config that loads gives a site description; a budget so large that
/// it cannot be stated as (ε, δ)-DP (ρ 10⁵ once made `/v1/site` answer
/// 500) is refused at start, with its line.
#[test]
fn every_budget_that_loads_can_be_described_and_an_absurd_one_is_refused_with_its_line() {
    let site = TestSite::new("DK-ODE", 20, pure());
    // write_config puts the policy text on line 4 onwards: `site = …` is
    // line 6, `user = …` line 8.
    for (key, line) in [("site", 6), ("user", 8)] {
        let mut refused = Vec::new();
        for rho in [0.46, 100.0, 1e3, 1e4, 1e5, 1e6, 1e300] {
            let value = |k: &str, usual: f64| if k == key { rho } else { usual };
            let path = site.write_config(&format!(
                "\n[policy.zcdp.budget]\nsite = {:e}\nproject = 4.5\nuser = {:e}\n",
                value("site", 48.0),
                value("user", 0.46),
            ));
            match bonebank_node::config::NodeConfig::load(&path) {
                Ok(config) => {
                    let service =
                        bonebank_node::server::state_with_noise(&config, Arc::new(FixedOffset(0)))
                            .unwrap()
                            .service;
                    let described = service.describe();
                    assert!(described.is_ok(), "{key} ρ {rho}: {described:?}");
                }
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&format!("line {line}:"))
                            && e.contains(&format!("policy.zcdp.budget.{key}"))
                            && e.contains("too large"),
                        "{key} ρ {rho}: {e}"
                    );
                    refused.push(rho);
                }
            }
        }
        assert!(
            refused.contains(&1e5),
            "{key}: ρ 10⁵ must be refused, refused {refused:?}"
        );
        assert!(
            !refused.contains(&0.46) && !refused.contains(&100.0),
            "{key}: {refused:?}"
        );
    }
}
