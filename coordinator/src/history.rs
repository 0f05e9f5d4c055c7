//! Each researcher's past questions and the answers they got, in SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bonebank_schemas::wire::{FederatedResult, HistoryEntry};
use bonebank_service::state::GroupCommit;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Error, Result};

/// Entries returned per request.
pub const PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct History {
    db: Arc<Mutex<Connection>>,
    /// New entries, appended a group per commit.
    entries: GroupCommit<Entry>,
}

/// A site's ticket whose requester is told when it is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaiting {
    /// The history entry the question is.
    pub entry: i64,
    pub site: String,
    pub ticket: String,
    pub email: String,
    /// `en`, `de` or `da`: the app's language when the question was asked.
    pub language: String,
    /// When it was asked, RFC 3339.
    pub asked: String,
}

impl Awaiting {
    /// The day it was asked, `YYYY-MM-DD`.
    pub fn day(&self) -> &str {
        self.asked.get(..10).unwrap_or(&self.asked)
    }
}

/// A new entry.
#[derive(Debug)]
struct Entry {
    user: String,
    project: String,
    at: String,
    loss: Option<f64>,
    result: String,
}

impl History {
    pub fn open(path: &Path) -> Result<Self> {
        let mut db = bonebank_service::state::open(path)?;
        // Version 1: the history table as below (0: before versions were
        // kept, the same table). Version 2: `awaiting`, the tickets whose
        // requesters are told when they are decided.
        bonebank_service::state::migrate(
            &mut db,
            path,
            "coordinator history",
            crate::doctor::HISTORY_VERSION,
            |tx, _| {
                tx.execute_batch(
                    "CREATE TABLE IF NOT EXISTS history (
                    id INTEGER PRIMARY KEY,
                    user TEXT NOT NULL,
                    project TEXT NOT NULL,
                    at TEXT NOT NULL,
                    epsilon REAL, -- the loss asked for, in the sites' measure
                    result TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS history_user ON history (user, id);
                CREATE TABLE IF NOT EXISTS awaiting (
                    entry INTEGER NOT NULL REFERENCES history (id),
                    site TEXT NOT NULL,
                    ticket TEXT NOT NULL,
                    email TEXT NOT NULL,
                    language TEXT NOT NULL,
                    PRIMARY KEY (entry, site)
                );",
                )
            },
        )?;
        let db = Arc::new(Mutex::new(db));
        Ok(Self {
            entries: GroupCommit::new(db.clone(), |tx, e: &Entry| {
                tx.execute(
                    "INSERT INTO history (user, project, at, epsilon, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![e.user, e.project, e.at, e.loss, e.result],
                )
                .map_err(|e| e.to_string())?;
                Ok(tx.last_insert_rowid())
            }),
            db,
        })
    }

    /// Records a question and its answer, with whatever other entries are
    /// waiting, in one commit; returns the entry's id once it is on disk.
    pub async fn record(
        &self,
        user: &str,
        project: &str,
        loss: Option<f64>,
        result: &FederatedResult,
    ) -> Result<i64> {
        let json = serde_json::to_string(result).map_err(|e| Error::Internal(e.to_string()))?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.entries
            .append(Entry {
                user: user.to_owned(),
                project: project.to_owned(),
                at,
                loss,
                result: json,
            })
            .await
            .map_err(|why| Error::Internal(format!("history: {why}")))
    }

    /// Notes the tickets of `entry`'s sites that wait for a steward, so
    /// that `email` is told when each is decided (once per site).
    pub fn await_decisions(
        &self,
        entry: i64,
        email: &str,
        language: &str,
        tickets: &[(String, String)],
    ) -> Result<()> {
        let mut db = self.db.lock().expect("history lock");
        let tx = db.transaction()?;
        for (site, ticket) in tickets {
            tx.execute(
                "INSERT OR IGNORE INTO awaiting (entry, site, ticket, email, language) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![entry, site, ticket, email, language],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every ticket whose requester waits to be told, oldest first.
    pub fn awaiting(&self) -> Result<Vec<Awaiting>> {
        let db = self.db.lock().expect("history lock");
        let mut stmt = db.prepare_cached(
            "SELECT a.entry, a.site, a.ticket, a.email, a.language, h.at \
             FROM awaiting a JOIN history h ON h.id = a.entry ORDER BY a.entry, a.site",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Awaiting {
                entry: r.get(0)?,
                site: r.get(1)?,
                ticket: r.get(2)?,
                email: r.get(3)?,
                language: r.get(4)?,
                asked: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The requester of `entry` has been told about `site`'s decision.
    pub fn told(&self, entry: i64, site: &str) -> Result<()> {
        self.db.lock().expect("history lock").execute(
            "DELETE FROM awaiting WHERE entry = ?1 AND site = ?2",
            params![entry, site],
        )?;
        Ok(())
    }

    /// One of the user's entries.
    pub fn get(&self, user: &str, id: i64) -> Result<Option<(Option<f64>, FederatedResult)>> {
        let db = self.db.lock().expect("history lock");
        let row: Option<(Option<f64>, String)> = db
            .query_row(
                "SELECT epsilon, result FROM history WHERE user = ?1 AND id = ?2",
                params![user, id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(eps, json)| {
            serde_json::from_str(&json)
                .map(|r| (eps, r))
                .map_err(|e| Error::Internal(format!("history entry {id}: {e}")))
        })
        .transpose()
    }

    /// Replaces an entry's answer (after sites that were waiting answered).
    pub fn update(&self, id: i64, result: &FederatedResult) -> Result<()> {
        let json = serde_json::to_string(result).map_err(|e| Error::Internal(e.to_string()))?;
        self.db.lock().expect("history lock").execute(
            "UPDATE history SET result = ?2 WHERE id = ?1",
            params![id, json],
        )?;
        Ok(())
    }

    /// The user's latest entries, newest first.
    pub fn list(&self, user: &str) -> Result<Vec<HistoryEntry>> {
        let db = self.db.lock().expect("history lock");
        let mut stmt = db.prepare_cached(
            "SELECT id, at, epsilon, result FROM history WHERE user = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![user, PAGE as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, loss, json) = row?;
            let result: FederatedResult = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("history entry {id}: {e}")))?;
            let mut result = result;
            result.id = Some(id);
            out.push(HistoryEntry {
                id,
                at,
                query: result.query.clone(),
                loss,
                result,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of version 1 (before the awaiting tickets) opens as
    /// version 2 with its entries, a copy of it kept beside; waiting tickets
    /// are noted once per entry and site, joined with when it was asked,
    /// and gone once told.
    #[test]
    fn a_version_1_history_upgrades_and_keeps_the_tickets_to_tell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE history (id INTEGER PRIMARY KEY, user TEXT NOT NULL, project TEXT NOT NULL, \
                 at TEXT NOT NULL, epsilon REAL, result TEXT NOT NULL);
                 INSERT INTO history (user, project, at, epsilon, result) VALUES ('ingrid', 'p', '2026-12-07T14:02:00Z', NULL, '{}');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let history = History::open(&path).unwrap();
        let version: u32 = history
            .db
            .lock()
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::doctor::HISTORY_VERSION);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".before-v2-")),
            "the version 1 file is kept"
        );
        let tickets = [("DK-ODE".to_owned(), "ab".repeat(16))];
        history
            .await_decisions(1, "ingrid@x.example", "de", &tickets)
            .unwrap();
        history
            .await_decisions(1, "ingrid@x.example", "de", &tickets)
            .unwrap();
        let waiting = history.awaiting().unwrap();
        assert_eq!(waiting.len(), 1, "once per entry and site");
        assert_eq!(waiting[0].day(), "2026-12-07");
        assert_eq!(
            (waiting[0].language.as_str(), waiting[0].site.as_str()),
            ("de", "DK-ODE")
        );
        history.told(1, "DK-ODE").unwrap();
        assert!(history.awaiting().unwrap().is_empty());
    }
}
