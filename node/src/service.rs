//! The query service: one method per thing a caller can ask of a site. It
//! parses and checks the query, returns a remembered release when there is
//! one, reserves ε before any data is read, computes the bounded aggregates,
//! noises them, and commits the release together with its charge.

use std::sync::Arc;

use bonebank_schemas::surface::{self, Role as ColumnRole};
use bonebank_schemas::wire::{
    Accounting, ApprovalDecision, ApprovalRequest, ApproxDp, BoundedColumn, BudgetAccount,
    BudgetStatus, DimensionDescription, FilterColumn, MeasureNoise, MeasurePreview, Mechanism,
    NoisyValue, Preview, QueryRequest, QueryResult, ResultRow, SiteDescription, TicketStatus,
};
use bonebank_schemas::{FeasibilityQuery, Measure, Role, SiteId};
use sha2::{Digest, Sha256};

use crate::engine::{Aggregate, Plan, QueryEngine, Spread};
use crate::limits::{FairShare, WorkLimits};
use crate::policy::{Action, Policy};
use crate::privacy::{self, NoiseMechanism, halfwidth};
use crate::query::{self, Checked, Dimension, Refusal, dimension_values, limits, sql};
use crate::store::{Committed, Payer, Store};
use crate::{Error, Result};

/// A caller whose identity was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub project: String,
    pub role: Role,
    /// For stewards: the sites they steward.
    pub sites: Vec<String>,
}

/// What a steward's queue says about a caller's request.
enum Approval {
    /// A steward approved this caller's request (the ticket id).
    Approved(String),
    /// Still waiting, or rejected: the error the caller gets.
    Waiting(Error),
}

/// Coverage of the intervals released with each number.
const COVERAGE: f64 = 0.95;

/// A site's query service.
#[derive(Debug, Clone)]
pub struct QueryService {
    pub site: SiteId,
    pub policy: Arc<Policy>,
    engine: Arc<dyn QueryEngine>,
    noise: Arc<dyn NoiseMechanism>,
    store: Store,
    /// Each user's and project's share of the site.
    fair: FairShare,
    /// The dataset version last recorded in the audit log by this process.
    noted_version: Arc<std::sync::Mutex<Option<String>>>,
}

impl QueryService {
    pub fn new(
        site: SiteId,
        policy: Policy,
        engine: Arc<dyn QueryEngine>,
        noise: Arc<dyn NoiseMechanism>,
        store: Store,
    ) -> Self {
        Self {
            site,
            policy: Arc::new(policy),
            engine,
            noise,
            store,
            fair: FairShare::new(WorkLimits::default()),
            noted_version: Arc::default(),
        }
    }

    /// The same service under other fair share limits.
    pub fn with_limits(mut self, limits: WorkLimits) -> Self {
        self.fair = FairShare::new(limits);
        self
    }

    /// The node's state database (ledger, releases, audit log).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Parses a request into a query, held to the language's limits.
    pub fn parse(request: &QueryRequest) -> Result<FeasibilityQuery> {
        match (&request.sql, &request.query) {
            (Some(text), None) => sql::parse(text).map_err(Error::QueryRefused),
            (None, Some(q)) => {
                limits::check_query(q).map_err(Error::QueryRefused)?;
                Ok(q.clone())
            }
            _ => Err(Error::BadRequest(
                "send either \"sql\" or \"query\", not both and not neither".into(),
            )),
        }
    }

    /// Checks a query for a caller without running it.
    pub fn check(
        &self,
        caller: &Caller,
        q: &FeasibilityQuery,
        loss: Option<f64>,
    ) -> Result<Checked> {
        check_for(q, loss, caller.role, &self.site, &self.policy)
    }

    /// Parses and checks a request on a blocking thread, never on an HTTP
    /// worker: however a question is built, it cannot stall the workers.
    async fn parse_and_check(&self, caller: &Caller, request: &QueryRequest) -> Result<Checked> {
        let (request, role) = (request.clone(), caller.role);
        let (site, policy) = (self.site.clone(), self.policy.clone());
        let span = tracing::Span::current();
        blocking(move || {
            let q = Self::parse(&request)?;
            span.record("question", question_id(&q.canonical()));
            check_for(&q, request.loss, role, &site, &policy)
        })
        .await
    }

    /// Runs a query and returns its noisy answer. Every request and its
    /// outcome goes to the audit log; a release in the same transaction as
    /// its charge. Traced with the site, the user and the question's id
    /// (see [`question_id`]), the same id the coordinator logs.
    #[tracing::instrument(name = "question", skip_all, fields(site = %self.site, user = %caller.user, question = tracing::field::Empty))]
    pub async fn run(&self, caller: &Caller, request: &QueryRequest) -> Result<QueryResult> {
        let mut detail = serde_json::json!({
            "user": caller.user,
            "project": caller.project,
            "role": caller.role.to_string(),
            "loss": request.loss,
        });
        let outcome = self.run_audited(caller, request, &mut detail).await;
        let outcome_name = match &outcome {
            Ok((_, true)) => None,
            Ok((r, false)) if r.remembered => Some("remembered"),
            Ok(_) => Some("released"),
            Err(Error::QueryRefused(_)) => Some("query_refused"),
            Err(Error::PolicyRefused(_)) => Some("policy_refused"),
            Err(Error::BudgetExhausted(_)) => Some("budget_exhausted"),
            Err(Error::BadRequest(_)) => Some("bad_request"),
            Err(Error::NoData) => Some("no_data"),
            Err(Error::TooManyRequests { .. }) => Some("too_many_requests"),
            Err(Error::TooSlow(_)) => Some("stopped"),
            Err(Error::Pending { audited: true, .. }) => None,
            Err(Error::Pending { .. }) => Some("pending_approval"),
            Err(_) => Some("failed"),
        };
        if let Some(name) = outcome_name {
            detail["outcome"] = name.into();
            if let Err(e) = &outcome {
                // The reason as the caller saw it: refusals name constructs
                // and settings, never data.
                detail["reason"] = e.body().message.into();
            }
            if detail.get("query").is_none()
                && let Some(sql) = &request.sql
            {
                detail["sql"] = sql.chars().take(2_000).collect::<String>().into();
            }
            let (store, actor) = (self.store.clone(), caller.user.clone());
            blocking(move || store.audit("request", &actor, &detail)).await?;
        }
        outcome.map(|(r, _)| r)
    }

    /// Runs a query; the flag says whether the audit entry was written with
    /// the release. `detail` collects what the audit entry should say.
    async fn run_audited(
        &self,
        caller: &Caller,
        request: &QueryRequest,
        detail: &mut serde_json::Value,
    ) -> Result<(QueryResult, bool)> {
        let _in_flight = self.fair.enter(&caller.user)?;
        let checked = self.parse_and_check(caller, request).await?;
        detail["query"] = checked.query.to_sql().into();
        detail["loss"] = checked.loss.into();
        let version = self.engine.dataset_version()?.ok_or(Error::NoData)?;
        self.note_dataset(&version).await?;
        let units = privacy::units(checked.loss);
        let key = self.release_key(&version, &checked, units);

        // The rules hold on every path: a remembered release is the same
        // numbers, but the steward decided who may receive them.
        let decision =
            self.policy
                .decide(caller.role, &caller.project, &checked.query, checked.loss);
        if let Some(rule) = decision.rule {
            detail["rule"] = rule.into();
        }
        match decision.action {
            Action::Run => {}
            Action::Deny => {
                return Err(Error::PolicyRefused(Refusal::new(
                    decision
                        .reason
                        .unwrap_or_else(|| "this site's policy refuses this query".into()),
                    "ask the site's data steward what this site answers",
                )));
            }
            // Only a steward's approval of this caller's own request hands
            // out the release, even if someone else's request made it.
            Action::Approve => {
                return match self.ticket(caller, &checked, key.clone(), detail).await? {
                    Approval::Approved(ticket) => {
                        let store = self.store.clone();
                        match blocking(move || store.release(&key)).await? {
                            Some((json, _)) => {
                                detail["ticket"] = ticket.into();
                                detail["dataset_version"] = version.into();
                                Ok((remembered(&json)?, false))
                            }
                            None => Err(Error::Engine(format!(
                                "ticket {ticket} is approved but its release is missing"
                            ))),
                        }
                    }
                    Approval::Waiting(e) => Err(e),
                };
            }
        }

        let store = self.store.clone();
        let k = key.clone();
        if let Some((json, _)) = blocking(move || store.release(&k)).await? {
            detail["dataset_version"] = version.into();
            return Ok((remembered(&json)?, false));
        }
        // Only fresh questions run a plan, and only they take a token.
        self.fair.take(&caller.user, &caller.project)?;
        self.release(caller, &checked, version, key, detail).await
    }

    /// For a query that needs a steward: the caller's own approved ticket
    /// for it, or why the caller waits (filing a new ticket if there is none,
    /// or it expired).
    async fn ticket(
        &self,
        caller: &Caller,
        checked: &Checked,
        key: String,
        detail: &mut serde_json::Value,
    ) -> Result<Approval> {
        let (store, user, k) = (self.store.clone(), caller.user.clone(), key.clone());
        let existing = blocking(move || store.ticket_for(&user, &k)).await?;
        let site = self.site.to_string();
        if let Some(t) = existing {
            detail["ticket"] = t.id.clone().into();
            match t.current_state() {
                "approved" => return Ok(Approval::Approved(t.id)),
                "pending" => {
                    return Ok(Approval::Waiting(Error::Pending {
                        site,
                        ticket: t.id,
                        audited: false,
                    }));
                }
                "rejected" => {
                    return Ok(Approval::Waiting(Error::PolicyRefused(Refusal::new(
                        format!(
                            "a data steward of {site} rejected this query: {}",
                            t.reason.as_deref().unwrap_or("no reason given")
                        ),
                        "change the question, or talk to the site's data steward",
                    ))));
                }
                // Expired: ask anew.
                _ => {}
            }
        }
        let created = crate::store::now();
        let ticket = crate::store::Ticket {
            id: new_ticket_id(),
            created,
            expires: created + i64::from(self.policy.approval_expiry_days) * 86_400,
            user: caller.user.clone(),
            project: caller.project.clone(),
            role: caller.role.to_string(),
            release_key: key,
            query: checked.query.canonical_json(),
            loss: checked.loss,
            state: "pending".into(),
            decided_by: None,
            reason: None,
        };
        detail["ticket"] = ticket.id.clone().into();
        detail["outcome"] = "pending_approval".into();
        let (store, audit, t) = (self.store.clone(), detail.clone(), ticket.clone());
        blocking(move || store.file_ticket(&t, &audit)).await?;
        Ok(Approval::Waiting(Error::Pending {
            site,
            ticket: ticket.id,
            audited: true,
        }))
    }

    /// Reserves the budget, runs the plan, adds noise and commits the release
    /// with its charge and audit entry.
    async fn release(
        &self,
        caller: &Caller,
        checked: &Checked,
        version: String,
        key: String,
        detail: &mut serde_json::Value,
    ) -> Result<(QueryResult, bool)> {
        let checked = checked.clone();
        let plan = self.plan(&checked);
        let units = privacy::units(checked.loss);
        let calibrations = self.calibrate(&plan, units)?;
        // What the privacy maps state, each rounded up: never less than the
        // release costs, and never more than the loss asked for.
        let charge: i64 = calibrations.iter().map(|c| privacy::units_up(c.loss)).sum();
        let payer = Payer {
            user: caller.user.clone(),
            project: caller.project.clone(),
        };
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let reservation = blocking(move || store.reserve(&payer, charge, &policy))
            .await?
            .map_err(Error::BudgetExhausted)?;

        let started = std::time::Instant::now();
        let exact = self.engine.aggregate(&plan).await?;
        let engine_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The data may have changed since the version was read: key on what ran.
        let key = if exact.dataset_version == version {
            key
        } else {
            self.release_key(&exact.dataset_version, &checked, units)
        };
        let result = self.noise(
            &checked,
            &plan,
            &exact.values,
            &exact.dataset_version,
            &calibrations,
            charge,
        )?;
        let json = serde_json::to_string(&result).map_err(|e| Error::Engine(e.to_string()))?;
        let query_json = checked.query.canonical_json();
        let dataset_version = exact.dataset_version.clone();
        detail["dataset_version"] = dataset_version.clone().into();
        detail["release"] = key.clone().into();
        detail["outcome"] = "released".into();
        let (actor, audit) = (caller.user.clone(), detail.clone());
        let committed = blocking(move || {
            reservation.commit(
                &key,
                &dataset_version,
                &query_json,
                &json,
                charge,
                &actor,
                audit,
            )
        })
        .await?;
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(engine_ms, total_ms, "released");
        match committed {
            Committed::Released => Ok((result, true)),
            Committed::AlreadyReleased(existing) => Ok((remembered(&existing)?, true)),
        }
    }

    /// Pending requests, for a steward of this site.
    pub async fn approvals(&self, steward: &Caller) -> Result<Vec<ApprovalRequest>> {
        self.check_steward(steward)?;
        let store = self.store.clone();
        let tickets = blocking(move || store.pending_tickets()).await?;
        let mut out = Vec::new();
        for t in tickets {
            let (requester, query) = requester_of(&t)?;
            let budget = self.budget(&requester).await?;
            let time = |s: i64| {
                chrono::DateTime::from_timestamp(s, 0)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            out.push(ApprovalRequest {
                ticket: t.id.clone(),
                user: t.user,
                project: t.project,
                role: t.role,
                sql: query.to_sql(),
                loss: t.loss,
                created: time(t.created),
                expires: time(t.expires),
                user_remaining: budget.user.remaining,
                project_remaining: budget.project.remaining,
            });
        }
        Ok(out)
    }

    /// A steward's decision. Approving reserves the requester's budget, runs
    /// the query and stores the release, so the requester's next look gets
    /// it; rejecting records the reason the requester will see.
    pub async fn decide(
        &self,
        steward: &Caller,
        ticket: &str,
        decision: &ApprovalDecision,
    ) -> Result<TicketStatus> {
        self.check_steward(steward)?;
        let (store, id) = (self.store.clone(), ticket.to_owned());
        let t = blocking(move || store.ticket(&id)).await?.ok_or_else(|| {
            Error::BadRequest(format!("there is no ticket {ticket} at this site"))
        })?;
        if t.current_state() != "pending" {
            return Err(Error::BadRequest(format!(
                "ticket {ticket} is {}, not pending",
                t.current_state()
            )));
        }
        let mut audit = serde_json::json!({
            "ticket": t.id,
            "requester": t.user,
            "decision": decision.decision,
        });
        let approve = match decision.decision.as_str() {
            "approve" => true,
            "reject" => false,
            other => {
                return Err(Error::BadRequest(format!(
                    "decision {other:?}: use \"approve\" or \"reject\""
                )));
            }
        };
        let reason = decision
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if !approve && reason.is_none() {
            return Err(Error::BadRequest(
                "a rejection needs a reason; the researcher sees it".into(),
            ));
        }
        if let Some(r) = reason {
            audit["reason"] = r.into();
        }
        if approve {
            let (requester, query) = requester_of(&t)?;
            // Checked again under today's policy; the budget is reserved now.
            let checked = self.check(&requester, &query, Some(t.loss))?;
            let rules = self.policy.decide(
                requester.role,
                &requester.project,
                &checked.query,
                checked.loss,
            );
            if rules.action == Action::Deny {
                return Err(Error::PolicyRefused(Refusal::new(
                    format!(
                        "this site's policy now refuses this request (rule {})",
                        rules.rule.unwrap_or_default()
                    ),
                    "reject the request with a reason for the requester",
                )));
            }
            let version = self.engine.dataset_version()?.ok_or(Error::NoData)?;
            let units = privacy::units(checked.loss);
            let key = self.release_key(&version, &checked, units);
            let mut detail = serde_json::json!({
                "user": requester.user,
                "project": requester.project,
                "role": requester.role.to_string(),
                "loss": checked.loss,
                "query": checked.query.to_sql(),
                "ticket": t.id,
                "approved_by": steward.user,
            });
            let store = self.store.clone();
            let k = key.clone();
            if blocking(move || store.release(&k)).await?.is_none() {
                self.release(&requester, &checked, version, key, &mut detail)
                    .await?;
            }
        }
        let (store, id, who) = (self.store.clone(), t.id.clone(), steward.user.clone());
        let reason_owned = reason.map(str::to_owned);
        let decided = blocking(move || {
            store.decide_ticket(&id, approve, &who, reason_owned.as_deref(), &audit)
        })
        .await?;
        if !decided {
            return Err(Error::BadRequest(format!(
                "ticket {ticket} was decided or expired meanwhile"
            )));
        }
        Ok(TicketStatus {
            ticket: t.id,
            state: if approve { "approved" } else { "rejected" }.into(),
            reason: reason.map(str::to_owned),
        })
    }

    /// Where a ticket stands, for its requester or a steward of this site.
    pub async fn ticket_status(&self, caller: &Caller, ticket: &str) -> Result<TicketStatus> {
        let (store, id) = (self.store.clone(), ticket.to_owned());
        let t = blocking(move || store.ticket(&id)).await?;
        match t {
            Some(t) if t.user == caller.user || self.is_steward(caller) => Ok(TicketStatus {
                state: t.current_state().to_owned(),
                ticket: t.id,
                reason: t.reason,
            }),
            _ => Err(Error::BadRequest(format!(
                "you have no ticket {ticket} at this site"
            ))),
        }
    }

    fn is_steward(&self, caller: &Caller) -> bool {
        caller.role == Role::Steward && caller.sites.iter().any(|s| s == self.site.as_str())
    }

    fn check_steward(&self, caller: &Caller) -> Result<()> {
        if self.is_steward(caller) {
            Ok(())
        } else if caller.role == Role::Steward {
            Err(Error::Forbidden(format!(
                "you are not a data steward of {}",
                self.site
            )))
        } else {
            Err(Error::Forbidden(
                "only the site's data stewards decide on queries".into(),
            ))
        }
    }

    /// Records in the audit log that this node serves a dataset version, the
    /// first time it does.
    pub async fn note_dataset(&self, version: &str) -> Result<()> {
        if self.noted_version.lock().expect("lock").as_deref() == Some(version) {
            return Ok(());
        }
        let store = self.store.clone();
        let v = version.to_owned();
        blocking(move || {
            let last = store.last_audit("dataset")?;
            if last.as_ref().and_then(|d| d["version"].as_str()) != Some(v.as_str()) {
                store.audit("dataset", "node", &serde_json::json!({ "version": v }))?;
            }
            Ok(())
        })
        .await?;
        *self.noted_version.lock().expect("lock") = Some(version.to_owned());
        Ok(())
    }

    /// Records the policy in the audit log when it differs from the last one
    /// recorded (at the first start, and after every change).
    pub fn note_policy(&self) -> Result<()> {
        let policy =
            serde_json::to_value(&self.policy).map_err(|e| Error::Engine(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(policy.to_string().as_bytes()));
        let last = self.store.last_audit("policy")?;
        if last.as_ref().and_then(|d| d["sha256"].as_str()) != Some(digest.as_str()) {
            self.store.audit(
                "policy",
                "node",
                &serde_json::json!({ "sha256": digest, "policy": policy }),
            )?;
        }
        Ok(())
    }

    /// The plan for a checked query.
    pub fn plan(&self, checked: &Checked) -> Plan {
        let aggregates = checked
            .query
            .measures
            .iter()
            .flat_map(aggregates_of)
            .collect();
        Plan {
            dimensions: checked
                .dimensions
                .iter()
                .map(|d| d.name().to_owned())
                .collect(),
            keys: checked
                .dimensions
                .iter()
                .map(|d| dimension_values(*d, &self.site, &self.policy))
                .collect(),
            filter: checked.query.filter.clone(),
            aggregates,
            max_samples_per_donor: self.policy.max_samples_per_donor,
            spread: checked
                .dimensions
                .iter()
                .map(|d| {
                    if d.fixed_per_donor() {
                        Spread::FixedPerDonor
                    } else {
                        Spread::AtMost(self.policy.groups_per_donor(*d))
                    }
                })
                .collect(),
            seed: rand::random(),
        }
    }

    /// Releases are keyed by everything that shapes the numbers: site, data,
    /// canonical query, the loss and its measure, and the contribution
    /// bounds.
    fn release_key(&self, version: &str, checked: &Checked, units: i64) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{version}\n{}\n{units} {:?}\n{} {} {:?}",
            self.site,
            checked.query.canonical_json(),
            self.policy.accounting,
            self.policy.max_samples_per_donor,
            self.policy.max_groups_per_donor,
            self.policy.groups_per_donor
        ));
        hex::encode(h.finalize())
    }

    /// The noise of each aggregate vector, from its share of the loss:
    /// whole units per vector in proportion to [`need`], so the shares add
    /// up to exactly the loss asked for.
    fn calibrate(&self, plan: &Plan, units: i64) -> Result<Vec<privacy::Calibration>> {
        let cells = plan.cells_per_donor();
        let shares = split(units, &plan.aggregates.iter().map(need).collect::<Vec<_>>());
        plan.aggregates
            .iter()
            .zip(shares)
            .map(|(aggregate, share)| {
                let sensitivity = privacy::Sensitivity::of_cells(
                    aggregate.per_cell(plan.max_samples_per_donor),
                    cells,
                );
                self.noise
                    .calibrate(self.policy.accounting, sensitivity, privacy::epsilon(share))
            })
            .collect()
    }

    /// Noises each aggregate vector as calibrated and assembles the result.
    fn noise(
        &self,
        checked: &Checked,
        plan: &Plan,
        exact: &[Vec<i64>],
        version: &str,
        calibrations: &[privacy::Calibration],
        charge: i64,
    ) -> Result<QueryResult> {
        let mut noised = Vec::new();
        for (values, c) in exact.iter().zip(calibrations) {
            noised.push((c.sensitivity, self.noise.release(values, c)?));
        }

        let mechanism = privacy::mechanism(self.policy.accounting);
        let mut measures = Vec::new();
        let mut per_measure: Vec<Vec<NoisyValue>> = Vec::new();
        let mut next = noised.iter();
        for m in &checked.query.measures {
            match m {
                Measure::Avg { column } => {
                    let (ds, sum) = next.next().expect("one vector per aggregate");
                    let (_, count) = next.next().expect("one vector per aggregate");
                    let (lo, hi) = surface::bounds(column).expect("checked bounded column");
                    per_measure.push(averages(mechanism, sum, count, lo as f64, hi as f64));
                    measures.push(MeasureNoise {
                        measure: m.clone(),
                        label: m.label(),
                        mechanism,
                        sensitivity: *ds,
                        scale: sum.scale,
                        loss: sum.loss + count.loss,
                        rounded_to: 1,
                    });
                }
                _ => {
                    let (ds, v) = next.next().expect("one vector per aggregate");
                    let t = halfwidth(mechanism, v.scale, COVERAGE);
                    let r = self.policy.round_to.max(1);
                    per_measure.push(
                        v.values
                            .iter()
                            .map(|&x| NoisyValue {
                                value: round_to(x, r) as f64,
                                // Outward from the unrounded value: it covers
                                // whenever the exact interval did.
                                interval: [
                                    (x - t).div_euclid(r) as f64 * r as f64,
                                    (x + t + r - 1).div_euclid(r) as f64 * r as f64,
                                ],
                            })
                            .collect(),
                    );
                    measures.push(MeasureNoise {
                        measure: m.clone(),
                        label: m.label(),
                        mechanism,
                        sensitivity: *ds,
                        scale: v.scale,
                        loss: v.loss,
                        rounded_to: r,
                    });
                }
            }
        }
        let rows = plan
            .cells()
            .into_iter()
            .enumerate()
            .map(|(c, key)| ResultRow {
                key,
                values: per_measure.iter().map(|m| m[c].clone()).collect(),
            })
            .collect();
        let charged = privacy::epsilon(charge);
        Ok(QueryResult {
            site_id: self.site.to_string(),
            dataset_version: version.to_owned(),
            query: checked.query.clone(),
            accounting: self.policy.accounting,
            charged,
            loss: charged,
            approx_dp: self.approx_dp(charged)?,
            remembered: false,
            measures,
            dimensions: plan.dimensions.clone(),
            rows,
        })
    }

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
            return Err(Error::PolicyRefused(crate::query::Refusal::new(
                decision
                    .reason
                    .unwrap_or_else(|| "this site's policy refuses this query".into()),
                "ask the site's data steward",
            )));
        }
        let plan = self.plan(&checked);
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

    /// Under zCDP, what a loss of `rho` amounts to in (ε, δ)-DP at the
    /// site's δ.
    fn approx_dp(&self, rho: f64) -> Result<Option<ApproxDp>> {
        if self.policy.accounting != Accounting::Zcdp || rho <= 0.0 {
            return Ok(None);
        }
        let delta = self.policy.zcdp.delta;
        Ok(Some(ApproxDp {
            epsilon: privacy::zcdp_epsilon(rho, delta)?,
            delta,
        }))
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
        let account = |name: &str, limit: f64, units: i64| BudgetAccount {
            name: name.to_owned(),
            limit,
            spent: privacy::epsilon(units),
            remaining: (limit - privacy::epsilon(units)).max(0.0),
        };
        let budgets = self.policy.budgets();
        Ok(BudgetStatus {
            site_id: self.site.to_string(),
            accounting: self.policy.accounting,
            period_days: days,
            user: account(&caller.user, budgets.user, spent.user),
            project: account(&caller.project, budgets.project, spent.project),
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
        Ok(SiteDescription {
            site_id: self.site.to_string(),
            country: self.site.country().code().to_owned(),
            dataset_version: self.engine.dataset_version()?,
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
            max_groups_per_donor: p.max_groups_per_donor,
            budget_period_days: p.budget_period_days,
            limits: self.fair.limits().describe(),
        })
    }

    pub fn dataset_version(&self) -> Result<Option<String>> {
        self.engine.dataset_version()
    }
}

/// Checks a query for a caller of `role`; a refusal by the site's policy is
/// kept apart from one by the language.
fn check_for(
    q: &FeasibilityQuery,
    loss: Option<f64>,
    role: Role,
    site: &SiteId,
    policy: &Policy,
) -> Result<Checked> {
    query::check(q, loss, role, site, policy).map_err(|(r, by_policy)| {
        if by_policy {
            Error::PolicyRefused(r)
        } else {
            Error::QueryRefused(r)
        }
    })
}

/// How much of a query's loss each aggregate vector needs, relative to the
/// others. The donor count is what a feasibility question turns on (the
/// network's precision targets are set in donors, and it is the only count
/// peers release), so it gets sixteen parts; a sample count, a sum, and
/// each of an average's two vectors get one. Under zCDP the noise of a
/// vector grows as 1/√share, so with donors and samples asked together the
/// donor count is noised only 3% more than if it were asked alone, and the
/// sample count 4.1 times as much.
pub fn need(aggregate: &Aggregate) -> i64 {
    match aggregate {
        Aggregate::Donors => 16,
        Aggregate::Samples | Aggregate::Sum { .. } | Aggregate::Count { .. } => 1,
    }
}

/// `units` split in proportion to `weights`, in whole units that add up to
/// exactly `units` (the remainder goes one unit each to the first vectors).
pub fn split(units: i64, weights: &[i64]) -> Vec<i64> {
    let total: i64 = weights.iter().sum::<i64>().max(1);
    let mut shares: Vec<i64> = weights
        .iter()
        .map(|w| (i128::from(units) * i128::from(*w) / i128::from(total)) as i64)
        .collect();
    let mut left = units - shares.iter().sum::<i64>();
    for s in shares.iter_mut() {
        if left == 0 {
            break;
        }
        *s += 1;
        left -= 1;
    }
    shares
}

fn aggregates_of(m: &Measure) -> Vec<Aggregate> {
    let sum = |column: &str| {
        let (lo, hi) = surface::bounds(column).expect("checked bounded column");
        Aggregate::Sum {
            column: column.to_owned(),
            lo,
            hi,
        }
    };
    match m {
        Measure::Samples => vec![Aggregate::Samples],
        Measure::Donors => vec![Aggregate::Donors],
        Measure::Sum { column } => vec![sum(column)],
        Measure::Avg { column } => vec![
            sum(column),
            Aggregate::Count {
                column: column.clone(),
            },
        ],
    }
}

/// Averages as noisy sum over noisy count, clamped to the column's bounds;
/// the interval combines 97.5% intervals of both, so it covers at 95%.
fn averages(
    mechanism: Mechanism,
    sum: &privacy::Noised,
    count: &privacy::Noised,
    lo: f64,
    hi: f64,
) -> Vec<NoisyValue> {
    let (ts, tc) = (
        halfwidth(mechanism, sum.scale, 0.975) as f64,
        halfwidth(mechanism, count.scale, 0.975) as f64,
    );
    sum.values
        .iter()
        .zip(&count.values)
        .map(|(&s, &c)| {
            let (s, c) = (s as f64, c as f64);
            let value = if c >= 1.0 {
                (s / c).clamp(lo, hi)
            } else {
                (lo + hi) / 2.0
            };
            let low = if c + tc >= 1.0 {
                ((s - ts) / (c + tc)).clamp(lo, hi)
            } else {
                lo
            };
            let high = if c - tc >= 1.0 {
                ((s + ts) / (c - tc)).clamp(lo, hi)
            } else {
                hi
            };
            NoisyValue {
                value,
                interval: [low.min(value), high.max(value)],
            }
        })
        .collect()
}

fn remembered(json: &str) -> Result<QueryResult> {
    let mut result: QueryResult =
        serde_json::from_str(json).map_err(|e| Error::Engine(format!("stored release: {e}")))?;
    result.remembered = true;
    result.charged = 0.0;
    Ok(result)
}

/// A short id of a question as the coordinator sends it (its canonical
/// form, before a site adds a role's filter): the first 12 hex digits of
/// its SHA-256, so the coordinator's and every node's logs of one question
/// can be matched without logging the question.
pub fn question_id(query: &FeasibilityQuery) -> String {
    hex::encode(&Sha256::digest(query.canonical_json().as_bytes())[..6])
}

/// Runs database work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Engine(format!("worker: {e}")))?
}

/// A ticket id: 16 random bytes in hex (rand's thread-local CSPRNG, seeded by the OS).
fn new_ticket_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Who asked for a ticket's query, and the query.
fn requester_of(t: &crate::store::Ticket) -> Result<(Caller, FeasibilityQuery)> {
    let damaged = |e: &dyn std::fmt::Display| Error::Engine(format!("ticket {}: {e}", t.id));
    let caller = Caller {
        user: t.user.clone(),
        project: t.project.clone(),
        role: t.role.parse().map_err(|e| damaged(&e))?,
        sites: Vec::new(),
    };
    let query = serde_json::from_str(&t.query).map_err(|e| damaged(&e))?;
    Ok((caller, query))
}

/// `x` rounded to the nearest multiple of `r` (halves away from zero).
fn round_to(x: i64, r: i64) -> i64 {
    if r <= 1 {
        return x;
    }
    let down = x.div_euclid(r) * r;
    if (x - down) * 2 >= r { down + r } else { down }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_question_has_one_id_however_it_is_written() {
        let id = |sql: &str| question_id(&bonebank_query::sql::parse(sql).unwrap().canonical());
        let a = id(
            "SELECT COUNT(*) FROM samples WHERE sex IN ('Male', 'Female') AND age_at_sampling BETWEEN 50 AND 70",
        );
        let b = id(
            "select count(*) from samples where age_at_sampling >= 50 and age_at_sampling <= 70 and sex in ('Female', 'Male')",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 12);
        assert_ne!(a, id("SELECT COUNT(*) FROM samples WHERE sex = 'Male'"));
    }

    #[test]
    fn a_query_loss_is_split_by_need_into_exact_shares() {
        let donors = Aggregate::Donors;
        let samples = Aggregate::Samples;
        let shares = split(23_000_000, &[need(&samples), need(&donors)]);
        assert_eq!(shares.iter().sum::<i64>(), 23_000_000);
        assert_eq!(
            shares[1], 21_647_058,
            "donors get sixteen parts of seventeen"
        );
        assert_eq!(shares[0], 1_352_942);
        for units in [1, 7, 1_000_000_007] {
            for weights in [vec![1], vec![16, 1, 1], vec![1, 1, 1, 1, 1, 1, 1, 1]] {
                let s = split(units, &weights);
                assert_eq!(s.iter().sum::<i64>(), units, "{units} {weights:?}");
            }
        }
    }
}
