//! The audit log: what goes in, that it holds no data, and that `verify`
//! names the first entry that was changed, removed or reordered.

use std::sync::Arc;

use bonebank_node::privacy::FixedOffset;
use bonebank_schemas::Role;
use rusqlite::Connection;

use crate::common::{TestSite, caller, pure, sql};

/// A site whose audit log holds a policy, a dataset, and requests with every
/// kind of outcome.
async fn site_with_history() -> TestSite {
    let mut policy = pure();
    policy.budget.user = 0.3;
    let site = TestSite::new("DK-ODE", 40, policy);
    let service = site.service(Arc::new(FixedOffset(0)));
    let ana = caller("ana", "p1", Role::Researcher);
    let q = "SELECT sex, COUNT(*) FROM samples GROUP BY sex";
    service.run(&ana, &sql(q, 0.2)).await.unwrap(); // released
    service.run(&ana, &sql(q, 0.2)).await.unwrap(); // remembered
    assert!(
        service
            .run(&ana, &sql("SELECT * FROM samples", 0.2))
            .await
            .is_err()
    );
    assert!(
        service
            .run(&ana, &sql("SELECT COUNT(*) FROM samples", 0.2))
            .await
            .is_err(),
        "over ana's budget"
    );
    site
}

fn db(site: &TestSite) -> Connection {
    Connection::open(site.config.state_db()).unwrap()
}

fn verify(site: &TestSite) -> Result<bonebank_node::audit::Intact, bonebank_node::audit::Broken> {
    bonebank_node::audit::verify(&db(site)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_its_outcome_is_logged_without_data() {
    let site = site_with_history().await;
    let intact = verify(&site).unwrap();
    let mut out = Vec::new();
    let n = bonebank_node::audit::export(&db(&site), &mut out).unwrap();
    assert_eq!(n, intact.entries);
    let entries: Vec<bonebank_node::audit::Entry> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.kind.as_str(), e.detail["outcome"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("policy", ""),
            ("dataset", ""),
            ("request", "released"),
            ("request", "remembered"),
            ("request", "query_refused"),
            ("request", "budget_exhausted"),
        ]
    );
    let released = &entries[2].detail;
    assert_eq!(released["user"], "ana");
    assert_eq!(released["project"], "p1");
    assert_eq!(released["charged"], 0.2);
    assert!(released["dataset_version"].as_str().unwrap().len() > 10);
    assert!(
        released["query"]
            .as_str()
            .unwrap()
            .starts_with("SELECT sex, COUNT(*)")
    );
    assert_eq!(entries[3].detail["charged"], serde_json::Value::Null);
    assert_eq!(entries[4].detail["sql"], "SELECT * FROM samples");
    // Only these fields, so no count or row value can slip in.
    let allowed = [
        "user",
        "project",
        "role",
        "loss",
        "query",
        "sql",
        "dataset_version",
        "release",
        "outcome",
        "reason",
        "charged",
    ];
    for e in entries.iter().filter(|e| e.kind == "request") {
        for key in e.detail.as_object().unwrap().keys() {
            assert!(allowed.contains(&key.as_str()), "{key} in {}", e.detail);
        }
    }
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_is_found() {
    let site = site_with_history().await;
    db(&site)
        .execute(
            "UPDATE audit SET detail = replace(detail, '\"ana\"', '\"anb\"') WHERE seq = 3",
            [],
        )
        .unwrap();
    let broken = verify(&site).unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    assert!(broken.why.contains("changed"), "{broken}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_hash_is_found() {
    let site = site_with_history().await;
    db(&site)
        .execute(
            // Flip the first hex digit so the stored hash always differs.
            "UPDATE audit SET hash = (CASE substr(hash, 1, 1) WHEN '0' THEN '1' ELSE '0' END)
                 || substr(hash, 2) WHERE seq = 4",
            [],
        )
        .unwrap();
    assert_eq!(verify(&site).unwrap_err().seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_entry_is_found() {
    let site = site_with_history().await;
    db(&site)
        .execute("DELETE FROM audit WHERE seq = 2", [])
        .unwrap();
    let broken = verify(&site).unwrap_err();
    assert_eq!(broken.seq, 2, "{broken}");
    assert!(broken.why.contains("missing"), "{broken}");

    // Renumbering to hide the gap does not help either.
    let site = site_with_history().await;
    let conn = db(&site);
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    conn.execute("UPDATE audit SET seq = seq - 1 WHERE seq > 2", [])
        .unwrap();
    assert_eq!(verify(&site).unwrap_err().seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_entries_are_found() {
    let site = site_with_history().await;
    let conn = db(&site);
    conn.execute_batch(
        "UPDATE audit SET seq = -3 WHERE seq = 3;
         UPDATE audit SET seq = 3 WHERE seq = 4;
         UPDATE audit SET seq = 4 WHERE seq = -3;",
    )
    .unwrap();
    let broken = verify(&site).unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_are_recorded_once_each() {
    let mut site = TestSite::new("DE-LUE", 10, pure());
    let _ = site.service(Arc::new(FixedOffset(0)));
    let _ = site.service(Arc::new(FixedOffset(0))); // restart, same policy
    site.config.policy.max_dimensions = 1;
    let _ = site.service(Arc::new(FixedOffset(0))); // changed
    let policies: i64 = db(&site)
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE kind = 'policy'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(policies, 2);
    let last = bonebank_node::audit::last_detail(&db(&site), "policy")
        .unwrap()
        .unwrap();
    assert_eq!(last["policy"]["max_dimensions"], 1);
    verify(&site).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_command_names_the_entry_and_fails() {
    let site = site_with_history().await;
    let config = site.write_config("");
    let run = |args: &[&str]| crate::common::node_command(&config, args);
    let ok = run(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("audit log intact: 6 entries, head "),
        "{stdout}"
    );
    let head = stdout.trim().rsplit(' ').next().unwrap().to_owned();

    let export = run(&["audit", "export"]);
    assert_eq!(String::from_utf8_lossy(&export.stdout).lines().count(), 6);

    // Removing the last entry keeps the chain whole; the recorded head catches it.
    db(&site)
        .execute("DELETE FROM audit WHERE seq = 6", [])
        .unwrap();
    assert!(run(&["audit", "verify"]).status.success());
    let tail = run(&["audit", "verify", "--head", &head]);
    assert!(!tail.status.success());
    assert!(String::from_utf8_lossy(&tail.stderr).contains("entries after it were removed"));

    db(&site)
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let bad = run(&["audit", "verify"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("audit log broken at entry 3"), "{err}");
}

#[test]
fn an_import_through_the_node_config_is_logged() {
    let site = TestSite::new("DK-ODE", 10, pure());
    let export = site.tmp.path().join("export");
    bonebank_node::generate::into_csv(&crate::common::spec("DK-ODE", 12, 9), &export).unwrap();
    let config = site.write_config("");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"));
    cmd.args(["import", "--config"]).arg(&config);
    for t in ["donors", "samples", "diagnoses"] {
        cmd.args(["--table", t])
            .arg(export.join(format!("{t}.csv")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = bonebank_node::audit::last_detail(&db(&site), "import")
        .unwrap()
        .unwrap();
    assert_eq!(
        last["version"].as_str(),
        Some(site.dir().current().unwrap().unwrap().id.as_str())
    );
    assert!(
        last["files"]["samples"]
            .as_str()
            .unwrap()
            .ends_with("samples.csv")
    );
    verify(&site).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_keeps_the_chain_and_is_checked_offline() {
    let site = site_with_history().await;
    let config = site.write_config("");
    let run = |args: &[&str]| crate::common::node_command(&config, args);
    let intact = verify(&site).unwrap();
    let dir = site.tmp.path();
    for name in ["audit.jsonl", "audit.csv"] {
        let file = dir.join(name);
        let out = run(&["audit", "export", "--out", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Offline: no config, no node, only the file.
        let checked = std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
            .args([
                "audit",
                "verify-export",
                file.to_str().unwrap(),
                "--head",
                &intact.head,
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(
            checked.status.success(),
            "{name}: {said}{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert_eq!(
            said.trim(),
            format!(
                "export intact: {} entries, head {}",
                intact.entries, intact.head
            ),
            "{name}"
        );

        // An actor changed in the file: found, and named by its entry.
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text
            .lines()
            .nth(if name.ends_with(".csv") { 3 } else { 2 })
            .unwrap();
        let mut changed = text.replacen(line, &line.replacen("ana", "mallory", 1), 1);
        if changed == text {
            changed = text.replacen(line, &line.replacen("request", "requesx", 1), 1);
        }
        assert_ne!(changed, text, "{name}: something to change in {line}");
        std::fs::write(&file, changed).unwrap();
        let bad = bonebank_node::audit::verify_export(&file, None)
            .unwrap()
            .unwrap_err();
        assert_eq!(bad.seq, 3, "{name}: {bad}");
        // A missing entry in the middle.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(if name.ends_with(".csv") { 2 } else { 1 });
        std::fs::write(&file, lines.join("\n")).unwrap();
        let gap = bonebank_node::audit::verify_export(&file, None)
            .unwrap()
            .unwrap_err();
        assert!(gap.why.contains("entry 2 is missing"), "{name}: {gap}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_committed_in_groups_each_land_once_on_an_intact_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let store = bonebank_node::store::Store::open(&tmp.path().join("state.sqlite")).unwrap();
    let asks = (0..60).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .audit_grouped(
                    "request",
                    &format!("user{i}"),
                    serde_json::json!({ "n": i }),
                )
                .await
                .unwrap()
        })
    });
    let mut seqs: Vec<i64> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<_>>(),
        "each entry once, in one chain"
    );
    let db = Connection::open(tmp.path().join("state.sqlite")).unwrap();
    let intact = bonebank_node::audit::verify(&db).unwrap().unwrap();
    assert_eq!(intact.entries, 60);
    // Each caller's entry holds what that caller asked to write.
    let wrong: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE actor <> 'user' || json_extract(detail, '$.n')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(wrong, 0);
}
