//! What a site says about itself and a question before any data is read:
//! its public description, a caller's budget, and a question's cost and
//! precision (the preview). Nothing here reads data or spends anything.

use bonebank_query::policy::Action;
use bonebank_query::{self as query, Dimension, Refusal, dimension_values};
use bonebank_schemas::Measure;
use bonebank_schemas::surface::{self, Role as ColumnRole};
use bonebank_schemas::wire::{
    Accounting, ApproxDp, BoundedColumn, BudgetAccount, BudgetStatus, DimensionDescription,
    FilterColumn, MeasurePreview, Preview, QueryRequest, SiteDescription,
};

use super::{QueryService, blocking};
use crate::privacy::{self, COVERAGE, halfwidth};
use crate::service::Caller;
use crate::store::Payer;
use crate::{Error, Result};

impl QueryService {
    /// What a question would cost and how precise its answer would be, from
    /// public parameters only (the policy, the bounds, the dimensions' keys):
    /// no data is read and nothing is charged. Refused like the question
    /// itself would be.
    #[tracing::instrument(name = "preview", skip_all, fields(site = %self.site, user = %caller.user, question = tracing::field::Empty))]
    pub async fn preview(&self, caller: &Caller, request: &QueryRequest) -> Result<Preview> {
        let checked = self.parse_and_check(caller, request).await?;
        let decision =
            self.policy
                .decide(caller.role, &caller.project, &checked.query, checked.loss);
        if decision.action == Action::Deny {
            return Err(Error::PolicyRefused(Refusal::new(
                decision
                    .reason
                    .unwrap_or_else(|| "this site's policy refuses this query".into()),
                "ask the site's data steward",
            )));
        }
        // With the current version's sample bounds, measured now if they
        // never were (a charge to the site, not to the caller).
        let plan = self.plan_now(&checked).await?;
        let calibrations = self.calibrate(&plan, privacy::units(checked.loss))?;
        let charge: i64 = calibrations.iter().map(|c| privacy::units_up(c.loss)).sum();
        let mechanism = privacy::mechanism(self.policy.accounting);
        let mut next = calibrations.iter();
        let measures = checked
            .query
            .measures
            .iter()
            .map(|m| {
                let c = next.next().expect("one calibration per aggregate");
                let (loss, halfwidth) = match m {
                    Measure::Avg { .. } => {
                        let count = next.next().expect("an average has two");
                        (c.loss + count.loss, None)
                    }
                    _ => (c.loss, Some(halfwidth(mechanism, c.scale, COVERAGE) as f64)),
                };
                MeasurePreview {
                    measure: m.clone(),
                    label: m.label(),
                    mechanism,
                    sensitivity: c.sensitivity,
                    scale: c.scale,
                    loss,
                    halfwidth,
                }
            })
            .collect();
        let loss = privacy::epsilon(charge);
        Ok(Preview {
            site_id: self.site.to_string(),
            accounting: self.policy.accounting,
            query: checked.query.clone(),
            loss,
            approx_dp: self.approx_dp(loss)?,
            needs_approval: decision.action == Action::Approve,
            cells_per_donor: plan.cells_per_donor(),
            measures,
        })
    }

    /// Under zCDP, the site's yearly bound and what it released this year.
    pub(crate) fn yearly(&self) -> Result<Option<bonebank_schemas::wire::YearlyLoss>> {
        let p = &self.policy;
        let Some(approx_dp) = self.approx_dp(p.yearly_loss())? else {
            return Ok(None);
        };
        let (fresh, catalogues) = self.store.this_year(p)?;
        Ok(Some(bonebank_schemas::wire::YearlyLoss {
            catalogues: p.catalogue.yearly_loss(),
            fresh: p.zcdp.site_per_year,
            total: p.yearly_loss(),
            approx_dp,
            spent: privacy::epsilon(fresh + catalogues),
        }))
    }

    /// Who the site's catalogue must not answer, in order
    /// ([`bonebank_schemas::wire::Catalogue::caller_rules`]): the roles the
    /// policy refuses, then the rules that hold for every question of a
    /// caller (a role, projects, or neither, and no condition on the
    /// question), each asking fresh unless it runs. A rule with a condition
    /// on the question does not hold for catalogue answers, which are
    /// released data, so it is left out.
    pub fn caller_rules(&self) -> Vec<bonebank_schemas::wire::CallerRule> {
        use bonebank_schemas::wire::CallerRule;
        let denied = self
            .policy
            .roles
            .iter()
            .filter(|(_, rules)| rules.denied)
            .map(|(role, _)| CallerRule {
                role: Some(role.to_string()),
                projects: None,
                asked_fresh: true,
            });
        let rules = self
            .policy
            .rules
            .iter()
            .filter(|r| r.holds_for_every_question())
            .map(|r| CallerRule {
                role: r.role.map(|role| role.to_string()),
                projects: r.projects.clone(),
                asked_fresh: r.action != bonebank_query::policy::Action::Run,
            });
        denied.chain(rules).collect()
    }

    /// The filter the site's policy adds to every question of a role, as
    /// SQL, by role.
    pub fn role_filters(&self) -> std::collections::BTreeMap<String, String> {
        self.policy
            .roles
            .iter()
            .filter_map(|(role, rules)| {
                let filter = rules.force_filter.as_deref()?.trim();
                (!filter.is_empty()).then(|| (role.to_string(), filter.to_owned()))
            })
            .collect()
    }

    /// Under zCDP, what a loss of `rho` amounts to in (ε, δ)-DP at the
    /// site's δ.
    pub(super) fn approx_dp(&self, rho: f64) -> Result<Option<ApproxDp>> {
        if self.policy.accounting != Accounting::Zcdp || rho <= 0.0 {
            return Ok(None);
        }
        let delta = self.policy.zcdp.delta;
        let known = self
            .conversions
            .lock()
            .expect("lock")
            .get(&rho.to_bits())
            .copied();
        let epsilon = match known {
            Some(e) => e,
            None => {
                let e = privacy::zcdp_epsilon(rho, delta)?;
                let mut cache = self.conversions.lock().expect("lock");
                if cache.len() >= 1024 {
                    cache.clear();
                }
                cache.insert(rho.to_bits(), e);
                e
            }
        };
        Ok(Some(ApproxDp { epsilon, delta }))
    }

    /// The caller's own budget (never anyone else's).
    pub async fn budget(&self, caller: &Caller) -> Result<BudgetStatus> {
        let payer = Payer {
            user: caller.user.clone(),
            project: caller.project.clone(),
        };
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let days = policy.budget_period_days;
        let spent = blocking(move || store.spent(&payer, &policy)).await?;
        // A charge comes back when it is older than the period.
        let renews = |oldest: Option<i64>| {
            oldest.map(|at| super::approvals::rfc3339(at + i64::from(days) * 86_400))
        };
        let account = |name: &str, limit: f64, units: i64, oldest: Option<i64>| BudgetAccount {
            name: name.to_owned(),
            limit,
            spent: privacy::epsilon(units),
            remaining: (limit - privacy::epsilon(units)).max(0.0),
            renews: renews(oldest),
        };
        let budgets = self.policy.budgets();
        Ok(BudgetStatus {
            site_id: self.site.to_string(),
            accounting: self.policy.accounting,
            period_days: days,
            user: account(&caller.user, budgets.user, spent.user, spent.user_oldest),
            project: account(
                &caller.project,
                budgets.project,
                spent.project,
                spent.project_oldest,
            ),
        })
    }

    /// What a researcher needs to write queries for this site.
    pub fn describe(&self) -> Result<SiteDescription> {
        let p = &self.policy;
        let operators = |role: ColumnRole| match role {
            ColumnRole::Dimension => "=, <>, IN, LIKE 'prefix%'",
            ColumnRole::Range => "=, <>, IN, BETWEEN, <, <=, >, >=, IS [NOT] NULL",
            ColumnRole::CodePrefix => "=, <>, IN, LIKE 'prefix%', IS [NOT] NULL",
            ColumnRole::Flag => "= true, = false",
            ColumnRole::PrivacyUnit => "only COUNT(DISTINCT donor_id)",
        };
        let dataset_version = self.engine.dataset_version()?;
        Ok(SiteDescription {
            site_id: self.site.to_string(),
            country: self.site.country().code().to_owned(),
            dataset_version: dataset_version.clone(),
            dimensions: query::ALL_DIMENSIONS
                .iter()
                .map(|d: &Dimension| DimensionDescription {
                    name: d.name().to_owned(),
                    values: dimension_values(*d, &self.site, p),
                    fixed_per_donor: d.fixed_per_donor(),
                    groups_per_donor: p.groups_per_donor(*d),
                })
                .collect(),
            filters: surface::COLUMNS
                .iter()
                .map(|c| FilterColumn {
                    name: c.name.to_owned(),
                    operators: operators(c.role).to_owned(),
                })
                .collect(),
            bounded_columns: surface::BOUNDED
                .iter()
                .map(|(c, lo, hi)| BoundedColumn {
                    name: (*c).to_owned(),
                    min: *lo,
                    max: *hi,
                })
                .collect(),
            max_dimensions: p.max_dimensions,
            accounting: p.accounting,
            loss: p.loss_range(),
            budgets: p.site_budgets(),
            user_budget_approx_dp: self.approx_dp(p.budgets().user)?,
            max_samples_per_donor: p.max_samples_per_donor,
            sample_bounds: self
                .bounds
                .lock()
                .expect("lock")
                .as_ref()
                .filter(|b| Some(&b.dataset_version) == dataset_version.as_ref())
                .map(|b| (**b).clone()),
            max_groups_per_donor: p.max_groups_per_donor,
            budget_period_days: p.budget_period_days,
            role_filters: self.role_filters(),
            limits: self.fair.limits().describe(),
            yearly: self.yearly()?,
        })
    }
}
