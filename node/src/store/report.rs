//! What a year's report counts, read from the ledger (losses) and the
//! audit log (questions, decisions, dataset versions) of one calendar year
//! (UTC).

use std::collections::BTreeMap;

use bonebank_schemas::wire::Accounting;
use rusqlite::params;

use super::{CATALOGUE_ACCOUNT, SITE_ACCOUNT, Store};
use crate::Result;

/// Releases and the loss they charged, in units of the site's measure
/// (see `crate::privacy::UNITS_PER_EPSILON`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Spent {
    pub releases: i64,
    pub units: i64,
}

impl Spent {
    fn add(&mut self, units: i64) {
        self.releases += 1;
        self.units += units;
    }

    /// The loss, in the site's measure.
    pub fn loss(&self) -> f64 {
        crate::privacy::epsilon(self.units)
    }
}

/// What came of the year's questions, from the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Questions {
    /// Answered with fresh numbers (and charged).
    pub released: i64,
    /// Answered with numbers released before, free.
    pub remembered: i64,
    /// Held for a steward.
    pub held: i64,
    /// Refused: by policy, the language, the budget or the limits.
    pub refused: i64,
    /// Failed on the site's side.
    pub failed: i64,
}

/// One steward's decisions in the year.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Decisions {
    pub steward: String,
    pub approved: i64,
    /// First of two approvals under a four-eyes rule.
    pub first_approvals: i64,
    pub rejected: i64,
}

/// A dataset version served in the year.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Version {
    pub version: String,
    /// When the node first served it, `YYYY-MM-DD`.
    pub served: String,
    /// When its catalogue was released, and what it charged.
    pub catalogue: Option<(String, f64)>,
}

/// A year as the report counts it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Year {
    pub catalogue: Spent,
    pub bounds: Spent,
    pub fresh: Spent,
    /// Fresh questions per project.
    pub projects: BTreeMap<String, Spent>,
    pub total: Spent,
    pub questions: Questions,
    pub decisions: Vec<Decisions>,
    pub versions: Vec<Version>,
    /// Audit entries written in the year.
    pub audit_entries: i64,
}

impl Store {
    /// The ledger's and the audit log's account of `year` (UTC), with
    /// losses in `accounting`'s measure.
    pub fn year(&self, year: i32, accounting: Accounting) -> Result<Year> {
        let (from, to) = bounds(year);
        let conn = self.conn();
        let mut out = Year::default();
        let mut stmt = conn.prepare(
            "SELECT user, project, measure, units FROM ledger \
             WHERE state = 'committed' AND at >= ?1 AND at < ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![from, to])?;
        while let Some(r) = rows.next()? {
            let (user, project, measure): (String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            let units = super::ledger::in_measure(accounting, &measure, r.get(3)?)?;
            match user.as_str() {
                CATALOGUE_ACCOUNT => out.catalogue.add(units),
                SITE_ACCOUNT => out.bounds.add(units),
                _ => {
                    out.fresh.add(units);
                    out.projects.entry(project).or_default().add(units);
                }
            }
            out.total.add(units);
        }
        let (first, next) = (format!("{year:04}-"), format!("{:04}-", year + 1));
        let mut stmt = conn.prepare(
            "SELECT kind, actor, detail, at FROM audit WHERE at >= ?1 AND at < ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![first, next])?;
        let mut stewards: BTreeMap<String, Decisions> = BTreeMap::new();
        while let Some(r) = rows.next()? {
            out.audit_entries += 1;
            let (kind, actor, detail, at): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let text = |key: &str| detail[key].as_str().unwrap_or_default().to_owned();
            let day = at.get(..10).unwrap_or(&at).to_owned();
            match kind.as_str() {
                "request" => {
                    let q = &mut out.questions;
                    match text("outcome").as_str() {
                        "released" => q.released += 1,
                        "remembered" | "picked_up" => q.remembered += 1,
                        "pending_approval" => q.held += 1,
                        "failed" => q.failed += 1,
                        "" => {}
                        _ => q.refused += 1,
                    }
                }
                "decision" => {
                    let d = stewards.entry(actor.clone()).or_insert_with(|| Decisions {
                        steward: actor,
                        ..Decisions::default()
                    });
                    match text("decision").as_str() {
                        "approve" => d.approved += 1,
                        "approve_first" => d.first_approvals += 1,
                        "reject" => d.rejected += 1,
                        _ => {}
                    }
                }
                "dataset" => {
                    let version = text("version");
                    // A catalogue may be measured (when first asked for)
                    // just before the version's own entry is written.
                    match out.versions.iter_mut().find(|v| v.version == version) {
                        Some(v) if v.served.is_empty() => v.served = day,
                        Some(_) => {}
                        None => out.versions.push(Version {
                            version,
                            served: day,
                            catalogue: None,
                        }),
                    }
                }
                "catalogue" => {
                    let version = text("dataset_version");
                    let charged = detail["charged"].as_f64().unwrap_or_default();
                    match out.versions.iter_mut().find(|v| v.version == version) {
                        Some(v) => v.catalogue = Some((day, charged)),
                        // Served before the year began.
                        None => out.versions.push(Version {
                            version,
                            served: String::new(),
                            catalogue: Some((day, charged)),
                        }),
                    }
                }
                _ => {}
            }
        }
        out.decisions = stewards.into_values().collect();
        Ok(out)
    }
}

/// The year's first second and the next year's, Unix seconds (UTC).
fn bounds(year: i32) -> (i64, i64) {
    let start = |y: i32| {
        chrono::NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp())
    };
    (start(year), start(year + 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_year_runs_from_new_year_to_new_year_utc() {
        assert_eq!(super::bounds(2026), (1_767_225_600, 1_798_761_600));
    }
}
