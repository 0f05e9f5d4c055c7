//! The privacy-budget ledger and the remembered releases. A query's loss is
//! reserved in one immediate transaction that checks every account, so
//! concurrent queries can never overspend; the release and the charge are
//! committed in one transaction, so no release exists that was not charged.
//! A reservation left by a crash stays charged.

use bonebank_query::policy::Policy;
use bonebank_schemas::wire::Accounting;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Store, now, since};
pub use crate::error::Account;
use crate::{Error, Result};

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
    /// When the user's and the project's oldest charges in the period were
    /// made (Unix seconds): the first to leave the rolling period, and so
    /// the first to come back to the budget.
    pub user_oldest: Option<i64>,
    pub project_oldest: Option<i64>,
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
        mut audit: crate::audit::Question,
    ) -> Result<Committed> {
        let id = self.id.take().expect("committed once");
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO releases (key, dataset_version, query, result, units, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![key, dataset_version, query, result, units, now()])?;
        let outcome = if inserted == 1 {
            tx.prepare_cached(
                "UPDATE ledger SET state = 'committed', release_key = ?2 WHERE id = ?1",
            )?
            .execute(params![id, key])?;
            Committed::Released
        } else {
            tx.execute("DELETE FROM ledger WHERE id = ?1", [id])?;
            let existing: String =
                tx.query_row("SELECT result FROM releases WHERE key = ?1", [key], |r| {
                    r.get(0)
                })?;
            Committed::AlreadyReleased(existing)
        };
        audit.outcome = Some(
            match outcome {
                Committed::Released => "released",
                Committed::AlreadyReleased(_) => "remembered",
            }
            .into(),
        );
        audit.charged = Some(match outcome {
            Committed::Released => crate::privacy::epsilon(units),
            Committed::AlreadyReleased(_) => 0.0,
        });
        crate::audit::append(&tx, "request", actor, &crate::audit::detail(&audit))?;
        tx.commit()?;
        if outcome == Committed::Released {
            self.store.remember(key, (result.to_owned(), units));
        }
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

/// The ledger's name for what a charge is measured in.
pub(super) fn measure(accounting: Accounting) -> &'static str {
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

/// A charge of `units` in the ledger's `measure`, in the units of
/// `accounting`; pure accounting cannot count a ρ charge.
pub(super) fn in_measure(accounting: Accounting, measure: &str, units: i64) -> Result<i64> {
    match (accounting, measure) {
        (Accounting::Zcdp, "rho") | (Accounting::Pure, "epsilon") => Ok(units),
        (Accounting::Zcdp, _) => Ok(rho_units_of_epsilon(units)),
        (Accounting::Pure, _) => Err(Error::Usage(
            "the ledger holds zCDP (ρ) charges from the current budget period, \
             which pure ε accounting cannot count; keep accounting = \"zcdp\" \
             until they are older than budget_period_days"
                .into(),
        )),
    }
}

/// What the whole site spent in the current period, for its stewards: per
/// user, per project, in total, and committed releases per day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    pub users: std::collections::BTreeMap<String, i64>,
    pub projects: std::collections::BTreeMap<String, i64>,
    pub site: i64,
    /// Day (Unix day number) → (releases, units).
    pub days: std::collections::BTreeMap<i64, (u64, i64)>,
}

/// What was spent since `since`, in the measure of `accounting`. Under zCDP
/// charges made under pure ε count as ε²/2; under pure accounting a ρ
/// charge cannot be counted in ε, so one in the period is an error (the
/// site must keep zCDP until it is older than the period).
pub(super) fn spent(
    conn: &Connection,
    payer: &Payer,
    since: i64,
    accounting: Accounting,
) -> Result<Spent> {
    // One look at the period's charges serves all three accounts; each
    // charge is converted on its own, as a conversion rounds up.
    let mut stmt = conn.prepare_cached(
        "SELECT measure, units, user = ?2, project = ?3, at FROM ledger WHERE at > ?1 AND user <> ?4",
    )?;
    let mut rows = stmt.query(params![
        since,
        payer.user,
        payer.project,
        super::CATALOGUE_ACCOUNT
    ])?;
    let mut spent = Spent {
        user: 0,
        project: 0,
        site: 0,
        user_oldest: None,
        project_oldest: None,
    };
    let earliest = |held: Option<i64>, at: i64| Some(held.map_or(at, |h| h.min(at)));
    while let Some(r) = rows.next()? {
        let units = in_measure(accounting, &r.get::<_, String>(0)?, r.get(1)?)?;
        let at: i64 = r.get(4)?;
        if r.get::<_, bool>(2)? {
            spent.user += units;
            spent.user_oldest = earliest(spent.user_oldest, at);
        }
        if r.get::<_, bool>(3)? {
            spent.project += units;
            spent.project_oldest = earliest(spent.project_oldest, at);
        }
        spent.site += units;
    }
    Ok(spent)
}

impl Store {
    /// A remembered release's result JSON and units.
    pub fn release(&self, key: &str) -> Result<Option<(String, i64)>> {
        if let Some(hit) = self.recent_release(key) {
            return Ok(Some(hit));
        }
        let stored: Option<(String, i64)> = self
            .conn()
            .prepare_cached("SELECT result, units FROM releases WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some(release) = &stored {
            self.remember(key, release.clone());
        }
        Ok(stored)
    }

    /// The units committed to `user`'s budget for the release `key`: what
    /// making it charged them (0 where someone else's question made it).
    pub fn charged_for(&self, user: &str, key: &str) -> Result<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COALESCE(SUM(units), 0) FROM ledger \
                 WHERE user = ?1 AND release_key = ?2 AND state = 'committed'",
            )?
            .query_row([user, key], |r| r.get(0))?)
    }

    /// A release stored or read lately, from memory only: no wait for the
    /// database.
    pub fn recent_release(&self, key: &str) -> Option<(String, i64)> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn remember(&self, key: &str, release: (String, i64)) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), release);
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

    /// The site's spending in the current period (see [`Overview`]).
    pub fn overview(&self, policy: &Policy) -> Result<Overview> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT user, project, measure, units, state, at FROM ledger WHERE at > ?1 AND user <> ?2")?;
        let rows = stmt.query_map(
            params![since(policy.budget_period_days), super::CATALOGUE_ACCOUNT],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )?;
        let mut out = Overview::default();
        for row in rows {
            let (user, project, measure, units, state, at) = row?;
            let units = in_measure(policy.accounting, &measure, units)?;
            *out.users.entry(user).or_default() += units;
            *out.projects.entry(project).or_default() += units;
            out.site += units;
            if state == "committed" {
                let day = out.days.entry(at.div_euclid(86_400)).or_default();
                day.0 += 1;
                day.1 += units;
            }
        }
        Ok(out)
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
        // The reservation is committed without a sync to disk of its own:
        // the commit of the release it pays for syncs the log with it in,
        // before anyone is answered. A power cut before then loses a
        // reservation that paid for nothing; a crash of the process loses
        // nothing, as the operating system holds what was written.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let reserved = reserve_in(&mut conn, payer, units, policy);
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(reserved?.map(|id| Reservation {
            store: self.clone(),
            id: Some(id),
        }))
    }
}

/// Reserves `units` for `payer` if every account has them: the reservation's
/// id, or the first account that does not.
fn reserve_in(
    conn: &mut Connection,
    payer: &Payer,
    units: i64,
    policy: &Policy,
) -> Result<Result<i64, Account>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let s = spent(
        &tx,
        payer,
        since(policy.budget_period_days),
        policy.accounting,
    )?;
    let budgets = policy.budgets();
    let limit = |loss: f64| crate::privacy::units(loss);
    let over = if over_the_year(&tx, units, policy)? {
        Some(Account::Site)
    } else if s.user + units > limit(budgets.user) {
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
    tx.prepare_cached(
        "INSERT INTO ledger (at, user, project, units, state, measure) VALUES (?1, ?2, ?3, ?4, 'reserved', ?5)",
    )?
    .execute(params![now(), payer.user, payer.project, units, measure(policy.accounting)])?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Ok(id))
}

/// Seconds in the year over which a site's yearly budget counts.
const YEAR: i64 = 365 * 86_400;

/// Under zCDP, whether `units` more would take the site's fresh questions
/// and sample bounds past `site_per_year` in the last 365 days (the
/// catalogues are bounded by their own `versions_per_year`).
fn over_the_year(conn: &Connection, units: i64, policy: &Policy) -> Result<bool> {
    if policy.accounting != Accounting::Zcdp {
        return Ok(false);
    }
    Ok(spent_this_year(conn, policy)? + units > crate::privacy::units(policy.zcdp.site_per_year))
}

/// What fresh questions and sample bounds cost the site in the last 365
/// days, in the site's measure.
pub(super) fn spent_this_year(conn: &Connection, policy: &Policy) -> Result<i64> {
    let mut stmt =
        conn.prepare_cached("SELECT measure, units FROM ledger WHERE at > ?1 AND user <> ?2")?;
    let mut rows = stmt.query(params![now() - YEAR, super::CATALOGUE_ACCOUNT])?;
    let mut total = 0;
    while let Some(r) = rows.next()? {
        total += in_measure(policy.accounting, &r.get::<_, String>(0)?, r.get(1)?)?;
    }
    Ok(total)
}

impl Store {
    /// What the site released in the last 365 days, in the site's measure:
    /// fresh questions with the sample bounds, and the catalogues.
    pub fn this_year(&self, policy: &Policy) -> Result<(i64, i64)> {
        let fresh = spent_this_year(&self.conn(), policy)?;
        let (catalogues, _) = self.catalogues_this_year()?;
        Ok((fresh, catalogues))
    }
}

/// The user and project a site-wide charge is booked to (the sample bounds'
/// measurement): it counts in the site's account only. Names from an
/// identity provider never have the brackets.
pub const SITE_ACCOUNT: &str = "(site: sample bounds)";

impl Store {
    /// The sample bounds measured for `version`, as stored (JSON).
    pub fn sample_bounds(&self, version: &str) -> Result<Option<String>> {
        stored_bounds(&self.conn(), version)
    }

    /// Stores the bounds measured for `version` (JSON) and charges `units`
    /// to the site's account, with an audit entry, in one transaction; the
    /// bounds stored before if another measurement of the version came
    /// first (nothing is charged then), or the site's account if its budget
    /// does not have the units.
    pub fn store_sample_bounds(
        &self,
        version: &str,
        bounds: &str,
        units: i64,
        policy: &Policy,
    ) -> Result<Result<String, Account>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(stored) = stored_bounds(&tx, version)? {
            return Ok(Ok(stored));
        }
        let payer = Payer {
            user: SITE_ACCOUNT.into(),
            project: SITE_ACCOUNT.into(),
        };
        let s = spent(
            &tx,
            &payer,
            since(policy.budget_period_days),
            policy.accounting,
        )?;
        if s.site + units > crate::privacy::units(policy.budgets().site)
            || over_the_year(&tx, units, policy)?
        {
            return Ok(Err(Account::Site));
        }
        tx.execute(
            "INSERT INTO ledger (at, user, project, units, state, release_key, measure) VALUES (?1, ?2, ?2, ?3, 'committed', ?4, ?5)",
            params![now(), SITE_ACCOUNT, units, format!("sample bounds {version}"), measure(policy.accounting)],
        )?;
        tx.execute(
            "INSERT INTO sample_bounds (dataset_version, bounds, units, at) VALUES (?1, ?2, ?3, ?4)",
            params![version, bounds, units, now()],
        )?;
        crate::audit::append(
            &tx,
            "sample_bounds",
            SITE_ACCOUNT,
            &serde_json::json!({
                "dataset_version": version,
                "charged": crate::privacy::epsilon(units),
                "bounds": serde_json::from_str::<serde_json::Value>(bounds).unwrap_or_default(),
            }),
        )?;
        tx.commit()?;
        Ok(Ok(bounds.to_owned()))
    }
}

/// The sample bounds stored for `version`, if any.
fn stored_bounds(conn: &Connection, version: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT bounds FROM sample_bounds WHERE dataset_version = ?1")?
        .query_row([version], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_leaves_every_later_commit_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        let payer = Payer {
            user: "ana".into(),
            project: "p".into(),
        };
        let synchronous = |store: &Store| -> i64 {
            store
                .conn()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let policy = Policy::default();
        let reserved = store.reserve(&payer, 10, &policy).unwrap();
        assert!(reserved.is_ok());
        assert_eq!(synchronous(&store), 2, "FULL after a reservation");
        // And after one refused for want of budget.
        let broke = policy.with_budgets(bonebank_query::policy::Budgets {
            user: 0.0,
            project: 1.0,
            site: 1.0,
        });
        assert_eq!(
            store.reserve(&payer, 10, &broke).unwrap().err(),
            Some(Account::User)
        );
        assert_eq!(synchronous(&store), 2, "FULL after a refusal");
    }
}
