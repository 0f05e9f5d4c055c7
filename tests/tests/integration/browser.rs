//! The researcher's app and the stewards' pages in a real Chromium: a
//! network of three demo sites on loopback, driven by
//! `tests/browser/run.mjs` (playwright-core, Debian's chromium) as people
//! use it. Without Chromium or the npm packages the test says NOT RUN,
//! unless `BONEBANK_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a
//! failure. `BONEBANK_SCREENSHOTS=DIR` keeps the README's screenshots
//! (taken with `BONEBANK_E2E_DONORS=20000`, the demo's size).

use std::path::{Path, PathBuf};
use std::process::Command;

use bonebank_dev::local::{self, LocalNetwork};

fn browser_dir() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("BONEBANK_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the browser tests can run here; says why not where they cannot.
fn ready(test: &str) -> bool {
    let required = std::env::var("BONEBANK_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists();
    let why = if !node {
        Some("Node.js is not installed")
    } else if !playwright {
        Some("its npm packages are not installed (npm ci --prefix tests/browser)")
    } else if !chromium().exists() {
        Some("Chromium is not installed (Debian: apt-get install chromium)")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            !required,
            "{test}: the browser tests are required here, but {why}"
        );
        // Straight to stderr, so that the harness does not hide it.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: {test} needs a browser, and {why}. scripts/test installs the npm packages; .ci/run installs Chromium and requires these tests."
        );
        return false;
    }
    true
}

/// Runs one phase of the browser script against the network; its output
/// is shown, and the test fails with it.
async fn run_phase(phase: &str, config: &serde_json::Value) {
    let (phase, config) = (phase.to_owned(), config.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("run.mjs")
            .arg(&phase)
            .current_dir(browser_dir())
            .env("BONEBANK_E2E", config)
            .output()
            .expect("node starts")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(output.status.success(), "the browser run failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn researchers_and_stewards_use_their_pages_in_a_real_browser() {
    if !ready("researchers_and_stewards_use_their_pages_in_a_real_browser") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sites = local::demo_sites();
    // Small sites by default; the README's screenshots use the demo's size.
    let donors = std::env::var("BONEBANK_E2E_DONORS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(2_000);
    for (i, site) in sites.iter().enumerate() {
        local::generate_site(tmp.path(), site, donors, 1 + i as u64).unwrap();
    }
    let net = LocalNetwork::start_with(tmp.path(), &sites, local::demo_policy, 10_000).unwrap();
    // The app's questions find the sites' catalogues, as a running
    // network's would.
    net.wait_for_catalogues(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let stewards: serde_json::Map<String, serde_json::Value> = net
        .nodes
        .iter()
        .map(|(config, node)| {
            let pages = node
                .steward_pages
                .as_ref()
                .expect("the demo serves steward pages");
            (
                config.site_id.to_string(),
                format!("{}/", pages.url()).into(),
            )
        })
        .collect();
    let config = serde_json::json!({
        "coordinator": format!("{}/", net.coordinator.url()),
        "stewards": stewards,
        "chromium": chromium(),
        // A page of another origin on the same host, without bonebank's
        // content security policy: where a forged form comes from.
        "forger": net.idp.as_ref().expect("the development provider").issuer(),
        // A relative folder is taken from the repository's root, where the
        // README's command is run.
        "screenshots": std::env::var_os("BONEBANK_SCREENSHOTS").map(|dir| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir)
                .display()
                .to_string()
        }),
    });
    run_phase("main", &config).await;

    // Someone with access to DK-ODE's disk edits a request in its audit log.
    let odense = net
        .nodes
        .iter()
        .find(|(c, _)| c.site_id.as_str() == "DK-ODE")
        .unwrap();
    let db = rusqlite::Connection::open(odense.0.state_db()).unwrap();
    let changed = db
        .execute(
            "UPDATE audit SET detail = replace(detail, 'ingrid', 'mallory') \
             WHERE seq = (SELECT MIN(seq) FROM audit WHERE actor = 'ingrid')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1, "ingrid's request is in DK-ODE's log");
    run_phase("tampered", &config).await;
}
