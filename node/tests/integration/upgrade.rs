//! State written by an earlier bonebank is migrated on start, after a copy
//! of it is kept; state written by a later one is refused. The fixture
//! `tests/fixtures/state-v0.sqlite` is a node's state database as the
//! bonebank of December 2026 wrote it (no schema version yet): a site's
//! ledger, releases, a steward's ticket and its decision, and the audit
//! log. It was written by
//! `BONEBANK_WRITE_STATE_FIXTURE=PATH cargo test -p bonebank-node --test integration upgrade::fixture -- --ignored`
//! on that version; no later change may strand it.

use std::path::Path;
use std::sync::Arc;

use bonebank_node::privacy::FixedOffset;
use bonebank_schemas::Role;

use crate::common::{approve, caller, sql, steward};

/// Writes a fixture where `BONEBANK_WRITE_STATE_FIXTURE` says: a tool
/// for the next state version, not a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a state fixture: BONEBANK_WRITE_STATE_FIXTURE=PATH cargo test -p bonebank-node --test integration upgrade::fixture -- --ignored"]
async fn fixture() {
    let out = std::env::var_os("BONEBANK_WRITE_STATE_FIXTURE")
        .expect("BONEBANK_WRITE_STATE_FIXTURE=PATH");
    let site = crate::approval::approval_site();
    let service = site.service(Arc::new(FixedOffset(0)));
    let ana = caller("ana", "p1", Role::Researcher);
    let ida = caller("ida", "scoping", Role::Industry);
    for q in [
        "SELECT sex, COUNT(*) FROM samples GROUP BY sex",
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling >= 50",
    ] {
        service.run(&ana, &sql(q, 0.2)).await.unwrap();
    }
    let waiting = service
        .run(
            &ida,
            &sql(
                "SELECT sample_type, COUNT(*) FROM samples GROUP BY sample_type",
                0.2,
            ),
        )
        .await;
    let ticket = match waiting {
        Err(bonebank_node::Error::Pending { ticket, .. }) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    };
    service
        .decide(&steward("DK-ODE"), &ticket, &approve())
        .await
        .unwrap();
    drop(service);
    let conn = rusqlite::Connection::open(site.config.state_db()).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    conn.execute("VACUUM INTO ?1", [out.to_string_lossy()])
        .unwrap();
}

/// What a state database holds, read without changing it.
fn contents(db: &Path) -> (u32, i64, i64, i64, String) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let count = |t: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let head = bonebank_node::audit::verify(&conn).unwrap().unwrap().head;
    (
        version,
        count("ledger"),
        count("releases"),
        count("tickets"),
        head,
    )
}

#[test]
fn todays_state_is_migrated_after_a_copy_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("node.sqlite");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v0.sqlite");
    std::fs::copy(&fixture, &db).unwrap();
    let (version, ledger, releases, tickets, head) = contents(&db);
    assert_eq!(version, 0);
    assert!(
        ledger >= 3 && releases >= 3 && tickets == 1,
        "{ledger} {releases} {tickets}"
    );

    let store = bonebank_node::store::Store::open(&db).unwrap();
    drop(store);
    let after = contents(&db);
    assert_eq!(
        after,
        (
            bonebank_node::store::STATE_VERSION,
            ledger,
            releases,
            tickets,
            head.clone()
        )
    );
    // The state as it was, kept beside it, unchanged.
    let kept: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!(
                    "node.sqlite.before-v{}-",
                    bonebank_node::store::STATE_VERSION
                ))
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(contents(&kept[0]), (0, ledger, releases, tickets, head));
    // Opened again: nothing more to do, no second copy.
    drop(bonebank_node::store::Store::open(&db).unwrap());
    let copies = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".before-")
        })
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn state_from_a_later_bonebank_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("node.sqlite");
    drop(bonebank_node::store::Store::open(&db).unwrap());
    let later = bonebank_node::store::STATE_VERSION + 1;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", later).unwrap();
    }
    let Err(e) = bonebank_node::store::Store::open(&db) else {
        panic!("a later version was opened");
    };
    let e = e.to_string();
    assert!(
        e.contains("written by a newer bonebank") && e.contains(&format!("version {later}")),
        "{e}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, later);
}
