//! A service's state database: SQLite in WAL mode, every commit on disk
//! before it is acknowledged (`synchronous = FULL`: a ledger charge or an
//! audit entry a caller was told about survives a power cut), and writers
//! that wait for each other instead of failing. Node and coordinator open
//! every state file through here, so all of them behave alike.

use std::path::Path;

use rusqlite::Connection;

/// How long a writer waits for another before giving up.
const BUSY_TIMEOUT_MS: u32 = 10_000;

/// Opens (creating it and its folder if needed) the database at `path`.
pub fn open(path: &Path) -> crate::Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(crate::Error::io(dir))?;
    }
    let fail = |e: rusqlite::Error| {
        crate::Error::Internal(format!("state database {}: {e}", path.display()))
    };
    let db = Connection::open(path).map_err(fail)?;
    db.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
    ))
    .map_err(fail)?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_file_is_durable_and_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("a/b/state.sqlite")).unwrap();
        let mode: String = db
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let busy: i64 = db
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, i64::from(BUSY_TIMEOUT_MS));
    }
}
