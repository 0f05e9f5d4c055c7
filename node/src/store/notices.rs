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
    /// The tickets a channel has told about for a kind of notice.
    pub fn noticed(&self, kind: &str, channel: &str) -> Result<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT ticket FROM notices WHERE kind = ?1 AND channel = ?2")?;
        let rows = stmt.query_map(params![kind, channel], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When a channel last sent a kind of notice (Unix seconds).
    pub fn last_notice(&self, kind: &str, channel: &str) -> Result<Option<i64>> {
        Ok(self.conn().query_row(
            "SELECT MAX(at) FROM notices WHERE kind = ?1 AND channel = ?2",
            params![kind, channel],
            |r| r.get(0),
        )?)
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
