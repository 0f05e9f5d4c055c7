//! Backup and restore: a backup taken while the node answers fresh
//! questions restores to a node whose ledger, remembered releases and audit
//! chain verify and that answers a remembered question exactly as before; a
//! damaged backup, a broken audit chain, another site's backup and a node
//! that still has state are refused; a backup killed midway leaves the
//! node and the earlier backup as they were.

use std::path::Path;
use std::sync::Arc;

use bonebank_node::backup;
use bonebank_node::limits::WorkLimits;
use bonebank_node::privacy::OpenDpNoise;
use bonebank_query::policy::{Budgets, Policy};
use bonebank_schemas::Role;
use rusqlite::Connection;

use crate::common::{TestSite, caller, node_command, pure, sql};

fn site(name: &str) -> TestSite {
    let mut site = TestSite::new(
        name,
        300,
        Policy {
            budget: Budgets {
                user: 50.0,
                project: 50.0,
                site: 100.0,
            },
            ..pure()
        },
    );
    site.config.limits = WorkLimits::unthrottled();
    site
}

fn question(k: usize) -> String {
    format!("SELECT sex, COUNT(*) FROM samples WHERE age_at_sampling >= {k} GROUP BY sex")
}

/// The same site's directories, empty, elsewhere: where a lost node is
/// rebuilt.
fn elsewhere(site: &TestSite) -> (tempfile::TempDir, bonebank_node::config::NodeConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = site.config.clone();
    config.data_dir = tmp.path().join("data");
    config.state_dir = tmp.path().join("state");
    (tmp, config)
}

/// Every release has its committed charge: the ledger and the releases
/// agree.
fn ledger_matches_releases(db: &Path) {
    let conn = Connection::open(db).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM releases r WHERE NOT EXISTS \
             (SELECT 1 FROM ledger l WHERE l.release_key = r.key AND l.state = 'committed')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "a release without its charge");
    // A question in flight when the backup was taken holds a reservation
    // in it. Its answer never left (a release commits before it is sent),
    // and the reservation stays counted as spent until it ages out of the
    // period: the restored node errs on the donors' side.
    let reserved: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM ledger WHERE state = 'reserved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reserved <= 1,
        "{reserved} questions in flight from one asker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_to_a_node_that_answers_as_before() {
    let site = site("DE-LUE");
    let service = Arc::new(site.service(Arc::new(OpenDpNoise)));
    let ana = caller("ana", "p1", Role::Researcher);
    // Asked before any backup: these are in every backup.
    let mut before = Vec::new();
    for k in 0..5 {
        before.push(service.run(&ana, &sql(&question(k), 0.05)).await.unwrap());
    }
    // Fresh questions keep coming while three backups are taken.
    let load = {
        let (service, ana) = (service.clone(), ana.clone());
        tokio::spawn(async move {
            for k in 5..65 {
                let r = service.run(&ana, &sql(&question(k), 0.05)).await.unwrap();
                assert!(!r.remembered);
            }
        })
    };
    let backups = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    for i in 0..3 {
        let (config, to) = (site.config.clone(), backups.path().join(format!("b{i}")));
        made.push(
            tokio::task::spawn_blocking(move || backup::backup(&config, &to))
                .await
                .unwrap()
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    load.await.unwrap();
    let last = made.last().unwrap();
    assert!(last.releases >= 5, "{} releases", last.releases);
    assert!(last.audit.entries > 5);
    assert_eq!(
        last.dataset_version.as_deref(),
        site.dir().current().unwrap().map(|v| v.id).as_deref()
    );
    // The files check out offline too (`sha256sum -c SHA256SUMS`).
    let listed = bonebank_service::backup::verify(&last.dir).unwrap();
    assert!(
        listed.iter().any(|f| f.starts_with("data/tables/samples-")),
        "{listed:?}"
    );

    // A new machine: nothing but the backup.
    let (_tmp, config) = elsewhere(&site);
    let restored = backup::restore(&config, &last.dir, false).unwrap();
    assert_eq!(restored.audit.head, last.audit.head);
    assert_eq!(restored.releases, last.releases);
    let db = config.state_db();
    let conn = Connection::open(&db).unwrap();
    let intact = bonebank_node::audit::verify(&conn).unwrap().unwrap();
    assert_eq!(intact.head, last.audit.head);
    drop(conn);
    ledger_matches_releases(&db);

    // A remembered question is answered exactly as before, and free.
    let node = bonebank_node::server::state_with_noise(&config, Arc::new(OpenDpNoise))
        .unwrap()
        .service;
    let spent = node.budget(&ana).await.unwrap().user.spent;
    assert!(spent >= 5.0 * 0.05 - 1e-9, "{spent}");
    for (k, first) in before.iter().enumerate() {
        let again = node.run(&ana, &sql(&question(k), 0.05)).await.unwrap();
        assert!(again.remembered, "question {k}");
        assert_eq!(
            again.rows, first.rows,
            "question {k}: other numbers after the restore"
        );
        assert_eq!(again.dataset_version, first.dataset_version);
    }
    assert_eq!(node.budget(&ana).await.unwrap().user.spent, spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_what_does_not_verify() {
    let site = site("DK-ODE");
    let service = site.service(Arc::new(OpenDpNoise));
    let ana = caller("ana", "p1", Role::Researcher);
    service.run(&ana, &sql(&question(0), 0.05)).await.unwrap();
    let backups = tempfile::tempdir().unwrap();
    let good = backups.path().join("good");
    backup::backup(&site.config, &good).unwrap();
    let copy = |name: &str| {
        let to = backups.path().join(name);
        copy_dir(&good, &to);
        to
    };

    // A byte changed in the database: its checksum fails.
    let damaged = copy("damaged");
    let db = damaged.join("state/node.sqlite");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&db, bytes).unwrap();
    let (_tmp, config) = elsewhere(&site);
    let e = backup::restore(&config, &damaged, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("state/node.sqlite") && e.contains("checksum"),
        "{e}"
    );

    // An audit entry rewritten and the checksums made to match: the chain
    // does not verify.
    let rewritten = copy("rewritten");
    {
        let conn = Connection::open(rewritten.join("state/node.sqlite")).unwrap();
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1", [])
            .unwrap();
    }
    rewrite_sums(&rewritten);
    let e = backup::restore(&config, &rewritten, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("audit log broken at entry 1"), "{e}");

    // Another site's backup.
    let mut other = config.clone();
    other.site_id = bonebank_schemas::SiteId::parse("DE-LUE").unwrap();
    let e = backup::restore(&other, &good, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a backup of DK-ODE, not of DE-LUE"), "{e}");
    // Nothing was written by any refusal.
    assert!(!config.state_db().exists());

    // The node itself still has state: only --replace puts it aside, and
    // not while a node serves from it.
    let e = backup::restore(&site.config, &good, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--replace"), "{e}");
    let serving = backup::hold(&site.config).unwrap();
    let e = backup::restore(&site.config, &good, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stop the node"), "{e}");
    drop(serving);
    drop(service);
    backup::restore(&site.config, &good, true).unwrap();
    let aside: Vec<_> = std::fs::read_dir(&site.config.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".replaced-"))
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("node.sqlite.replaced-")),
        "{aside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_midway_leaves_the_node_and_the_last_backup_intact() {
    let site = site("DK-NAE");
    let service = site.service(Arc::new(OpenDpNoise));
    let ana = caller("ana", "p1", Role::Researcher);
    service.run(&ana, &sql(&question(0), 0.05)).await.unwrap();
    let config = site.write_config("");
    let backups = site.tmp.path().join("backups");
    let out = node_command(
        &config,
        &["backup", "--to", backups.join("first").to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = bonebank_service::backup::verify(&backups.join("first")).unwrap();
    // Killed at a different moment each time (bounded: 12 tries).
    for (i, delay) in (0..12u64).map(|i| (i, i * 7)).collect::<Vec<_>>() {
        let target = backups.join(format!("try-{i}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
            .args(["backup", "--to", target.to_str().unwrap(), "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Either the whole backup is there and verifies, or none is.
        if target.exists() {
            bonebank_service::backup::verify(&target).unwrap();
        }
    }
    // The earlier backup and the node's own state are as they were.
    assert_eq!(
        bonebank_service::backup::verify(&backups.join("first")).unwrap(),
        first
    );
    let conn = Connection::open(site.config.state_db()).unwrap();
    bonebank_node::audit::verify(&conn).unwrap().unwrap();
    // A hidden leftover of a killed backup is never taken for a backup.
    for entry in std::fs::read_dir(&backups).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "first" || name.starts_with("try-") || name.starts_with('.'),
            "{name}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Writes the checksum list anew, as someone covering their tracks would.
fn rewrite_sums(dir: &Path) {
    let sums = dir.join("SHA256SUMS");
    let text = std::fs::read_to_string(&sums).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let (_, name) = line.split_once("  ").unwrap();
        let sum = bonebank_service::backup::sha256(&dir.join(name)).unwrap();
        out.push_str(&format!("{sum}  {name}\n"));
    }
    std::fs::write(sums, out).unwrap();
}
