//! The node's state in SQLite: remembered releases and the privacy-budget
//! ledger. A query's ε is reserved in one immediate transaction that checks
//! every account, so concurrent queries can never overspend; the release and
//! the charge are committed in one transaction, so no release exists that was
//! not charged. A reservation left by a crash stays charged.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use bonebank_schemas::wire::Accounting;

use crate::{Error, Result};
use bonebank_query::policy::Policy;

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
CREATE TABLE IF NOT EXISTS releases (
    key TEXT PRIMARY KEY,
    dataset_version TEXT NOT NULL,
    query TEXT NOT NULL,
    result TEXT NOT NULL,
    units INTEGER NOT NULL,
    at INTEGER NOT NULL
);
";

/// A query waiting for (or decided by) a steward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    pub user: String,
    pub project: String,
    pub role: String,
    pub release_key: String,
    /// The checked query, canonical JSON.
    pub query: String,
    /// The loss asked for, in the site's measure (stored in the column
    /// `epsilon`, named when every site accounted in ε).
    pub loss: f64,
    /// `pending`, `approved`, `rejected`; a pending ticket past `expires` is
    /// reported as `expired`.
    pub state: String,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
}

impl Ticket {
    /// The state as of now.
    pub fn current_state(&self) -> &str {
        if self.state == "pending" && now() >= self.expires {
            "expired"
        } else {
            &self.state
        }
    }
}

/// Who pays for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payer {
    pub user: String,
    pub project: String,
}

/// Units spent in the current period by one payer's accounts and the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    pub user: i64,
    pub project: i64,
    pub site: i64,
}

/// Which account a query would overrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    User,
    Project,
    Site,
}

/// The SQLite state of one node.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the state database.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = bonebank_service::state::open(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::audit::SCHEMA)?;
        // Ledgers from before zCDP hold ε only: their rows get `epsilon`.
        let has_measure: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'measure'",
            [],
            |r| r.get(0),
        )?;
        if !has_measure {
            conn.execute_batch(
                "ALTER TABLE ledger ADD COLUMN measure TEXT NOT NULL DEFAULT 'epsilon' \
                 CHECK (measure IN ('epsilon', 'rho'))",
            )?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
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

    /// The latest audit detail of a kind.
    pub fn last_audit(&self, kind: &str) -> Result<Option<serde_json::Value>> {
        crate::audit::last_detail(&self.conn(), kind)
    }

    /// Checks the audit chain.
    pub fn verify_audit(&self) -> Result<Result<crate::audit::Intact, crate::audit::Broken>> {
        crate::audit::verify(&self.conn())
    }

    /// The caller's latest ticket for a release key, if any.
    pub fn ticket_for(&self, user: &str, release_key: &str) -> Result<Option<Ticket>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE user = ?1 AND release_key = ?2 ORDER BY created DESC, rowid DESC LIMIT 1"),
                params![user, release_key],
                ticket,
            )
            .optional()?)
    }

    pub fn ticket(&self, id: &str) -> Result<Option<Ticket>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"),
                [id],
                ticket,
            )
            .optional()?)
    }

    /// Pending tickets that have not expired, oldest first.
    pub fn pending_tickets(&self) -> Result<Vec<Ticket>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE state = 'pending' AND expires > ?1 ORDER BY created, rowid"
        ))?;
        let rows = stmt.query_map([now()], ticket)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Files a new ticket and its audit entry in one transaction.
    pub fn file_ticket(&self, t: &Ticket, audit: &serde_json::Value) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO tickets (id, created, expires, user, project, role, release_key, query, epsilon, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
            params![t.id, t.created, t.expires, t.user, t.project, t.role, t.release_key, t.query, t.loss],
        )?;
        crate::audit::append(&tx, "request", &t.user, audit)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a pending ticket decided, with its audit entry, in one
    /// transaction. False if it was no longer pending.
    pub fn decide_ticket(
        &self,
        id: &str,
        approved: bool,
        steward: &str,
        reason: Option<&str>,
        audit: &serde_json::Value,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE tickets SET state = ?2, decided_by = ?3, decided_at = ?4, reason = ?5 \
             WHERE id = ?1 AND state = 'pending' AND expires > ?4",
            params![
                id,
                if approved { "approved" } else { "rejected" },
                steward,
                now(),
                reason
            ],
        )?;
        if changed == 1 {
            crate::audit::append(&tx, "decision", steward, audit)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Whether an audit entry has this hash.
    pub fn has_audit_hash(&self, hash: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM audit WHERE hash = ?1", [hash], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Writes the audit log as JSON lines.
    pub fn export_audit(&self, out: &mut dyn std::io::Write) -> Result<i64> {
        crate::audit::export(&self.conn(), out)
    }

    /// A remembered release's result JSON and units.
    pub fn release(&self, key: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT result, units FROM releases WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// What a payer and the site spent in the rolling period ending now.
    pub fn spent(&self, payer: &Payer, policy: &Policy) -> Result<Spent> {
        spent(
            &self.conn(),
            payer,
            since(policy.budget_period_days),
            policy.accounting,
        )
    }

    /// Reserves `units` if every account stays within its budget; otherwise
    /// names the account that would overrun. Nothing is read from the data
    /// before this succeeds.
    pub fn reserve(
        &self,
        payer: &Payer,
        units: i64,
        policy: &Policy,
    ) -> Result<Result<Reservation, Account>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = spent(
            &tx,
            payer,
            since(policy.budget_period_days),
            policy.accounting,
        )?;
        let budgets = policy.budgets();
        let limit = |loss: f64| crate::privacy::units(loss);
        let over = if s.user + units > limit(budgets.user) {
            Some(Account::User)
        } else if s.project + units > limit(budgets.project) {
            Some(Account::Project)
        } else if s.site + units > limit(budgets.site) {
            Some(Account::Site)
        } else {
            None
        };
        if let Some(account) = over {
            return Ok(Err(account));
        }
        tx.execute(
            "INSERT INTO ledger (at, user, project, units, state, measure) VALUES (?1, ?2, ?3, ?4, 'reserved', ?5)",
            params![now(), payer.user, payer.project, units, measure(policy.accounting)],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(Reservation {
            store: self.clone(),
            id: Some(id),
        }))
    }
}

/// Reserved ε. Commit it with a release, or it is refunded when dropped: a
/// query that failed released nothing.
#[derive(Debug)]
pub struct Reservation {
    store: Store,
    id: Option<i64>,
}

impl Reservation {
    /// Stores the release, turns the reservation into a charge and appends
    /// `audit` (by `actor`, with the outcome added) to the audit log, in one
    /// transaction. If the same release was stored meanwhile by a concurrent
    /// query, the reservation is refunded and the stored release returned.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        mut self,
        key: &str,
        dataset_version: &str,
        query: &str,
        result: &str,
        units: i64,
        actor: &str,
        mut audit: serde_json::Value,
    ) -> Result<Committed> {
        let id = self.id.take().expect("committed once");
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO releases (key, dataset_version, query, result, units, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, dataset_version, query, result, units, now()],
        )?;
        let outcome = if inserted == 1 {
            tx.execute(
                "UPDATE ledger SET state = 'committed', release_key = ?2 WHERE id = ?1",
                params![id, key],
            )?;
            Committed::Released
        } else {
            tx.execute("DELETE FROM ledger WHERE id = ?1", [id])?;
            let existing: String =
                tx.query_row("SELECT result FROM releases WHERE key = ?1", [key], |r| {
                    r.get(0)
                })?;
            Committed::AlreadyReleased(existing)
        };
        audit["outcome"] = match outcome {
            Committed::Released => "released",
            Committed::AlreadyReleased(_) => "remembered",
        }
        .into();
        audit["charged"] = match outcome {
            Committed::Released => crate::privacy::epsilon(units),
            Committed::AlreadyReleased(_) => 0.0,
        }
        .into();
        crate::audit::append(&tx, "request", actor, &audit)?;
        tx.commit()?;
        Ok(outcome)
    }
}

/// What committing a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Released,
    /// Another query released the same numbers first; here is its result.
    AlreadyReleased(String),
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Err(e) = self.store.conn().execute(
                "DELETE FROM ledger WHERE id = ?1 AND state = 'reserved'",
                [id],
            )
        {
            tracing::error!(error = %e, reservation = id, "could not refund a reservation; it stays charged");
        }
    }
}

const TICKET_COLUMNS: &str = "id, created, expires, user, project, role, release_key, query, epsilon, state, decided_by, reason";

fn ticket(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get(0)?,
        created: r.get(1)?,
        expires: r.get(2)?,
        user: r.get(3)?,
        project: r.get(4)?,
        role: r.get(5)?,
        release_key: r.get(6)?,
        query: r.get(7)?,
        loss: r.get(8)?,
        state: r.get(9)?,
        decided_by: r.get(10)?,
        reason: r.get(11)?,
    })
}

/// The ledger's name for what a charge is measured in.
fn measure(accounting: Accounting) -> &'static str {
    match accounting {
        Accounting::Zcdp => "rho",
        Accounting::Pure => "epsilon",
    }
}

/// Units of ρ that a charge of `units` of ε amounts to: an ε-DP release is
/// ε²/2-zCDP (Bun and Steinke 2016, Proposition 1.4), rounded up.
pub fn rho_units_of_epsilon(units: i64) -> i64 {
    let per = crate::privacy::UNITS_PER_EPSILON as i128;
    let u = i128::from(units);
    ((u * u + 2 * per - 1) / (2 * per)) as i64
}

/// What was spent since `since`, in the measure of `accounting`. Under zCDP
/// charges made under pure ε count as ε²/2; under pure accounting a ρ
/// charge cannot be counted in ε, so one in the period is an error (the
/// site must keep zCDP until it is older than the period).
fn spent(conn: &Connection, payer: &Payer, since: i64, accounting: Accounting) -> Result<Spent> {
    let sum = |filter: &str, arg: Option<&str>| -> Result<i64> {
        let sql = format!("SELECT measure, units FROM ledger WHERE at > ?1 {filter}");
        let mut stmt = conn.prepare(&sql)?;
        let row = |r: &Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
        let rows: Vec<(String, i64)> = match arg {
            Some(a) => stmt
                .query_map(params![since, a], row)?
                .collect::<rusqlite::Result<_>>()?,
            None => stmt
                .query_map(params![since], row)?
                .collect::<rusqlite::Result<_>>()?,
        };
        let mut total = 0i64;
        for (m, units) in rows {
            total += match (accounting, m.as_str()) {
                (Accounting::Zcdp, "rho") | (Accounting::Pure, "epsilon") => units,
                (Accounting::Zcdp, _) => rho_units_of_epsilon(units),
                (Accounting::Pure, _) => {
                    return Err(Error::Usage(
                        "the ledger holds zCDP (ρ) charges from the current budget period, \
                         which pure ε accounting cannot count; keep accounting = \"zcdp\" \
                         until they are older than budget_period_days"
                            .into(),
                    ));
                }
            };
        }
        Ok(total)
    };
    Ok(Spent {
        user: sum("AND user = ?2", Some(&payer.user))?,
        project: sum("AND project = ?2", Some(&payer.project))?,
        site: sum("", None)?,
    })
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn since(period_days: u32) -> i64 {
    now() - i64::from(period_days) * 86_400
}
