//! The node's state in SQLite, one file, by concern: the privacy-budget
//! ledger and remembered releases ([`ledger`]), stewards' tickets
//! ([`tickets`]), and the hash-chained audit log (`crate::audit`), each
//! written in the same transaction as the change it records.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::Result;

mod catalogue;
mod ledger;
mod notices;
pub mod report;
mod tickets;

pub use catalogue::{CATALOGUE_ACCOUNT, NotYet};
pub use ledger::{
    Account, Committed, Payer, Reservation, SITE_ACCOUNT, Spent, rho_units_of_epsilon,
};
pub use tickets::{Ticket, TicketState};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user TEXT NOT NULL,
    project TEXT NOT NULL,
    units INTEGER NOT NULL CHECK (units >= 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed')),
    release_key TEXT,
    measure TEXT NOT NULL DEFAULT 'epsilon' CHECK (measure IN ('epsilon', 'rho'))
);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger (at);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    user TEXT NOT NULL,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    release_key TEXT NOT NULL,
    query TEXT NOT NULL,
    epsilon REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by TEXT,
    decided_at INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS tickets_request ON tickets (user, release_key);
CREATE TABLE IF NOT EXISTS sample_bounds (
    dataset_version TEXT PRIMARY KEY,
    bounds TEXT NOT NULL,
    units INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    key TEXT PRIMARY KEY,
    dataset_version TEXT NOT NULL,
    query TEXT NOT NULL,
    result TEXT NOT NULL,
    units INTEGER NOT NULL,
    at INTEGER NOT NULL
);
";

/// The node state database's schema version (`PRAGMA user_version`). 0:
/// before versions were kept; 1: the tables below, the ledger with its
/// `measure` column; 2: tickets with `first_approval` (the four-eyes
/// rule); 3: tickets with the requester's `purpose` and `purpose_ref`; 4:
/// `notices`, which tickets the stewards have been told about. A
/// later bonebank that changes the tables adds a version and its
/// step in [`upgrade`]; an earlier one refuses a later version.
pub const STATE_VERSION: u32 = 4;

/// Brings the tables from version `from` to [`STATE_VERSION`], in the
/// migration's transaction.
fn upgrade(tx: &rusqlite::Transaction<'_>, from: u32) -> rusqlite::Result<()> {
    // Version 0 → 1: every table as it is now (new databases start here).
    if from < 1 {
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(crate::audit::SCHEMA)?;
        tx.execute_batch(catalogue::SCHEMA)?;
        // Ledgers from before zCDP hold ε only: their rows get `epsilon`.
        let has_measure: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'measure'",
            [],
            |r| r.get(0),
        )?;
        if !has_measure {
            tx.execute_batch(
                "ALTER TABLE ledger ADD COLUMN measure TEXT NOT NULL DEFAULT 'epsilon' \
                 CHECK (measure IN ('epsilon', 'rho'))",
            )?;
        }
    }
    // Version 1 → 2: who approved first, under a four-eyes rule.
    if from < 2 {
        let has: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('tickets') WHERE name = 'first_approval'",
            [],
            |r| r.get(0),
        )?;
        if !has {
            tx.execute_batch("ALTER TABLE tickets ADD COLUMN first_approval TEXT")?;
        }
    }
    // Version 2 → 3: what the requester says a question is for.
    if from < 3 {
        for column in ["purpose", "purpose_ref"] {
            let has: bool = tx.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('tickets') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !has {
                tx.execute_batch(&format!("ALTER TABLE tickets ADD COLUMN {column} TEXT"))?;
            }
        }
    }
    // Version 3 → 4: which tickets the stewards were told about, and how.
    if from < 4 {
        tx.execute_batch(notices::SCHEMA)?;
    }
    Ok(())
}

/// The SQLite state of one node.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Audit entries appended a group per commit.
    audits: bonebank_service::state::GroupCommit<Entry>,
    /// Releases lately stored or read, by key: a release never changes
    /// once stored, so a question asked again is answered from memory.
    recent: Arc<Mutex<hashlink::LruCache<String, (String, i64)>>>,
}

/// Releases kept in memory (their JSON is a few kilobytes each).
const RECENT_RELEASES: usize = 4_096;

/// An audit entry waiting for the next group commit.
#[derive(Debug)]
struct Entry {
    kind: String,
    actor: String,
    detail: serde_json::Value,
}

impl Store {
    /// Opens (creating if needed) the state database.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = bonebank_service::state::open(path)?;
        bonebank_service::state::migrate(&mut conn, path, "node state", STATE_VERSION, upgrade)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Self {
            audits: bonebank_service::state::GroupCommit::new(conn.clone(), |tx, e: &Entry| {
                crate::audit::append(tx, &e.kind, &e.actor, &e.detail).map_err(|e| e.to_string())
            }),
            conn,
            recent: Arc::new(Mutex::new(hashlink::LruCache::new(RECENT_RELEASES))),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an audit entry on its own.
    pub fn audit(&self, kind: &str, actor: &str, detail: &serde_json::Value) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seq = crate::audit::append(&tx, kind, actor, detail)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Appends an audit entry with whatever other entries are waiting, in
    /// one transaction: under load one commit (one sync to disk) serves
    /// many requests. Returns once the entry is on disk, so nothing a caller
    /// was answered about can be lost.
    pub async fn audit_grouped(
        &self,
        kind: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<i64> {
        self.audits
            .append(Entry {
                kind: kind.to_owned(),
                actor: actor.to_owned(),
                detail,
            })
            .await
            .map_err(crate::Error::Engine)
    }

    /// The latest audit detail of a kind.
    pub fn last_audit(&self, kind: &str) -> Result<Option<serde_json::Value>> {
        crate::audit::last_detail(&self.conn(), kind)
    }

    /// Checks the audit chain.
    pub fn verify_audit(&self) -> Result<Result<crate::audit::Intact, crate::audit::Broken>> {
        crate::audit::verify(&self.conn())
    }

    /// Whether an audit entry has this hash.
    pub fn has_audit_hash(&self, hash: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM audit WHERE hash = ?1", [hash], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// A page of the audit log, newest first, and the whole log's size.
    pub fn audit_page(
        &self,
        filter: &crate::audit::Filter,
        limit: usize,
    ) -> Result<(Vec<crate::audit::Entry>, i64)> {
        crate::audit::page(&self.conn(), filter, limit)
    }

    /// Writes the audit log as JSON lines.
    pub fn export_audit(&self, out: &mut dyn std::io::Write) -> Result<i64> {
        crate::audit::export(&self.conn(), out)
    }

    /// Writes every audit entry as CSV (see [`crate::audit::export_csv`]).
    pub fn export_audit_csv(&self, out: &mut dyn std::io::Write) -> Result<i64> {
        crate::audit::export_csv(&self.conn(), out)
    }
}

pub use bonebank_service::unix_now as now;

fn since(period_days: u32) -> i64 {
    now() - i64::from(period_days) * 86_400
}
