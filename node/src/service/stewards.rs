//! What a site's data stewards see on their pages besides the queue: the
//! privacy budget spent at the site, the audit log with its check, and the
//! policy in force. Each takes a [`Steward`], which only the extractor (or
//! the node's own command line) makes. Losses, identities and decisions
//! only: never a count or a row value.

use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{
    AuditPage, BudgetAccount, Catalogue, CatalogueSummary, CatalogueTable, LedgerDay, SiteLedger,
};

use super::{QueryService, Steward, blocking};
use crate::{Result, audit, privacy};

/// Audit entries on one page at most.
pub const AUDIT_PAGE: usize = 100;

impl QueryService {
    /// The site's spending in the current period.
    pub async fn ledger(&self, _steward: &Steward) -> Result<SiteLedger> {
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let overview = blocking(move || store.overview(&policy)).await?;
        let store = self.store.clone();
        let (yearly, stored) = {
            let service = self.clone();
            blocking(move || Ok((service.yearly()?, store.latest_catalogue()?))).await?
        };
        let catalogue = match stored {
            Some(json) => {
                let c: Catalogue = serde_json::from_str(&json)
                    .map_err(|e| crate::Error::Engine(format!("stored catalogue: {e}")))?;
                Some(CatalogueSummary {
                    dataset_version: c.dataset_version,
                    measured_at: c.measured_at,
                    loss: c.loss,
                    approx_dp: c.approx_dp,
                    tables: c.tables.len(),
                    cells: c.tables.iter().map(|t| t.donors.values.len()).sum(),
                    consented_tables: c.tables.iter().filter(|t| t.consent.is_some()).count(),
                    consented_loss: c
                        .tables
                        .iter()
                        .filter(|t| t.consent.is_some())
                        .map(CatalogueTable::loss)
                        .sum(),
                })
            }
            None => None,
        };
        let no_catalogue = match catalogue {
            Some(_) => None,
            None => Some(self.why_no_catalogue()?),
        };
        let budgets = self.policy.budgets();
        let account = |name: &str, limit: f64, units: i64| BudgetAccount {
            name: name.to_owned(),
            limit,
            spent: privacy::epsilon(units),
            remaining: (limit - privacy::epsilon(units)).max(0.0),
            renews: None,
        };
        Ok(SiteLedger {
            site_id: self.site.to_string(),
            accounting: self.policy.accounting,
            period_days: self.policy.budget_period_days,
            site: account(self.site.as_str(), budgets.site, overview.site),
            users: overview
                .users
                .iter()
                .map(|(u, units)| account(u, budgets.user, *units))
                .collect(),
            projects: overview
                .projects
                .iter()
                .map(|(p, units)| account(p, budgets.project, *units))
                .collect(),
            days: overview
                .days
                .iter()
                .map(|(day, (releases, units))| LedgerDay {
                    day: chrono::DateTime::from_timestamp(day * 86_400, 0)
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    releases: *releases,
                    spent: privacy::epsilon(*units),
                })
                .collect(),
            yearly,
            catalogue,
            no_catalogue,
        })
    }

    /// A page of the audit log, newest first, with the whole chain checked.
    pub async fn audit_page(&self, _steward: &Steward, filter: audit::Filter) -> Result<AuditPage> {
        let store = self.store.clone();
        let (entries, total, checked) = blocking(move || {
            let (entries, total) = store.audit_page(&filter, AUDIT_PAGE)?;
            Ok((entries, total, store.verify_audit()?))
        })
        .await?;
        let (intact, broken, head) = match checked {
            Ok(i) => (true, None, Some(i.head)),
            Err(b) => (false, Some(b.to_string()), None),
        };
        Ok(AuditPage {
            site_id: self.site.to_string(),
            entries,
            total,
            intact,
            broken,
            head,
        })
    }

    /// The whole audit log as JSON lines, for a steward to keep.
    pub async fn audit_export(&self, _steward: &Steward, csv: bool) -> Result<Vec<u8>> {
        let store = self.store.clone();
        blocking(move || {
            let mut out = Vec::new();
            if csv {
                store.export_audit_csv(&mut out)?;
            } else {
                store.export_audit(&mut out)?;
            }
            Ok(out)
        })
        .await
    }

    /// The site's report of `year` in `language` (see [`crate::report`]).
    pub async fn year_report(
        &self,
        _steward: &Steward,
        year: i32,
        language: &str,
    ) -> Result<(crate::report::Facts, crate::report::Report)> {
        let (store, site, policy, language) = (
            self.store.clone(),
            self.site.to_string(),
            self.policy.clone(),
            language.to_owned(),
        );
        blocking(move || {
            let facts = crate::report::Facts::gather(&store, &site, &policy, year)?;
            let report = crate::report::Report::new(&facts, &language);
            Ok((facts, report))
        })
        .await
    }

    /// The policy this node enforces, defaults included.
    pub fn policy_in_force(&self, _steward: &Steward) -> &Policy {
        &self.policy
    }
}
