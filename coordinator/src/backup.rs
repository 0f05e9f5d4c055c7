//! The coordinator's backup and restore: its query history (who asked
//! what, and the answers, which look-again and the Negotiator hand-off
//! read), copied with SQLite's online backup while it serves, with a
//! checksum list. Browser sessions are not backed up: a restored
//! coordinator asks everyone to sign in again.

use std::path::{Path, PathBuf};

use bonebank_service::backup::{self as frame, Writer};

use crate::config::CoordinatorConfig;
use crate::{Error, Result};

const FORMAT: u32 = 1;
const KIND: &str = "bonebank-coordinator";
const HISTORY: &str = "state/coordinator.sqlite";

/// The lock a serving coordinator holds on its state directory.
pub fn hold(config: &CoordinatorConfig) -> Result<std::fs::File> {
    Ok(frame::hold(&config.state_dir, "coordinator.lock")?)
}

/// Backs the coordinator's history up to `to` (a new folder) while it runs.
pub fn backup(config: &CoordinatorConfig, to: &Path) -> Result<(PathBuf, i64)> {
    backup_history(&config.history_db(), to)
}

fn backup_history(history: &Path, to: &Path) -> Result<(PathBuf, i64)> {
    let writer = Writer::begin(to)?;
    writer.database(history, HISTORY)?;
    let entries = entries(&writer.path(HISTORY))?;
    let about = serde_json::json!({
        "format": FORMAT,
        "kind": KIND,
        "bonebank": env!("CARGO_PKG_VERSION"),
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "history_entries": entries,
    });
    Ok((writer.finish(&about)?, entries))
}

/// Restores the history from a backup, with the coordinator stopped;
/// refused unless the checksums verify. `replace` puts the current history
/// aside (as `.replaced-<time>`) rather than refuse.
pub fn restore(config: &CoordinatorConfig, from: &Path, replace: bool) -> Result<i64> {
    restore_history(&config.state_dir, &config.history_db(), from, replace)
}

fn restore_history(state_dir: &Path, target: &Path, from: &Path, replace: bool) -> Result<i64> {
    frame::verify(from)?;
    let about = frame::about(from)?;
    if about["kind"] != KIND || about["format"].as_u64() != Some(u64::from(FORMAT)) {
        return Err(Error::Usage(format!(
            "{} is not a backup of a bonebank coordinator this version reads",
            from.display()
        )));
    }
    let entries = entries(&from.join(HISTORY))?;
    if target.exists() {
        if !replace {
            return Err(Error::Usage(format!(
                "the coordinator has a history at {} already; stop it and add --replace to put it aside",
                target.display()
            )));
        }
        let _held = frame::hold(state_dir, "coordinator.lock").map_err(|_| {
            Error::Usage(format!(
                "{} is in use: stop the coordinator before restoring",
                target.display()
            ))
        })?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        frame::put_aside(target, &stamp)?;
    }
    frame::restore_file(&from.join(HISTORY), target)?;
    Ok(entries)
}

fn entries(db: &Path) -> Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_backed_up_and_restored_and_damage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let db = state.join("coordinator.sqlite");
        drop(crate::history::History::open(&db).unwrap());
        let conn = rusqlite::Connection::open(&db).unwrap();
        for i in 0..3 {
            conn.execute(
                "INSERT INTO history (user, project, at, epsilon, result) VALUES ('alice', 'p', ?1, NULL, '{}')",
                [format!("2026-12-07T10:0{i}:00Z")],
            )
            .unwrap();
        }
        let to = tmp.path().join("backup");
        let (dir, n) = backup_history(&db, &to).unwrap();
        assert_eq!((dir.as_path(), n), (to.as_path(), 3));

        // Restored on a new machine.
        let other = tmp.path().join("other");
        let target = other.join("coordinator.sqlite");
        assert_eq!(restore_history(&other, &target, &to, false).unwrap(), 3);
        // Over a history: only with --replace, and not while one serves.
        assert!(
            restore_history(&other, &target, &to, false)
                .unwrap_err()
                .to_string()
                .contains("--replace")
        );
        let serving = frame::hold(&other, "coordinator.lock").unwrap();
        assert!(
            restore_history(&other, &target, &to, true)
                .unwrap_err()
                .to_string()
                .contains("stop the coordinator")
        );
        drop(serving);
        assert_eq!(restore_history(&other, &target, &to, true).unwrap(), 3);
        // A damaged backup is refused before anything is written.
        std::fs::write(to.join("backup.json"), "{}").unwrap();
        let e = restore_history(&other, &target, &to, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum"), "{e}");
    }
}
