//! What the stewards have been told: one row per ticket, kind of notice
//! (`waiting`, `expiring`) and channel (`email`, `webhook`), so that each
//! channel tells about each ticket once, and a channel that failed tries
//! again without repeating what the other already delivered.

use rusqlite::params;

use super::Store;
use crate::Result;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notices (
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    ticket TEXT NOT NULL,
    at INTEGER NOT NULL, -- Unix seconds
    PRIMARY KEY (kind, channel, ticket)
);
";

impl Store {
    /// Of `tickets`, those a channel has not told about for a kind of
    /// notice, if it may tell now: nothing when it sent that kind less
    /// than `spacing` seconds before `now`.
    pub fn due_notices(
        &self,
        kind: &str,
        channel: &str,
        tickets: &[String],
        spacing: i64,
        now: i64,
    ) -> Result<Vec<String>> {
        let conn = self.conn();
        let last: Option<i64> = conn.query_row(
            "SELECT MAX(at) FROM notices WHERE kind = ?1 AND channel = ?2",
            params![kind, channel],
            |r| r.get(0),
        )?;
        if last.is_some_and(|last| now - last < spacing) {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM notices WHERE kind = ?1 AND channel = ?2 AND ticket = ?3",
        )?;
        let mut due = Vec::new();
        for t in tickets {
            if !stmt.exists(params![kind, channel, t])? {
                due.push(t.clone());
            }
        }
        Ok(due)
    }

    /// Records that a channel told about `tickets`.
    pub fn mark_noticed(
        &self,
        kind: &str,
        channel: &str,
        tickets: &[String],
        at: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for t in tickets {
            tx.execute(
                "INSERT OR IGNORE INTO notices (kind, channel, ticket, at) VALUES (?1, ?2, ?3, ?4)",
                params![kind, channel, t, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
