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
        // kept, the same table).
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
                CREATE INDEX IF NOT EXISTS history_user ON history (user, id);",
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
