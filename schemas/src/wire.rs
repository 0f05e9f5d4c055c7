//! What node and coordinator send each other and their users: query requests,
//! noisy results, a site's public description, budgets, and the one error shape.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::query::{FeasibilityQuery, Measure};

/// How a site accounts for privacy loss: what a query's `loss` and every
/// budget are measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// Zero-concentrated DP (the network's default): discrete Gaussian
    /// noise, calibrated to the L2 sensitivity; losses are ρ and add up.
    #[default]
    Zcdp,
    /// Pure ε-DP: discrete Laplace noise, calibrated to the L1 sensitivity;
    /// losses are ε and add up.
    Pure,
}

impl Accounting {
    /// The letter the loss is written with: ρ or ε.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Zcdp => "ρ",
            Self::Pure => "ε",
        }
    }

    /// Old stored results carry no accounting: they were all pure ε.
    fn legacy() -> Self {
        Self::Pure
    }
}

/// The noise a measure got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Gaussian, `scale` its σ; the sensitivity is L2.
    DiscreteGaussian,
    /// Discrete Laplace, `scale` its b; the sensitivity is L1.
    #[default]
    DiscreteLaplace,
}

/// What a zCDP loss amounts to in (ε, δ)-DP, by OpenDP's conversion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApproxDp {
    pub epsilon: f64,
    pub delta: f64,
}

/// A request to run a query: SQL or a FeasibilityQuery, and the privacy loss
/// to spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"sql": "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE diagnosis LIKE 'S72%' GROUP BY sample_type"}),
    json!({"query": {"measures": [{"kind": "donors"}], "filter": {"range": {"column": "age_at_sampling", "min": 50, "max": 70}}}, "loss": 0.05}),
))]
pub struct QueryRequest {
    /// SQL in the supported subset; give this or `query`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub sql: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub query: Option<FeasibilityQuery>,
    /// Privacy loss to spend, in the site's measure (ρ under zCDP, ε under
    /// pure accounting); the site's default if absent.
    #[serde(default, alias = "epsilon", skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// What the question is for, shown to the data steward who decides a
    /// question that needs approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
}

/// A researcher's stated purpose: a sentence, and optionally a project
/// reference (an ethics vote, a grant, a Negotiator request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A field that may be left out but, when given, is not `null`: `sql` and
/// `query` of a question, of which exactly one is given.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A site's noisy answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResult {
    pub site_id: String,
    pub dataset_version: String,
    /// The query as the site ran it: canonical, with the filters the site's
    /// policy adds for the caller's role.
    pub query: FeasibilityQuery,
    /// What `charged` and `loss` are measured in.
    #[serde(default = "Accounting::legacy")]
    pub accounting: Accounting,
    /// Loss charged for this release; 0 when it was a remembered release.
    #[serde(alias = "epsilon_charged")]
    pub charged: f64,
    /// Loss the release cost when it was first made.
    #[serde(alias = "epsilon")]
    pub loss: f64,
    /// Under zCDP, the (ε, δ)-DP guarantee this release alone amounts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approx_dp: Option<ApproxDp>,
    /// Whether these numbers were released before (same query, same data).
    pub remembered: bool,
    /// How each measure was protected.
    pub measures: Vec<MeasureNoise>,
    /// The dimensions of each row's key, in order.
    pub dimensions: Vec<String>,
    /// One row per combination of dimension values, every key present.
    pub rows: Vec<ResultRow>,
    /// Where the numbers came from: measured for this question (`fresh`),
    /// or worked out from the site's catalogue of `dataset_version`
    /// (`catalogue`, charged to nobody).
    #[serde(default)]
    pub source: Source,
    /// A data steward's note on approving this question, for the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward_note: Option<String>,
}

/// Where a site's numbers came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Measured for this question (or a remembered release of it).
    #[default]
    Fresh,
    /// Post-processing of the site's published catalogue: free.
    Catalogue,
    /// Released when a data steward approved this requester's question.
    /// `charged` is what that release charged the requester then (0 where
    /// the numbers had been released before); picking them up is free.
    Approval,
}

/// The noise protecting one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeasureNoise {
    pub measure: Measure,
    pub label: String,
    #[serde(default)]
    pub mechanism: Mechanism,
    /// Sensitivity over all cells, from the contribution bounds: L2 for the
    /// Gaussian mechanism, L1 for Laplace.
    pub sensitivity: f64,
    /// Scale of the noise added to each cell (σ or b).
    pub scale: f64,
    /// Loss spent on this measure, as OpenDP's privacy map states it.
    #[serde(alias = "epsilon")]
    pub loss: f64,
    /// The site's policy rounds released values to multiples of this (1:
    /// not rounded); intervals are widened outward to match.
    #[serde(default = "one")]
    pub rounded_to: i64,
}

fn one() -> i64 {
    1
}

/// One cell of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultRow {
    /// Values of the dimensions, in the order of `dimensions`.
    pub key: Vec<String>,
    /// One value per measure, in the order of `measures`.
    pub values: Vec<NoisyValue>,
}

/// What a question would cost at a site and how precise its answer would
/// be, from public parameters only: no data is read and nothing is charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub site_id: String,
    pub accounting: Accounting,
    /// The query as the site would run it.
    pub query: FeasibilityQuery,
    /// The loss the question would be charged, in the site's measure.
    pub loss: f64,
    /// Under zCDP, the (ε, δ)-DP that loss amounts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approx_dp: Option<ApproxDp>,
    /// The site's rules send this question to a data steward first.
    pub needs_approval: bool,
    /// Cells one donor may add to (the product of the bounds).
    pub cells_per_donor: i64,
    pub measures: Vec<MeasurePreview>,
}

/// The noise one measure would get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeasurePreview {
    pub measure: Measure,
    pub label: String,
    pub mechanism: Mechanism,
    pub sensitivity: f64,
    pub scale: f64,
    pub loss: f64,
    /// Every cell's value would be within ± this of the (bounded) count in
    /// 95% of releases; absent for averages, whose interval depends on the
    /// count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halfwidth: Option<f64>,
}

/// One site's preview, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SitePreview {
    pub site_id: String,
    pub status: SiteStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    /// The path the question would take at this site: answered from its
    /// catalogue (free), or measured fresh (charged as `preview` says).
    #[serde(default)]
    pub source: Source,
    /// Why the site's catalogue would not answer it, when it is fresh for
    /// that reason (absent when asked fresh, or the site has no catalogue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_fresh: Option<String>,
    /// The same as a stable code, for the app's words: `measures`,
    /// `no_table`, `donors_over_cells`, `cuts_band`, `years_beyond`,
    /// `category`, `condition` or `role_filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_fresh_code: Option<String>,
}

/// The coordinator's preview: each site's, and the ± at 95% of each
/// measure's total over the sites that previewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederatedPreview {
    pub query: FeasibilityQuery,
    pub sites: Vec<SitePreview>,
    /// Per measure; absent for averages.
    pub total_halfwidth: Vec<Option<f64>>,
    /// The answer of the sites whose catalogues answer the question, per
    /// site and in total over them: released data, free, the same numbers
    /// `POST /v1/query` would give from the catalogues. Absent when no
    /// site's catalogue answers it (or it was previewed fresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<FederatedResult>,
}

/// A released number with its uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoisyValue {
    /// The noisy value, not clamped (it may be negative): sums over sites
    /// stay unbiased. Averages are a ratio of noisy values.
    pub value: f64,
    /// A 95% interval for the true value, from the noise distribution.
    pub interval: [f64; 2],
}

/// What a researcher needs to write a query for a site; nothing about its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteDescription {
    pub site_id: String,
    pub country: String,
    pub dataset_version: Option<String>,
    pub dimensions: Vec<DimensionDescription>,
    /// Columns that may be filtered, and how.
    pub filters: Vec<FilterColumn>,
    /// Columns that `SUM`/`AVG` accept, with their clamping bounds.
    pub bounded_columns: Vec<BoundedColumn>,
    pub max_dimensions: usize,
    /// What losses and budgets are measured in.
    #[serde(default = "Accounting::legacy")]
    pub accounting: Accounting,
    /// The loss one query may spend.
    #[serde(alias = "epsilon")]
    pub loss: LossRange,
    /// Budgets per period, in the same measure.
    #[serde(default)]
    pub budgets: SiteBudgets,
    /// Under zCDP, what the user budget amounts to in (ε, δ)-DP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_budget_approx_dp: Option<ApproxDp>,
    /// The fixed bound of samples per donor and cell, where no measured
    /// bounds hold (see `sample_bounds`).
    pub max_samples_per_donor: i64,
    /// Under zCDP, the bounds measured for the current dataset version:
    /// a question's sample count counts at most what one of its cells can
    /// hold of these per donor (absent before the first question on a
    /// version measures them, or where the site does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_bounds: Option<SampleBoundsDescription>,
    pub max_groups_per_donor: i64,
    pub budget_period_days: u32,
    /// The filter this site adds to every question of a role, as SQL (e.g.
    /// industry partners: `consent_commercial = true`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub role_filters: std::collections::BTreeMap<String, String>,
    /// How large a question may be and how much work and how many questions
    /// one user may ask of this site.
    pub limits: SiteLimits,
    /// Under zCDP, the most the site releases in any 365 days, all users
    /// together: what protects a donor once answers are shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<YearlyLoss>,
}

/// A site's yearly loss: the bound its policy sets, and what it released
/// in the last 365 days, in ρ (zCDP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct YearlyLoss {
    /// The catalogues' bound: their loss times `versions_per_year`.
    pub catalogues: f64,
    /// Fresh questions' bound, the sample bounds included.
    pub fresh: f64,
    /// The two together.
    pub total: f64,
    /// `total` as (ε, δ)-DP at the site's δ.
    pub approx_dp: ApproxDp,
    /// What the site released in the last 365 days (both together).
    pub spent: f64,
}

/// The size and shape limits every question is held to, at the coordinator
/// and at every node, before and right after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueryLimits {
    /// Length of the SQL text.
    pub max_sql_bytes: usize,
    /// Length of a request's JSON body.
    pub max_body_bytes: usize,
    /// How deep parentheses, and levels of AND, OR and NOT, may nest.
    pub max_nesting: usize,
    /// AND, OR and NOT words in the SQL text.
    pub max_boolean_words: usize,
    /// Conditions (comparisons, IN, BETWEEN, LIKE, IS NULL) in the filter.
    pub max_predicates: usize,
    /// Values in one IN list.
    pub max_in_values: usize,
    pub max_measures: usize,
    pub max_group_by: usize,
}

/// A site's limits: the questions' size and shape, and its fair share rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteLimits {
    pub question: QueryLimits,
    /// Wall-clock time one question's plan may run before it is stopped;
    /// a stopped question is charged nothing.
    pub plan_timeout_ms: u64,
    /// Questions one user may have in flight at this site at once.
    pub concurrent_per_user: u32,
    /// Fresh questions (those that run a plan) one user may ask per minute;
    /// remembered answers do not count.
    pub user_questions_per_minute: u32,
    /// The same for all users of one project together.
    pub project_questions_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DimensionDescription {
    pub name: String,
    /// Every key a grouped answer lists, zeros included.
    pub values: Vec<String>,
    /// Every sample of a donor has the same value here (site, country,
    /// sex): a donor is in one of these cells.
    #[serde(default)]
    pub fixed_per_donor: bool,
    /// How many of these values one donor may add to in one answer (1 when
    /// fixed per donor); a donor in more keeps that many, chosen at random.
    #[serde(default)]
    pub groups_per_donor: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilterColumn {
    pub name: String,
    /// e.g. "=, <>, IN", "BETWEEN, <, <=, >, >=", "LIKE 'prefix%'".
    pub operators: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoundedColumn {
    pub name: String,
    pub min: i64,
    pub max: i64,
}

/// The privacy loss one query may spend, in the site's measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LossRange {
    pub min: f64,
    pub max: f64,
    pub default: f64,
}

/// How much loss may be spent per period: by the whole site, by one
/// project, by one user.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct SiteBudgets {
    pub site: f64,
    pub project: f64,
    pub user: f64,
}

/// The caller's own budget at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetStatus {
    pub site_id: String,
    #[serde(default = "Accounting::legacy")]
    pub accounting: Accounting,
    pub period_days: u32,
    pub user: BudgetAccount,
    pub project: BudgetAccount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetAccount {
    pub name: String,
    pub limit: f64,
    pub spent: f64,
    pub remaining: f64,
    /// When the oldest charge in the rolling period leaves it and its loss
    /// comes back (RFC 3339); absent while nothing is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
}

/// Every error a bonebank service returns: a stable code, a message for people
/// and a hint saying what would work. Never row values, exact counts, tokens
/// or internal addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For `pending_approval`: the ticket the question waits under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Stable error codes. Each has one HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not well-formed (bad JSON, neither SQL nor query, …).
    BadRequest,
    /// The query uses something outside the supported subset.
    QueryRefused,
    /// The query is valid but the site's policy does not allow it.
    PolicyRefused,
    /// Running the query would overspend a privacy budget.
    BudgetExhausted,
    /// No identity, or one that did not check out.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// The site has not imported any data yet.
    NoData,
    /// Not an error: the query waits for a data steward of the site. The
    /// message names the ticket; asking again later gets the answer.
    PendingApproval,
    NotFound,
    /// The identity provider's keys could not be fetched, so no token can be
    /// checked just now.
    IdentityUnavailable,
    /// The caller asked too much too fast; `Retry-After` says when to ask
    /// again.
    TooManyRequests,
    /// The question's work, estimated from its shape and the data's row
    /// count before any row is read, is more than the site allows; it was
    /// not run and nothing was charged.
    TooSlow,
    /// The HTTP method is not one this service answers (e.g. `TRACE`).
    MethodNotAllowed,
    /// The service's storage is full: it could not record what it must
    /// record with an answer, so it gave none; ask again later.
    StorageFull,
    /// The request does not fit what the service holds or is set up for:
    /// e.g. a Negotiator hand-off naming a site without a Directory
    /// collection, or asking to send where no Negotiator is configured.
    Conflict,
    /// Another service this one relies on (a BBMRI-ERIC Negotiator) did
    /// not do what was asked; the message says what it answered.
    UpstreamFailed,
    /// Our fault; details are in the service's log.
    Internal,
}

impl ErrorCode {
    /// The HTTP status for the code.
    pub fn status(self) -> u16 {
        match self {
            Self::PendingApproval => 202,
            Self::BadRequest | Self::QueryRefused => 400,
            Self::Unauthenticated => 401,
            Self::PolicyRefused | Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::BudgetExhausted | Self::TooManyRequests => 429,
            Self::TooSlow => 422,
            Self::NoData | Self::IdentityUnavailable => 503,
            Self::UpstreamFailed => 502,
            Self::StorageFull => 507,
            Self::Internal => 500,
        }
    }
}

/// A researcher's question to the coordinator: a [`QueryRequest`] and the
/// sites to ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"sql": "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE diagnosis LIKE 'S72%' GROUP BY sample_type"}),
    json!({"query": {"measures": [{"kind": "samples"}], "filter": {"in": {"column": "sex", "values": ["Female"]}}, "group_by": ["sample_type"]}, "sites": ["DE-LUE", "DK-ODE"]}),
))]
pub struct FederatedRequest {
    /// SQL in the supported subset; give this or `query`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub sql: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub query: Option<FeasibilityQuery>,
    /// Privacy loss each site spends, in the sites' measure; each site's
    /// default if absent.
    #[serde(default, alias = "epsilon", skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Site ids to ask; every site of the network if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
    /// Measure the question afresh at every site, charged as usual, even
    /// where a site's catalogue could answer it for free.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fresh: bool,
    /// What the question is for, for the stewards of sites where it needs
    /// approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
}

/// The sample bounds a node measured for one dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SampleBoundsDescription {
    pub dataset_version: String,
    /// Per sample type, the most samples of it of one donor a cell counts
    /// (0: no donor stood out of the noise with one).
    pub per_type: std::collections::BTreeMap<String, i64>,
    /// The ρ the site spent on measuring them, once for the version.
    pub loss: f64,
}

/// A site's catalogue: noisy donor and sample counts over a workload of
/// marginals of the public dimensions, measured once for one dataset
/// version with the site's catalogue loss. Everything derived from it is
/// post-processing and costs no one anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Catalogue {
    pub site: String,
    /// The dataset version the counts describe.
    pub dataset_version: String,
    /// When it was measured (RFC 3339, UTC).
    pub measured_at: String,
    /// The ρ (zCDP) the whole catalogue cost the site, once.
    pub loss: f64,
    /// The part of `loss` spent on measuring how many cells of each table
    /// a donor is in (each table's `cells_per_donor`); the tables' vectors
    /// spent the rest.
    #[serde(default)]
    pub cell_bounds_loss: f64,
    /// That loss as (ε, δ)-DP.
    pub approx_dp: ApproxDp,
    pub mechanism: Mechanism,
    /// The coverage the scales' intervals are stated for.
    pub coverage: f64,
    /// The filter the site adds to every question of these roles (as in
    /// `/v1/site`): the catalogue counts every donor, so it answers no
    /// question of theirs.
    #[serde(default)]
    pub role_filters: std::collections::BTreeMap<String, String>,
    /// Who the catalogue answers none of, in the order the site's rules
    /// decide: the first of these that matches a caller (by role and
    /// project) says whether the caller's questions are asked of the site,
    /// where its rules apply. They are the roles the site refuses, then
    /// the site's rules that hold for every question of a caller (no
    /// condition on the question itself). A caller none matches is
    /// answered from the catalogue.
    #[serde(default)]
    pub caller_rules: Vec<CallerRule>,
    /// Dimensions along which every table counts each donor in one value
    /// only: those where the site measured that its donors have one (at a
    /// fracture site, a donor's samples share one age band and one
    /// diagnosis). Donor counts add up over their values, as over sex.
    #[serde(default)]
    pub one_per_donor: Vec<String>,
    pub tables: Vec<CatalogueTable>,
}

/// Which callers a rule of the site holds for whatever they ask (see
/// [`Catalogue::caller_rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallerRule {
    /// The caller's role; any role if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The caller's project is one of these; any project if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// The rule sends such a caller's questions to a steward, or refuses
    /// them: the catalogue answers none of them.
    pub asked_fresh: bool,
}

impl CallerRule {
    /// Whether it holds for a caller of `role` in `project`.
    pub fn matches(&self, role: &str, project: &str) -> bool {
        self.role.as_deref().is_none_or(|r| r == role)
            && self
                .projects
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p == project))
    }
}

/// One marginal of a catalogue: a count per cell of the cartesian product of
/// its dimensions' keys, the first dimension most significant (no
/// dimensions: one cell, the site's total).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueTable {
    pub dimensions: Vec<String>,
    /// Each dimension's public keys, in order.
    pub keys: Vec<Vec<String>>,
    /// At most this many cells of the table count one donor (chosen by a
    /// keyed random draw where a donor is in more).
    pub cells_per_donor: i64,
    /// At most this many samples of one donor count in one cell.
    pub samples_per_donor: i64,
    /// The use every donor this table counts consented to (a code of
    /// `consent`, e.g. `commercial`: `consent_commercial = true`), or none
    /// for a table of every donor. Industry partners, whose questions the
    /// site restricts to donors with commercial consent, are answered from
    /// these tables, as is any question that asks for that consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// Distinct donors per cell.
    pub donors: NoisyCounts,
    /// Samples per cell.
    pub samples: NoisyCounts,
}

impl CatalogueTable {
    /// The ρ its two vectors cost.
    pub fn loss(&self) -> f64 {
        self.donors.loss + self.samples.loss
    }
}

/// The variance of one component of a catalogue table's estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComponentVariance {
    pub dimensions: Vec<String>,
    pub variance: f64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A vector of counts with the noise each carries: as measured, and as the
/// catalogue's consistent estimate with its error model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoisyCounts {
    /// The estimate per cell: the least-squares fit of all the catalogue's
    /// tables (so that tables add up to each other and to the total), then
    /// each cell taken to the nearest counts that are never negative and
    /// have samples at least the donors and at most `samples_per_donor`
    /// times them (which is all that can make a table's cells differ from
    /// a coarser table's).
    pub values: Vec<f64>,
    /// The counts as measured, each with its own noise, before the
    /// estimate reconciled them. Absent in a catalogue stored before
    /// catalogues were reconciled, whose `values` are as measured.
    #[serde(default)]
    pub measured: Vec<i64>,
    /// The estimate's error model: for each set of the table's dimensions,
    /// the variance of the estimate's component over exactly that set (its
    /// cells summed over the other dimensions and centred). The variance of
    /// any count over the table's cells follows from these. Absent in a
    /// catalogue stored before catalogues were reconciled: each value then
    /// carries the noise `scale` states.
    #[serde(default)]
    pub variances: Vec<ComponentVariance>,
    /// The L2 sensitivity the noise is calibrated to.
    pub sensitivity: f64,
    /// The noise's scale on each value (σ of the discrete Gaussian).
    pub scale: f64,
    /// The ρ this vector cost (part of the catalogue's loss).
    pub loss: f64,
}

/// The coordinator's merged answer: each site's status and numbers, and the
/// total over the sites that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederatedResult {
    /// The question's entry in the asker's history; looking it up again
    /// (`GET /v1/history/{id}`) fills in sites that were waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The canonical query the coordinator sent.
    pub query: FeasibilityQuery,
    pub dimensions: Vec<String>,
    /// Measure labels, in the order of every row's values.
    pub measures: Vec<String>,
    pub sites: Vec<SiteAnswer>,
    /// One row per key; a total is the sum of the answering sites' noisy
    /// values. `null` for averages, which do not add up across sites, and
    /// where no site answered (no answer is no number, not a zero).
    pub total: Vec<TotalRow>,
    /// Why there is no total, when no site answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_total: Option<String>,
    /// Sites asked that are not in the total.
    pub missing: Vec<String>,
    /// Milliseconds from receiving the question to sending the answer.
    pub elapsed_ms: u64,
}

/// What one site did with the question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteAnswer {
    pub site_id: String,
    pub status: SiteStatus,
    /// Why, for every status but `answered`: the site's own message where it
    /// sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For `waiting_for_approval`: the site's ticket, which the coordinator
    /// watches to tell the requester when it is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<QueryResult>,
}

/// The state of one site's part of a federated answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    Answered,
    /// A steward of the site has to approve the query first.
    WaitingForApproval,
    /// The site refused the query; the message is the site's reason.
    Refused,
    BudgetExhausted,
    /// No connection (down, or its certificate did not verify).
    Unreachable,
    /// No answer before the deadline.
    TimedOut,
    /// The site answered with an error or something unreadable.
    Failed,
    /// The site turned the question away because its user (or project) has
    /// asked too many at once or too fast.
    Busy,
}

impl SiteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::WaitingForApproval => "waiting for approval",
            Self::Refused => "refused",
            Self::BudgetExhausted => "budget exhausted",
            Self::Unreachable => "unreachable",
            Self::TimedOut => "timed out",
            Self::Failed => "failed",
            Self::Busy => "busy",
        }
    }
}

/// One key of the total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TotalRow {
    pub key: Vec<String>,
    pub values: Vec<Option<TotalValue>>,
}

/// A total over sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TotalValue {
    /// The sum of the sites' noisy values, clamped at zero after summing.
    pub value: f64,
    /// The sum before clamping (an unbiased estimate; may be negative).
    pub unclamped: f64,
    /// A 95% interval for the true total, from the sites' noise distributions.
    pub interval: [f64; 2],
    /// How many sites' values are in the sum.
    pub sites: usize,
}

/// A site as the coordinator lists it: no addresses, only what a researcher
/// needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteListing {
    pub site_id: String,
    /// `up`, or why not.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<SiteDescription>,
    /// How the coordinator reaches the site: `inbound` (the coordinator
    /// connects to the node) or `outbound` (the node connects out to the
    /// coordinator, for sites behind a firewall).
    #[serde(default = "inbound")]
    pub connection: String,
    /// For a site that connects out: when its node was last heard from
    /// (RFC 3339, UTC); absent if it has not connected since the
    /// coordinator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

fn inbound() -> String {
    "inbound".into()
}

/// A request the coordinator hands to a node that connects out: the same
/// method, path, grant and body it would have sent to an inbound node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkRequest {
    /// Unique per coordinator run; the answer carries it back.
    pub id: u64,
    /// `GET` or `POST`.
    pub method: String,
    /// The node API path without its leading slash, e.g. `v1/query`.
    pub path: String,
    /// The coordinator's grant for this site and the researcher who asks,
    /// checked by the node as on its own port (never the researcher's own
    /// access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// What a node's poll brings back: the requests waiting for it (none when
/// the poll was held for `heartbeat_ms` and nothing came), and how often
/// the coordinator expects to hear from the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkPoll {
    pub requests: Vec<LinkRequest>,
    pub heartbeat_ms: u64,
}

/// A node's answer to one [`LinkRequest`]: the HTTP status and JSON body
/// its own port would have sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkResponse {
    pub id: u64,
    pub status: u16,
    pub body: serde_json::Value,
}

/// One question in a researcher's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub query: FeasibilityQuery,
    #[serde(alias = "epsilon")]
    pub loss: Option<f64>,
    pub result: FederatedResult,
}

/// A query waiting for a steward (or decided by one), as stewards see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRequest {
    pub ticket: String,
    pub user: String,
    pub project: String,
    pub role: String,
    /// The query as the site would run it (forced filters included), in SQL.
    pub sql: String,
    /// The same query, for saying it in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<FeasibilityQuery>,
    /// The loss the query would spend, in the site's measure.
    #[serde(alias = "epsilon")]
    pub loss: f64,
    /// RFC 3339, UTC.
    pub created: String,
    pub expires: String,
    /// What the requester's and the project's budgets have left now.
    pub user_remaining: f64,
    pub project_remaining: f64,
    /// What they have spent here in the current period.
    #[serde(default)]
    pub user_spent: f64,
    #[serde(default)]
    pub project_spent: f64,
    /// `pending`, `approved`, `rejected` or `expired`.
    #[serde(default = "pending")]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// A rejection's reason, as the requester sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy rule (1-based) that sends this question to a steward, as
    /// the policy stands now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The requester's record at this site.
    #[serde(default)]
    pub history: RequesterHistory,
    /// What the requester says the question is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    /// How many different stewards must approve (2 under a four-eyes rule).
    #[serde(default = "one_approval")]
    pub approvals_required: u8,
    /// Under a four-eyes rule: who approved first, while a second must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_approval: Option<String>,
}

fn one_approval() -> u8 {
    1
}

/// What a requester has done at a site, for a steward deciding: questions
/// answered (fresh or remembered), and requests approved and rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequesterHistory {
    pub answered: i64,
    pub approved: i64,
    pub rejected: i64,
}

fn pending() -> String {
    "pending".into()
}

/// A site's privacy budget as its stewards see it: what every user and
/// project, and the site as a whole, spent in the current period, and the
/// releases day by day. Losses only, never counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteLedger {
    pub site_id: String,
    pub accounting: Accounting,
    pub period_days: u32,
    pub site: BudgetAccount,
    pub users: Vec<BudgetAccount>,
    pub projects: Vec<BudgetAccount>,
    /// Days of the period with releases, oldest first.
    pub days: Vec<LedgerDay>,
    /// Under zCDP: the site's yearly bound (catalogues and fresh questions)
    /// and what it released in the last 365 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<YearlyLoss>,
    /// The catalogue the site publishes now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<CatalogueSummary>,
    /// Why the site publishes no catalogue, where it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_catalogue: Option<String>,
}

/// A published catalogue in brief, for the stewards' budget page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueSummary {
    pub dataset_version: String,
    /// RFC 3339, UTC.
    pub measured_at: String,
    /// The ρ it cost the site, once.
    pub loss: f64,
    pub approx_dp: ApproxDp,
    pub tables: usize,
    pub cells: usize,
    /// Of `tables`, those of the donors with commercial consent (which
    /// answer industry partners), and the part of `loss` they cost.
    #[serde(default)]
    pub consented_tables: usize,
    #[serde(default)]
    pub consented_loss: f64,
}

/// One day's releases at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerDay {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub releases: u64,
    /// Loss charged that day, in the site's measure.
    pub spent: f64,
}

/// One entry of a node's hash-chained audit log, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// `request`, `decision`, `policy`, `dataset`, `import`.
    pub kind: String,
    /// Who caused it: a user, or `node` for the node itself.
    pub actor: String,
    /// What happened, as JSON: queries, identities, decisions; never counts.
    pub detail: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

/// A page of the audit log for stewards, newest first, with the whole
/// chain's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub site_id: String,
    pub entries: Vec<AuditEntry>,
    /// Entries in the whole log.
    pub total: i64,
    /// Whether the whole chain checks out.
    pub intact: bool,
    /// Where and why it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// The last entry's hash, when the chain is intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// A steward's decision on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// `approve` or `reject`.
    pub decision: String,
    /// Required when rejecting; the researcher sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a ticket stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TicketStatus {
    pub ticket: String,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `bonebank login` needs to sign in with the device flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginInfo {
    pub issuer: String,
    /// The CLI's (public) client id.
    pub client_id: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub resource: Option<String>,
    /// The issuer is bonebank's development provider.
    pub development: bool,
}

/// Who is signed in, as `/v1/whoami` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub role: String,
    pub project: String,
    pub sites: Vec<String>,
    /// For a browser session: the token its pages send back in
    /// `X-CSRF-Token` with every request that changes something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
    /// Whether this coordinator sends sample requests to a BBMRI-ERIC
    /// Negotiator (otherwise they can only be downloaded).
    #[serde(default)]
    pub negotiator: bool,
}

/// A question checked against the shared language, without asking anyone:
/// its canonical form and that form's SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckedQuestion {
    pub query: FeasibilityQuery,
    pub sql: String,
}

/// The caller's budget at one site, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetListing {
    pub site_id: String,
    /// `answered` when `budget` is there.
    pub status: SiteStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
}

/// A request for samples in the BBMRI-ERIC Negotiator (v3), made from an
/// answer: where the question can be seen, the question in words, and one
/// resource per chosen site (its collection in the BBMRI-ERIC Directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NegotiatorRequest {
    pub url: String,
    #[serde(rename = "humanReadable")]
    pub human_readable: String,
    pub resources: Vec<NegotiatorResource>,
}

/// A Directory collection, as the Negotiator names resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NegotiatorResource {
    /// e.g. `bbmri-eric:ID:DE_LUE:collection:MSC`
    pub id: String,
    pub name: String,
    pub organization: NegotiatorOrganization,
}

/// The biobank a collection belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NegotiatorOrganization {
    /// The Negotiator's own number for it; 0 when only the Directory id is
    /// known.
    pub id: i64,
    /// e.g. `bbmri-eric:ID:DE_LUE`
    #[serde(rename = "externalId")]
    pub external_id: String,
    pub name: String,
}

/// What to hand to the Negotiator from an answer. Read from a JSON object
/// only: serde's derived reading would also take an array of the fields in
/// order, and `[]`, every field being optional, as the empty request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, ToSchema)]
pub struct NegotiatorHandoffRequest {
    /// The sites to ask for samples; every answered site with a Directory
    /// collection when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
    /// Send it to the coordinator's Negotiator (else only build it, to
    /// download or send by hand).
    #[serde(default)]
    pub send: bool,
}

impl<'de> Deserialize<'de> for NegotiatorHandoffRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default)]
            sites: Option<Vec<String>>,
            #[serde(default)]
            send: bool,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        let Fields { sites, send } = d.deserialize_map(Object)?;
        Ok(Self { sites, send })
    }
}

/// The Negotiator request built from an answer, and where the researcher
/// continues in the Negotiator once it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NegotiatorHandoff {
    pub request: NegotiatorRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
}
