//! The yearly report for the data-protection officer, as a steward's
//! operator makes it (`bonebank-node report`), read back from its PDF with
//! `pdftotext` (Debian's poppler-utils) and checked against the node's
//! ledger and audit log, read here with SQL of the test's own. Without
//! pdftotext the test says so and does not run, unless
//! `BONEBANK_REQUIRE_PDFTOTEXT=1` (set by `.ci/run`) makes that a failure.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::{Role, SiteId};
use bonebank_service::tls;

fn pdftotext_here() -> bool {
    let here = Command::new("pdftotext")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty());
    if !here {
        let required = std::env::var("BONEBANK_REQUIRE_PDFTOTEXT").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the report test is required here, but pdftotext is missing (apt-get install poppler-utils)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: the yearly report's test needs pdftotext (Debian's poppler-utils); .ci/run installs it."
        );
    }
    here
}

/// Loss units as the report writes them in German: three decimals at
/// most, trailing zeros dropped, a decimal comma.
fn german(units: i64) -> String {
    let s = format!("{:.3}", units as f64 / 1e9);
    let s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    s.replace('.', ",")
}

/// The words of a line of `pdftotext -layout`'s output that starts with
/// `label`, after the label.
fn row<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in the report:\n{text}"));
    line[label.len()..].split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_yearly_report_states_what_the_ledger_and_the_audit_log_hold() {
    if !pdftotext_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 300, 70 + i as u64).unwrap();
    }
    let policy = |site: &SiteId| Policy {
        rules: local::demo_policy(site).rules,
        ..Policy::default()
    };
    let net = LocalNetwork::start_with(tmp.path(), &ids, policy, 10_000).unwrap();
    net.wait_for_catalogues(Duration::from_secs(60))
        .await
        .unwrap();
    tls::install_default_provider();
    let url = net.coordinator.url();
    let ask = |user: DevUser, sql: &'static str| {
        let (url, token) = (url.clone(), net.token(&user));
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/query"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "sql": sql, "loss": 0.05, "fresh": true }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.json::<serde_json::Value>().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let ada = || DevUser::new("ada", Role::Researcher, Some("hip-msc"), &[]);
    let bo = || DevUser::new("bo", Role::Researcher, Some("serum-bank"), &[]);
    let ida = || DevUser::new("ida", Role::Industry, Some("scoping"), &[]);
    ask(ada(), "SELECT sex, COUNT(*) FROM samples GROUP BY sex").await;
    ask(ada(), "SELECT COUNT(*) FROM samples WHERE sex = 'Female'").await;
    // Asked again: remembered, free.
    ask(ada(), "SELECT COUNT(*) FROM samples WHERE sex = 'Female'").await;
    ask(
        bo(),
        "SELECT sample_type, COUNT(*) FROM samples GROUP BY sample_type",
    )
    .await;
    // Two industry questions wait at DK-ODE: one approved, one rejected.
    ask(ida(), "SELECT COUNT(*) FROM samples").await;
    ask(ida(), "SELECT sex, COUNT(*) FROM samples GROUP BY sex").await;
    let (_, waiting) = crate::federation::steward_call(
        &net,
        1,
        "DK-ODE",
        reqwest::Method::GET,
        "/v1/approvals",
        None,
    )
    .await;
    let tickets: Vec<String> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ticket"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tickets.len(), 2, "{waiting}");
    for (ticket, decision) in tickets.iter().zip([
        serde_json::json!({ "decision": "approve" }),
        serde_json::json!({ "decision": "reject", "reason": "no agreement" }),
    ]) {
        let (status, body) = crate::federation::steward_call(
            &net,
            1,
            "DK-ODE",
            reqwest::Method::POST,
            &format!("/v1/approvals/{ticket}"),
            Some(decision),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // The approved question picked up: released and charged now.
    ask(ida(), "SELECT COUNT(*) FROM samples").await;

    // DK-ODE's operator writes the report, the node still serving.
    let (config, _) = &net.nodes[1];
    let config_file = tmp.path().join("dk-ode.toml");
    std::fs::write(&config_file, toml::to_string(config).unwrap()).unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    let out = tmp.path().join("reports");
    let run = Command::new(crate::cli::binary("bonebank-node"))
        .args(["report", "--config"])
        .arg(&config_file)
        .args(["--year", &year, "--language", "de", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stem = out.join(format!("privacy-report-DK-ODE-{year}"));
    let pdf = stem.with_extension("pdf");
    let html = std::fs::read_to_string(stem.with_extension("html")).unwrap();
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
    let text = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();

    // For the README: the first page as a picture.
    if let Ok(dir) = std::env::var("BONEBANK_SCREENSHOTS") {
        let made = Command::new("pdftoppm")
            .args(["-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile"])
            .arg(&pdf)
            .arg(std::path::Path::new(&dir).join("report"))
            .status()
            .unwrap();
        assert!(made.success());
    }

    // The ledger and the audit log, read here.
    let db = rusqlite::Connection::open(config.state_db()).unwrap();
    let mut by: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut total = (0, 0);
    let mut stmt = db
        .prepare(
            "SELECT user, project, units FROM ledger WHERE state = 'committed' AND measure = 'rho'",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap();
    for r in rows {
        let (user, project, units) = r.unwrap();
        let key = if user.starts_with('(') { user } else { project };
        let e = by.entry(key).or_default();
        e.0 += 1;
        e.1 += units;
        total.0 += 1;
        total.1 += units;
    }
    let catalogue = by["(site: catalogue)"];
    assert_eq!(catalogue.0, 1, "{by:?}");
    assert!(
        by.contains_key("hip-msc") && by.contains_key("scoping"),
        "{by:?}"
    );
    let expect = |label: &str, (n, units): (i64, i64)| {
        assert_eq!(
            row(&text, label),
            [n.to_string(), german(units)],
            "{label} in:\n{text}"
        );
    };
    expect("Katalogfreigaben", catalogue);
    for project in ["hip-msc", "serum-bank", "scoping"] {
        expect(&format!("Frische Fragen, Projekt {project}"), by[project]);
    }
    expect("Summe", total);
    // The (ε, δ) of the total: as the HTML says, and between ρ's own size
    // and the textbook conversion ρ + 2√(ρ ln(1/δ)) (OpenDP's is tighter).
    let rho = total.1 as f64 / 1e9;
    let delta: f64 = 1e-6;
    let sentence = text
        .split("entspricht (ε, δ) = (")
        .nth(1)
        .expect("the (ε, δ) sentence");
    let epsilon: f64 = sentence
        .split(',')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {sentence}"));
    assert!(
        epsilon > rho && epsilon < rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt() + 0.01,
        "ε {epsilon} for ρ {rho}"
    );
    assert!(text.contains("10⁻⁶"), "{text}");

    // Questions and decisions, against the audit log.
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let released = count(
        "SELECT COUNT(*) FROM audit WHERE kind = 'request' AND json_extract(detail, '$.outcome') = 'released'",
    );
    let remembered = count(
        "SELECT COUNT(*) FROM audit WHERE kind = 'request' AND json_extract(detail, '$.outcome') IN ('remembered', 'picked_up')",
    );
    assert!(released >= 4 && remembered >= 1, "{released} {remembered}");
    assert_eq!(
        row(&text, "Mit frischen Zahlen beantwortet"),
        [released.to_string()]
    );
    assert_eq!(
        row(
            &text,
            "Mit früher freigegebenen Zahlen beantwortet (kostenlos)"
        ),
        [remembered.to_string()]
    );
    assert_eq!(row(&text, "Einem Datentreuhänder vorgelegt"), ["2"]);
    // sam approved one and rejected one: approved, first of two, rejected.
    assert_eq!(row(&text, "sam"), ["1", "0", "1"]);
    // The head of the chain, as the log holds it now.
    let head: String = db
        .query_row(
            "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(text.contains(&head), "no head {head} in:\n{text}");
    let entries = count("SELECT COUNT(*) FROM audit");
    assert!(text.contains(&format!("aus {entries} Einträgen")), "{text}");
    // One dataset version, served and catalogued this year.
    let version: String = db
        .query_row("SELECT dataset_version FROM catalogues", [], |r| r.get(0))
        .unwrap();
    assert_eq!(text.matches(&version).count(), 1, "{text}");
    // The HTML says the same, in a page of its own language.
    assert!(html.starts_with("<!doctype html>\n<html lang=\"de\">"));
    for figure in [german(total.1), head.clone(), german(catalogue.1)] {
        assert!(html.contains(&figure), "{figure} not in the HTML");
    }
    // No count or data value: the report names users and projects only.
    assert!(
        !text.contains("Female") && !text.contains("SELECT"),
        "{text}"
    );
}
