//! The catalogues a node has measured, one per dataset version, each
//! charged once. At most `versions_per_year` are measured in any 365 days;
//! the charge is booked in the ledger to the catalogue's own account, which
//! the rolling budgets of fresh questions leave out (the catalogues are
//! bounded by the year instead), and written to the audit log.

use bonebank_query::policy::Policy;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::ledger::measure;
use super::{Store, now};
use crate::Result;

/// The account the catalogues' charges are booked to. Names from an
/// identity provider never have the brackets.
pub const CATALOGUE_ACCOUNT: &str = "(site: catalogue)";

/// Seconds in the year over which `versions_per_year` counts.
const YEAR: i64 = 365 * 86_400;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS catalogues (
    dataset_version TEXT PRIMARY KEY,
    catalogue TEXT NOT NULL,
    units INTEGER NOT NULL CHECK (units >= 0),
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS catalogues_at ON catalogues (at);
";

/// Why a new catalogue was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// `versions_per_year` catalogues were measured in the last 365 days;
    /// the next may be measured from this time (Unix seconds).
    YearlyLimit { from: i64 },
}

impl Store {
    /// The catalogue of `version`, as stored (JSON).
    pub fn catalogue(&self, version: &str) -> Result<Option<String>> {
        stored(&self.conn(), version)
    }

    /// The catalogue measured last, whatever its version (JSON).
    pub fn latest_catalogue(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT catalogue FROM catalogues ORDER BY at DESC, rowid DESC LIMIT 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    /// Whether a catalogue may be measured now; checked before any data is
    /// read, and again when it is stored.
    pub fn catalogue_allowed(&self, policy: &Policy) -> Result<Result<(), NotYet>> {
        allowed(&self.conn(), policy)
    }

    /// Stores the catalogue measured for `version` and charges `units` to
    /// the catalogue's account, with an audit entry, in one transaction.
    /// The catalogue stored before if another measurement of the version
    /// came first (nothing is charged then).
    pub fn store_catalogue(
        &self,
        version: &str,
        catalogue: &str,
        units: i64,
        policy: &Policy,
    ) -> Result<Result<String, NotYet>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(stored) = stored(&tx, version)? {
            return Ok(Ok(stored));
        }
        if let Err(not_yet) = allowed(&tx, policy)? {
            return Ok(Err(not_yet));
        }
        let at = now();
        tx.execute(
            "INSERT INTO ledger (at, user, project, units, state, release_key, measure) VALUES (?1, ?2, ?2, ?3, 'committed', ?4, ?5)",
            params![at, CATALOGUE_ACCOUNT, units, format!("catalogue {version}"), measure(policy.accounting)],
        )?;
        tx.execute(
            "INSERT INTO catalogues (dataset_version, catalogue, units, at) VALUES (?1, ?2, ?3, ?4)",
            params![version, catalogue, units, at],
        )?;
        crate::audit::append(
            &tx,
            "catalogue",
            CATALOGUE_ACCOUNT,
            &serde_json::json!({
                "dataset_version": version,
                "charged": crate::privacy::epsilon(units),
            }),
        )?;
        tx.commit()?;
        Ok(Ok(catalogue.to_owned()))
    }

    /// What the catalogues cost in the last 365 days (units), and how many
    /// there were.
    pub fn catalogues_this_year(&self) -> Result<(i64, u32)> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(units), 0), COUNT(*) FROM catalogues WHERE at > ?1",
            [now() - YEAR],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}

fn stored(conn: &Connection, version: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT catalogue FROM catalogues WHERE dataset_version = ?1")?
        .query_row([version], |r| r.get(0))
        .optional()?)
}

fn allowed(conn: &Connection, policy: &Policy) -> Result<Result<(), NotYet>> {
    let limit = policy.catalogue.versions_per_year;
    let mut times: Vec<i64> = conn
        .prepare_cached("SELECT at FROM catalogues WHERE at > ?1 ORDER BY at DESC")?
        .query_map([now() - YEAR], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if (times.len() as u64) < u64::from(limit) {
        return Ok(Ok(()));
    }
    // The oldest of the last `limit` leaves the year first.
    times.truncate(limit.max(1) as usize);
    let oldest = times.last().copied().unwrap_or_else(now);
    Ok(Err(NotYet::YearlyLimit {
        from: oldest + YEAR,
    }))
}
