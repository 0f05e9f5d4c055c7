//! A site's policy: what its data steward allows queries to do and spend.
//! Read from the `[policy]` table of the node's config; every field has a
//! conservative default.

use std::collections::BTreeMap;

use bonebank_schemas::wire::{Accounting, LossRange, SiteBudgets};
use bonebank_schemas::{
    Country, Filter, MaterialSubtype, Role, SampleType, Sex, SiteId, StorageTemperature, ValueSet,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dimensions::{AGE_BANDS, CHAPTERS, Dimension};
use crate::{Refusal, sql};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Most dimensions a query may group by.
    pub max_dimensions: usize,
    /// How privacy loss is accounted: `zcdp` (the default: discrete
    /// Gaussian noise, losses in ρ) or `pure` (discrete Laplace, losses in ε).
    pub accounting: Accounting,
    /// Under zCDP: the ρ per query, the budgets in ρ, and the δ that their
    /// (ε, δ) statements use.
    pub zcdp: Zcdp,
    /// Under pure accounting: the ε a single query may spend, and what it
    /// spends when it does not say.
    pub epsilon: LossRange,
    /// Rows (samples) one donor may add to one cell of an answer.
    pub max_samples_per_donor: i64,
    /// Values of a sample-level dimension (sample type, age band, …) one
    /// donor may add to in one answer, for dimensions `groups_per_donor`
    /// does not name. Dimensions fixed per donor (site, country, sex) need
    /// no bound: a donor is in one of their cells.
    pub max_groups_per_donor: i64,
    /// The bound of single sample-level dimensions, by name, in place of
    /// `max_groups_per_donor`. A config's `[policy.groups_per_donor]` is
    /// merged over the defaults key by key.
    #[serde(deserialize_with = "groups_over_defaults")]
    pub groups_per_donor: BTreeMap<String, i64>,
    /// Length of the rolling window over which budgets are summed.
    pub budget_period_days: u32,
    /// Under pure accounting: budgets in ε.
    pub budget: Budgets,
    /// First and last year of `sampling_year` as a dimension.
    pub sampling_years: [i32; 2],
    /// ICD-10 categories listed by `diagnosis_3char`; others are `other`.
    pub diagnosis_categories: Vec<String>,
    /// Extra rules per role. A config's `[policy.roles.<role>]` tables are
    /// merged over the defaults key by key, so configuring one role never
    /// drops another role's rules (such as industry's consent filter).
    #[serde(deserialize_with = "roles_over_defaults")]
    pub roles: BTreeMap<Role, RoleRules>,
    /// What happens to a query, decided by the first rule that matches it;
    /// a query no rule matches runs at once.
    pub rules: Vec<Rule>,
    /// Days a query may wait for a steward before its request expires.
    pub approval_expiry_days: u32,
    /// Released counts and sums are rounded to multiples of this, for
    /// display (post-processing: it costs no privacy). 1: not rounded.
    pub round_to: i64,
    /// The catalogue measured once per dataset version (under zCDP).
    pub catalogue: CatalogueSettings,
}

/// Under zCDP a node measures, once per dataset version, a catalogue of
/// noisy donor and sample counts ([`crate::catalogue`]) with the site's own
/// loss; questions within its reach are answered from it for free. At most
/// `versions_per_year` catalogues are measured in any 365 days, so the
/// catalogues' yearly loss is at most `loss × versions_per_year`; newer
/// data waits for the next allowed release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueSettings {
    pub measure: bool,
    /// ρ per catalogue (one dataset version), all its tables together.
    pub loss: f64,
    /// The part of `loss` spent on the tables of the donors who consented
    /// to commercial use ([`crate::catalogue::consented_workload`]), which
    /// answer industry partners; 0 measures none.
    pub consented_loss: f64,
    /// The most catalogues measured in any 365 days.
    pub versions_per_year: u32,
}

impl Default for CatalogueSettings {
    /// ρ 5 twice a year: ρ 4 for the tables of every donor (the same ρ 8 a
    /// year as ρ 2 four times, but each catalogue's donor counts are ±8
    /// instead of ±11: the evaluation's loss sweep, README, *Accuracy*),
    /// and ρ 1 for those of the donors with commercial consent, which
    /// answer industry partners. Holdings change slowly, and a question
    /// about newer data can be asked afresh meanwhile.
    fn default() -> Self {
        Self {
            measure: true,
            loss: 5.0,
            consented_loss: 1.0,
            versions_per_year: 2,
        }
    }
}

impl CatalogueSettings {
    /// The most the catalogues may cost in any 365 days (ρ).
    pub fn yearly_loss(&self) -> f64 {
        if self.measure {
            self.loss * f64::from(self.versions_per_year)
        } else {
            0.0
        }
    }
}

/// One rule of the site policy. Every condition given must hold for the rule
/// to match; a rule without conditions matches every query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The caller's role.
    #[serde(default)]
    pub role: Option<Role>,
    /// The caller's project is one of these.
    #[serde(default)]
    pub projects: Option<Vec<String>>,
    /// The query uses at least one of these measures: `samples`, `donors`,
    /// `sum`, `avg`.
    #[serde(default)]
    pub measures: Option<Vec<String>>,
    /// The query groups by at least this many dimensions.
    #[serde(default)]
    pub min_dimensions: Option<usize>,
    /// The query groups by at least one of these dimensions.
    #[serde(default)]
    pub dimensions: Option<Vec<String>>,
    /// The query spends more than this loss, in the site's measure.
    #[serde(default, alias = "epsilon_above")]
    pub loss_above: Option<f64>,
    pub action: Action,
    /// Shown to the researcher; required for `deny`.
    #[serde(default)]
    pub reason: Option<String>,
    /// For `approve`: how many different stewards must approve (1 or 2;
    /// 2 is the four-eyes rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u8>,
}

impl Rule {
    /// Whether the rule holds for every question of the callers it names:
    /// it has no condition on the question (measures, breakdowns, loss).
    pub fn holds_for_every_question(&self) -> bool {
        self.measures.is_none()
            && self.min_dimensions.is_none()
            && self.dimensions.is_none()
            && self.loss_above.is_none()
    }
}

/// What a rule does with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answer at once.
    Run,
    /// Wait for a steward of the site.
    Approve,
    /// Refuse, with the rule's reason.
    Deny,
}

/// The policy's decision on one query, and the rule that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// 1-based index of the rule; `None` when no rule matched.
    pub rule: Option<usize>,
    pub reason: Option<String>,
}

/// The measure kinds rules can name.
pub const MEASURE_KINDS: &[&str] = &["samples", "donors", "sum", "avg"];

/// Settings of zero-concentrated DP accounting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Zcdp {
    /// The ρ a single query may spend, and what it spends when it does not
    /// say.
    pub rho: LossRange,
    /// Budgets in ρ per rolling period.
    pub budget: Budgets,
    /// The δ at which ρ is stated as (ε, δ)-DP in `/v1/site`, results and
    /// the README.
    pub delta: f64,
    /// How the site fits its sample bound to its data, per dataset version.
    pub sample_bounds: SampleBounds,
    /// The most fresh questions (and the sample bounds' measurements) may
    /// cost the site in any 365 days, in ρ, on top of the rolling period's
    /// `budget.site`. With the catalogues' `loss × versions_per_year` it
    /// bounds what the site releases in a year.
    pub site_per_year: f64,
}

/// Under zCDP a node measures, once per dataset version and with noise,
/// how many samples of each sample type its donors have, and bounds each
/// question's sample count by what the question's cells can hold; the
/// fixed `max_samples_per_donor` is used where it does not (pure
/// accounting, `measure = false`, or the site's budget spent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SampleBounds {
    pub measure: bool,
    /// ρ per dataset version, charged to the site's budget (no user's).
    pub loss: f64,
    /// The most samples of one donor the measurement reads, and so the
    /// largest bound it can give: a donor's rows past it are never counted.
    pub ceiling: i64,
}

impl Default for SampleBounds {
    fn default() -> Self {
        Self {
            measure: true,
            loss: 1.0,
            ceiling: 64,
        }
    }
}

impl Default for Zcdp {
    /// A user's ρ of 0.46 per 30 days is (4.98, 10⁻⁶)-DP by OpenDP's
    /// conversion, as a user's ε 5 was before; a query's default is a
    /// twentieth of it, so a user asks as many fresh questions as before.
    fn default() -> Self {
        Self {
            rho: LossRange {
                min: 0.0005,
                max: 0.1,
                default: 0.023,
            },
            budget: Budgets {
                site: 48.0,
                project: 4.5,
                user: 0.46,
            },
            delta: 1e-6,
            sample_bounds: SampleBounds::default(),
            site_per_year: 6.0,
        }
    }
}

/// Budgets per rolling period, in the site's measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub site: f64,
    pub project: f64,
    pub user: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RoleRules {
    /// A filter added to every query of the role, in the WHERE syntax, e.g.
    /// `consent_commercial = true`.
    pub force_filter: Option<String>,
    /// A lower ceiling on one query's loss for the role, in the site's
    /// measure.
    #[serde(alias = "max_epsilon")]
    pub max_loss: Option<f64>,
    /// The role may not query at all.
    pub denied: bool,
    /// For the industry role: the site means its industry partners to count
    /// donors without commercial consent. Without it a node refuses to start
    /// with an industry filter that does not require `consent_commercial =
    /// true`.
    pub count_without_commercial_consent: bool,
}

/// One role's settings as a config writes them: every key optional, and a
/// key left out keeps the default. `force_filter = ""` removes a forced
/// filter.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RoleSettings {
    force_filter: Option<String>,
    #[serde(alias = "max_epsilon")]
    max_loss: Option<f64>,
    denied: Option<bool>,
    count_without_commercial_consent: Option<bool>,
}

/// The default per-dimension bounds with a config's merged over them.
fn groups_over_defaults<'de, D>(deserializer: D) -> Result<BTreeMap<String, i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let mut groups = Policy::default().groups_per_donor;
    groups.extend(BTreeMap::<String, i64>::deserialize(deserializer)?);
    Ok(groups)
}

/// The default roles with a config's role tables merged over them.
fn roles_over_defaults<'de, D>(deserializer: D) -> Result<BTreeMap<Role, RoleRules>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let given = BTreeMap::<Role, RoleSettings>::deserialize(deserializer)?;
    let mut roles = Policy::default().roles;
    for (role, s) in given {
        let r = roles.entry(role).or_default();
        if let Some(f) = s.force_filter {
            r.force_filter = Some(f).filter(|f| !f.trim().is_empty());
        }
        if let Some(m) = s.max_loss {
            r.max_loss = Some(m);
        }
        if let Some(d) = s.denied {
            r.denied = d;
        }
        if let Some(c) = s.count_without_commercial_consent {
            r.count_without_commercial_consent = c;
        }
    }
    Ok(roles)
}

/// Whether every row a filter keeps has `consent_commercial = true`: the
/// filter requires it itself or through one of its `AND`-ed parts. Anything
/// cleverer (an `OR` whose every branch requires it) is not recognised, so
/// the check errs on the side of refusing a policy.
fn requires_commercial_consent(f: &Filter) -> bool {
    match f {
        Filter::And(children) => children.iter().any(requires_commercial_consent),
        leaf => crate::catalogue::consent_of(leaf).is_some(),
    }
}

impl Default for Policy {
    fn default() -> Self {
        let mut roles = BTreeMap::new();
        roles.insert(
            Role::Industry,
            RoleRules {
                force_filter: Some("consent_commercial = true".into()),
                ..RoleRules::default()
            },
        );
        Self {
            max_dimensions: 2,
            accounting: Accounting::default(),
            zcdp: Zcdp::default(),
            epsilon: LossRange {
                min: 0.01,
                max: 1.0,
                default: 0.25,
            },
            max_samples_per_donor: 5,
            max_groups_per_donor: 4,
            // Set so that no donor of the demo sites is over them (which
            // would bias large cells downwards) except in sampling_year,
            // where repeat blood donors span up to 18 years and 7 keeps the
            // interval within ±25 donors; see README, "Accuracy".
            groups_per_donor: [
                ("sample_type", 7),
                ("material_subtype", 7),
                ("storage_temperature", 4),
                ("age_band", 3),
                ("sampling_year", 7),
                ("diagnosis_3char", 3),
                ("diagnosis_chapter", 3),
            ]
            .into_iter()
            .map(|(d, g)| (d.to_owned(), g))
            .collect(),
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
            rules: Vec::new(),
            approval_expiry_days: 14,
            round_to: 1,
            catalogue: CatalogueSettings::default(),
        }
    }
}

impl Policy {
    /// The loss one query may spend, in the site's measure.
    pub fn loss_range(&self) -> LossRange {
        match self.accounting {
            Accounting::Zcdp => self.zcdp.rho,
            Accounting::Pure => self.epsilon,
        }
    }

    /// The budgets, in the site's measure.
    pub fn budgets(&self) -> Budgets {
        match self.accounting {
            Accounting::Zcdp => self.zcdp.budget,
            Accounting::Pure => self.budget,
        }
    }

    /// The same policy with `budgets` under either accounting: for
    /// benchmarks and evaluations that ask far more than a user would.
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budget = budgets;
        self.zcdp.budget = budgets;
        // As much a year as the site's budget over a year of periods.
        self.zcdp.site_per_year = self
            .zcdp
            .site_per_year
            .max(budgets.site * (365.0 / f64::from(self.budget_period_days.max(1))).ceil());
        self
    }

    /// The most a default-shaped site releases in any 365 days under zCDP:
    /// its catalogues and its fresh questions, in ρ.
    pub fn yearly_loss(&self) -> f64 {
        self.catalogue.yearly_loss() + self.zcdp.site_per_year
    }

    /// The budgets as `/v1/site` shows them.
    pub fn site_budgets(&self) -> SiteBudgets {
        let b = self.budgets();
        SiteBudgets {
            site: b.site,
            project: b.project,
            user: b.user,
        }
    }

    /// How many values of `dimension` one donor may add to in one answer:
    /// one for a dimension fixed per donor, else the site's bound for it.
    pub fn groups_per_donor(&self, dimension: crate::dimensions::Dimension) -> i64 {
        if dimension.fixed_per_donor() {
            return 1;
        }
        self.groups_per_donor
            .get(dimension.name())
            .copied()
            .unwrap_or(self.max_groups_per_donor)
    }

    /// Checks the policy's own consistency; a node refuses to start otherwise.
    pub fn validate(&self) -> Result<(), String> {
        for (name, e) in [
            ("policy.epsilon", self.epsilon),
            ("policy.zcdp.rho", self.zcdp.rho),
        ] {
            if !(e.min > 0.0 && e.min <= e.default && e.default <= e.max && e.max.is_finite()) {
                return Err(format!(
                    "{name} must have 0 < min <= default <= max, got {e:?}"
                ));
            }
        }
        let d = self.zcdp.delta;
        if !(d > 0.0 && d < 1.0) {
            return Err(format!(
                "policy.zcdp.delta must be between 0 and 1, got {d}"
            ));
        }
        let sb = self.zcdp.sample_bounds;
        if !(sb.loss > 0.0 && sb.loss.is_finite()) {
            return Err(format!(
                "policy.zcdp.sample_bounds.loss must be a ρ above 0, got {}",
                sb.loss
            ));
        }
        if !(1..=1_000).contains(&sb.ceiling) {
            return Err(format!(
                "policy.zcdp.sample_bounds.ceiling must be between 1 and 1000, got {}",
                sb.ceiling
            ));
        }
        let c = self.catalogue;
        if !(c.loss > 0.0 && c.loss.is_finite()) {
            return Err(format!(
                "policy.catalogue.loss must be a ρ above 0, got {}",
                c.loss
            ));
        }
        if !(c.consented_loss >= 0.0 && c.consented_loss < c.loss) {
            return Err(format!(
                "policy.catalogue.consented_loss must be a ρ of 0 or more and below loss ({}), got {}",
                c.loss, c.consented_loss
            ));
        }
        if c.measure && !(1..=52).contains(&c.versions_per_year) {
            return Err(format!(
                "policy.catalogue.versions_per_year must be between 1 and 52, got {}",
                c.versions_per_year
            ));
        }
        let y = self.zcdp.site_per_year;
        if !(y.is_finite() && y >= 0.0) {
            return Err(format!(
                "policy.zcdp.site_per_year must be a finite ρ of 0 or more, got {y}"
            ));
        }
        let b = self.zcdp.budget;
        if [b.site, b.project, b.user]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            return Err("policy.zcdp.budget values must be finite and not negative".into());
        }
        if self.max_samples_per_donor < 1 || self.max_groups_per_donor < 1 {
            return Err(
                "policy.max_samples_per_donor and max_groups_per_donor must be at least 1".into(),
            );
        }
        for (name, bound) in &self.groups_per_donor {
            let Some(d) = crate::dimensions::Dimension::from_name(name) else {
                return Err(format!(
                    "policy.groups_per_donor.{name} is not a dimension; use one of {}",
                    crate::dimensions::ALL
                        .iter()
                        .filter(|d| !d.fixed_per_donor())
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if d.fixed_per_donor() {
                return Err(format!(
                    "policy.groups_per_donor.{name}: {name} is fixed per donor, so a donor \
                     is always in one of its cells; it takes no bound"
                ));
            }
            if *bound < 1 {
                return Err(format!("policy.groups_per_donor.{name} must be at least 1"));
            }
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
            if rules.max_loss.is_some_and(|m| m.is_nan() || m <= 0.0) {
                return Err(format!("policy.roles.{role}.max_loss must be positive"));
            }
            if rules.count_without_commercial_consent && *role != Role::Industry {
                return Err(format!(
                    "policy.roles.{role}.count_without_commercial_consent is for the industry role only"
                ));
            }
        }
        let industry = self.roles.get(&Role::Industry).cloned().unwrap_or_default();
        let filter = self
            .forced_filter(Role::Industry)
            .map_err(|r| format!("policy.roles.industry.force_filter: {r}"))?;
        if !industry.denied
            && !industry.count_without_commercial_consent
            && !filter.as_ref().is_some_and(requires_commercial_consent)
        {
            return Err(format!(
                "policy.roles.industry.force_filter: with {} industry partners would count donors \
                 without commercial consent; keep `consent_commercial = true` in it (AND-ed with \
                 anything else), or, if this site means that, say so with \
                 count_without_commercial_consent = true in [policy.roles.industry]",
                match &industry.force_filter {
                    Some(f) => format!("force_filter = {f:?}"),
                    None => "no forced filter".into(),
                }
            ));
        }
        Ok(())
    }

    /// Checks the rules; the error names the rule (1-based) and what is wrong.
    pub fn validate_rules(&self) -> Result<(), (usize, String)> {
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            if r.action == Action::Deny && r.reason.as_deref().is_none_or(|t| t.trim().is_empty()) {
                return Err((
                    n,
                    "a deny rule needs a reason, which researchers see".into(),
                ));
            }
            match r.approvals_required {
                None | Some(1) => {}
                Some(2) if r.action == Action::Approve => {}
                Some(2) => {
                    return Err((n, "approvals_required belongs to an approve rule".into()));
                }
                Some(k) => {
                    return Err((
                        n,
                        format!("approvals_required = {k}: use 1, or 2 for two different stewards"),
                    ));
                }
            }
            for m in r.measures.iter().flatten() {
                if !MEASURE_KINDS.contains(&m.as_str()) {
                    return Err((
                        n,
                        format!("unknown measure {m:?}; use {}", MEASURE_KINDS.join(", ")),
                    ));
                }
            }
            for d in r.dimensions.iter().flatten() {
                if crate::dimensions::Dimension::from_name(d).is_none() {
                    return Err((n, format!("{d:?} is not a dimension")));
                }
            }
            if r.loss_above.is_some_and(|e| !(e.is_finite() && e >= 0.0)) {
                return Err((n, "loss_above must be a number ≥ 0".into()));
            }
        }
        if !(1..=1_000).contains(&self.round_to) {
            return Err((0, "policy.round_to must be between 1 and 1000".into()));
        }
        if self.approval_expiry_days == 0 {
            return Err((0, "policy.approval_expiry_days must be at least 1".into()));
        }
        Ok(())
    }

    /// The decision for a query of a caller with `role` and `project` that
    /// spends `loss` (in the site's measure).
    pub fn decide(
        &self,
        role: Role,
        project: &str,
        query: &bonebank_schemas::FeasibilityQuery,
        loss: f64,
    ) -> Decision {
        let kind = |m: &bonebank_schemas::Measure| match m {
            bonebank_schemas::Measure::Samples => "samples",
            bonebank_schemas::Measure::Donors => "donors",
            bonebank_schemas::Measure::Sum { .. } => "sum",
            bonebank_schemas::Measure::Avg { .. } => "avg",
        };
        for (i, r) in self.rules.iter().enumerate() {
            let matches = r.role.is_none_or(|x| x == role)
                && r.projects
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| p == project))
                && r.measures.as_ref().is_none_or(|ms| {
                    query
                        .measures
                        .iter()
                        .any(|m| ms.iter().any(|k| k == kind(m)))
                })
                && r.min_dimensions.is_none_or(|n| query.group_by.len() >= n)
                && r.dimensions
                    .as_ref()
                    .is_none_or(|ds| query.group_by.iter().any(|g| ds.contains(g)))
                && r.loss_above.is_none_or(|e| loss > e);
            if matches {
                return Decision {
                    action: r.action,
                    rule: Some(i + 1),
                    reason: r.reason.clone(),
                };
            }
        }
        Decision {
            action: Action::Run,
            rule: None,
            reason: None,
        }
    }

    /// The effective policy as a `[policy]` section of a node config, with
    /// every default written out.
    pub fn to_toml(&self, site: &bonebank_schemas::SiteId) -> Result<String, String> {
        #[derive(Serialize)]
        struct Section<'a> {
            policy: &'a Policy,
        }
        let body = toml::to_string_pretty(&Section { policy: self })
            .map_err(|e| format!("the policy could not be written as TOML: {e}"))?;
        Ok(format!(
            "# The policy {site} enforces: its config merged over the built-in defaults.\n\
             # Rules are matched in order; a query no rule matches runs at once.\n\n{body}"
        ))
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

/// Every key of `dimension` at `site`, in the order answers list them.
pub fn dimension_values(dimension: Dimension, site: &SiteId, policy: &Policy) -> Vec<String> {
    fn codes<T: ValueSet>() -> Vec<String> {
        T::CODES.iter().map(|c| (*c).to_owned()).collect()
    }
    match dimension {
        Dimension::SiteId => vec![site.to_string()],
        Dimension::Country => codes::<Country>(),
        Dimension::SampleType => codes::<SampleType>(),
        Dimension::MaterialSubtype => codes::<MaterialSubtype>(),
        Dimension::StorageTemperature => codes::<StorageTemperature>(),
        Dimension::Sex => codes::<Sex>(),
        Dimension::AgeBand => AGE_BANDS.map(String::from).to_vec(),
        Dimension::AgeBand5 => crate::dimensions::AGE_BANDS_5.map(String::from).to_vec(),
        Dimension::AgeRange => crate::dimensions::AGE_RANGES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        Dimension::SamplingYear => (policy.sampling_years[0]..=policy.sampling_years[1])
            .map(|y| y.to_string())
            .collect(),
        Dimension::DiagnosisCategory => {
            let mut v = policy.diagnosis_categories.clone();
            v.sort();
            v.dedup();
            v.extend(["other".to_owned(), "none".to_owned()]);
            v
        }
        Dimension::DiagnosisChapter => CHAPTERS
            .iter()
            .map(|c| (*c).to_owned())
            .chain(["none".to_owned()])
            .collect(),
    }
}
