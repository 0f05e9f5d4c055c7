//! A service's state database: SQLite in WAL mode, every commit on disk
//! before it is acknowledged (`synchronous = FULL`: a ledger charge or an
//! audit entry a caller was told about survives a power cut), and writers
//! that wait for each other instead of failing. Node and coordinator open
//! every state file through here, so all of them behave alike.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};

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

/// Brings a state database to schema version `current` (SQLite's
/// `user_version`), or refuses one a later bonebank wrote.
///
/// A database of an earlier version (0: from before versions were kept)
/// is first copied beside itself as `<file>.before-v<current>-<time>` with
/// SQLite's online backup, then `upgrade(tx, from)` brings it up in one
/// transaction together with the new version number: a failed upgrade
/// leaves the database as it was. A new, empty database is created the
/// same way, without the copy. `what` names the database in messages.
pub fn migrate(
    db: &mut Connection,
    path: &Path,
    what: &str,
    current: u32,
    upgrade: impl FnOnce(&Transaction<'_>, u32) -> rusqlite::Result<()>,
) -> crate::Result<()> {
    let fail =
        |e: rusqlite::Error| crate::Error::Internal(format!("{what} {}: {e}", path.display()));
    let found: u32 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if found > current {
        return Err(crate::Error::Usage(format!(
            "{} was written by a newer bonebank ({what} version {found}; this bonebank reads up to version {current}): run that bonebank or a newer one, or restore a backup this version made",
            path.display()
        )));
    }
    if found == current {
        return Ok(());
    }
    let fresh: bool = db
        .query_row("SELECT COUNT(*) = 0 FROM sqlite_master", [], |r| r.get(0))
        .map_err(fail)?;
    if !fresh {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let copy = PathBuf::from(format!("{}.before-v{current}-{stamp}", path.display()));
        crate::backup::copy_database(db, &copy).map_err(fail)?;
        tracing::info!(
            "{what} {}: version {found} kept as {} before the upgrade to version {current}",
            path.display(),
            copy.display()
        );
    }
    let tx = db.transaction().map_err(fail)?;
    upgrade(&tx, found).map_err(fail)?;
    tx.pragma_update(None, "user_version", current)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// Appends one item in a transaction; its row id, or why not.
pub type Append<I> = fn(&Transaction<'_>, &I) -> Result<i64, String>;

/// Items appended a group per transaction: each caller waits until the
/// commit that holds its item is on disk, and under load one commit (one
/// sync to disk) serves every item that arrived while the last was being
/// written. Nothing a caller was answered about can be lost.
#[derive(Debug)]
pub struct GroupCommit<I> {
    conn: Arc<Mutex<Connection>>,
    append: Append<I>,
    group: Arc<Mutex<Group<I>>>,
}

impl<I> Clone for GroupCommit<I> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            append: self.append,
            group: self.group.clone(),
        }
    }
}

/// Items waiting for the next commit.
#[derive(Debug)]
struct Group<I> {
    waiting: Vec<(I, tokio::sync::oneshot::Sender<Result<i64, String>>)>,
    /// A thread is writing groups now.
    writing: bool,
}

impl<I: Send + 'static> GroupCommit<I> {
    /// Appends with `append` through the connection `conn`.
    pub fn new(conn: Arc<Mutex<Connection>>, append: Append<I>) -> Self {
        Self {
            conn,
            append,
            group: Arc::new(Mutex::new(Group {
                waiting: Vec::new(),
                writing: false,
            })),
        }
    }

    /// Appends `item` with whatever else is waiting; returns its row id once
    /// it is on disk.
    pub async fn append(&self, item: I) -> Result<i64, String> {
        let (done, written) = tokio::sync::oneshot::channel();
        let lead = {
            let mut group = self.group.lock().unwrap_or_else(|p| p.into_inner());
            group.waiting.push((item, done));
            !std::mem::replace(&mut group.writing, true)
        };
        if lead {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.write_groups());
        }
        written
            .await
            .map_err(|_| "the group writer stopped".to_owned())?
    }

    /// Writes waiting items a group at a time until none are left.
    fn write_groups(&self) {
        loop {
            let waiting = {
                let mut group = self.group.lock().unwrap_or_else(|p| p.into_inner());
                if group.waiting.is_empty() {
                    group.writing = false;
                    return;
                }
                std::mem::take(&mut group.waiting)
            };
            let written = (|| -> Result<Vec<i64>, String> {
                let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| e.to_string())?;
                let ids = waiting
                    .iter()
                    .map(|(item, _)| (self.append)(&tx, item))
                    .collect::<Result<Vec<_>, _>>()?;
                tx.commit().map_err(|e| e.to_string())?;
                Ok(ids)
            })();
            match written {
                Ok(ids) => {
                    for ((_, done), id) in waiting.into_iter().zip(ids) {
                        let _ = done.send(Ok(id));
                    }
                }
                Err(why) => {
                    for (_, done) in waiting {
                        let _ = done.send(Err(why.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_items_are_each_on_disk_once_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let db = open(&path).unwrap();
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            .unwrap();
        let groups = GroupCommit::new(Arc::new(Mutex::new(db)), |tx, n: &i64| {
            tx.execute("INSERT INTO t (n) VALUES (?1)", [n])
                .map_err(|e| e.to_string())?;
            Ok(tx.last_insert_rowid())
        });
        let tasks: Vec<_> = (0..200i64)
            .map(|n| {
                let groups = groups.clone();
                tokio::spawn(async move { (n, groups.append(n).await.unwrap()) })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            let (n, id) = t.await.unwrap();
            // Answered: it is in the database, read through another connection.
            let other = open(&path).unwrap();
            let stored: i64 = other
                .query_row("SELECT n FROM t WHERE id = ?1", [id], |r| r.get(0))
                .unwrap();
            assert_eq!(stored, n);
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200, "one row per item");
        // A failing append fails its whole group, and says why.
        let failing = GroupCommit::new(Arc::new(Mutex::new(open(&path).unwrap())), |tx, _: &()| {
            tx.execute("INSERT INTO missing VALUES (1)", [])
                .map_err(|e| e.to_string())?;
            Ok(0)
        });
        let why = failing.append(()).await.unwrap_err();
        assert!(why.contains("missing"), "{why}");
    }

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
