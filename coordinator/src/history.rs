//! Each researcher's past questions and the answers they got, in SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bonebank_schemas::wire::{FederatedResult, HistoryEntry};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Error, Result};

/// Entries returned per request.
pub const PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct History {
    db: Arc<Mutex<Connection>>,
}

impl History {
    pub fn open(path: &Path) -> Result<Self> {
        let db = bonebank_service::state::open(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS history (
                id INTEGER PRIMARY KEY,
                user TEXT NOT NULL,
                project TEXT NOT NULL,
                at TEXT NOT NULL,
                epsilon REAL, -- the loss asked for, in the sites' measure
                result TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS history_user ON history (user, id);",
        )?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Records a question and its answer; returns the entry's id.
    pub fn record(
        &self,
        user: &str,
        project: &str,
        loss: Option<f64>,
        result: &FederatedResult,
    ) -> Result<i64> {
        let json = serde_json::to_string(result).map_err(|e| Error::Internal(e.to_string()))?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let db = self.db.lock().expect("history lock");
        db.execute(
            "INSERT INTO history (user, project, at, epsilon, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, project, at, loss, json],
        )?;
        Ok(db.last_insert_rowid())
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
