//! A site's policy: what its data steward allows queries to do and spend.
//! Read from the `[policy]` table of the node's config; every field has a
//! conservative default.

use std::collections::BTreeMap;

use bonebank_schemas::wire::EpsilonRange;
use bonebank_schemas::{Filter, Role};
use serde::{Deserialize, Serialize};

use crate::query::{Refusal, sql};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Most dimensions a query may group by.
    pub max_dimensions: usize,
    /// The ε a single query may spend, and what it spends when it does not say.
    pub epsilon: EpsilonRange,
    /// Rows (samples) one donor may add to one cell of an answer.
    pub max_samples_per_donor: i64,
    /// Cells one donor may add to in one answer.
    pub max_groups_per_donor: i64,
    /// Length of the rolling window over which budgets are summed.
    pub budget_period_days: u32,
    pub budget: Budgets,
    /// First and last year of `sampling_year` as a dimension.
    pub sampling_years: [i32; 2],
    /// ICD-10 categories listed by `diagnosis_3char`; others are `other`.
    pub diagnosis_categories: Vec<String>,
    /// Extra rules per role.
    pub roles: BTreeMap<Role, RoleRules>,
}

/// Budgets in ε per rolling period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub site: f64,
    pub project: f64,
    pub user: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleRules {
    /// A filter added to every query of the role, in the WHERE syntax, e.g.
    /// `consent_commercial = true`.
    pub force_filter: Option<String>,
    /// A lower ε ceiling for the role.
    pub max_epsilon: Option<f64>,
    /// The role may not query at all.
    pub denied: bool,
}

impl Default for Policy {
    fn default() -> Self {
        let mut roles = BTreeMap::new();
        roles.insert(
            Role::Industry,
            RoleRules {
                force_filter: Some("consent_commercial = true".into()),
                max_epsilon: None,
                denied: false,
            },
        );
        Self {
            max_dimensions: 2,
            epsilon: EpsilonRange {
                min: 0.01,
                max: 1.0,
                default: 0.25,
            },
            max_samples_per_donor: 5,
            max_groups_per_donor: 4,
            budget_period_days: 30,
            budget: Budgets {
                site: 100.0,
                project: 20.0,
                user: 5.0,
            },
            sampling_years: [2000, 2026],
            diagnosis_categories: [
                "C90", "D47", "D69", "D80", "D84", "M05", "M06", "M16", "M32", "M80", "M81", "M84",
                "S32", "S42", "S52", "S72", "S82",
            ]
            .map(String::from)
            .to_vec(),
            roles,
        }
    }
}

impl Policy {
    /// Checks the policy's own consistency; a node refuses to start otherwise.
    pub fn validate(&self) -> Result<(), String> {
        let e = self.epsilon;
        if !(e.min > 0.0 && e.min <= e.default && e.default <= e.max && e.max.is_finite()) {
            return Err(format!(
                "policy.epsilon must have 0 < min <= default <= max, got {e:?}"
            ));
        }
        if self.max_samples_per_donor < 1 || self.max_groups_per_donor < 1 {
            return Err(
                "policy.max_samples_per_donor and max_groups_per_donor must be at least 1".into(),
            );
        }
        let b = self.budget;
        if [b.site, b.project, b.user]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            return Err("policy.budget values must be finite and not negative".into());
        }
        if self.budget_period_days == 0 {
            return Err("policy.budget_period_days must be at least 1".into());
        }
        if self.sampling_years[0] > self.sampling_years[1] {
            return Err("policy.sampling_years must be [first, last]".into());
        }
        for (role, rules) in &self.roles {
            self.forced_filter(*role)
                .map_err(|r| format!("policy.roles.{role}.force_filter: {r}"))?;
            if rules.max_epsilon.is_some_and(|m| m.is_nan() || m <= 0.0) {
                return Err(format!("policy.roles.{role}.max_epsilon must be positive"));
            }
        }
        Ok(())
    }

    /// The filter every query of `role` gets, if any.
    pub fn forced_filter(&self, role: Role) -> Result<Option<Filter>, Refusal> {
        match self
            .roles
            .get(&role)
            .and_then(|r| r.force_filter.as_deref())
        {
            Some(text) => sql::parse_filter(text).map(Some),
            None => Ok(None),
        }
    }
}
