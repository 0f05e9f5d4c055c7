//! The query service: one method per thing a caller can ask of a site. A
//! question reads top to bottom in this file: parse and check it, hand out a
//! remembered release if there is one (or a steward's ticket,
//! [`approvals`]), reserve the loss before any data is read, compute the
//! bounded aggregates, noise them, and commit the release together with its
//! charge and audit entry. The plan a checked question becomes, and each
//! aggregate's share of the loss, are in [`plan`]; what a site says before
//! reading data (its description, budgets, a question's preview) is in
//! [`describe`].

use std::sync::Arc;

use bonebank_schemas::wire::{QueryRequest, QueryResult};
use bonebank_schemas::{FeasibilityQuery, Role, SiteId};
use sha2::{Digest, Sha256};

use crate::engine::{Plan, QueryEngine};
use crate::limits::{FairShare, WorkLimits};
use crate::privacy::{self, NoiseMechanism};
use crate::store::{Committed, Payer, Store};
use crate::{Error, Result, audit};
use bonebank_query::policy::{Action, Policy};
use bonebank_query::{self as query, Checked, Refusal, limits, question_id, sql};
pub use bonebank_service::{Caller, Steward};

mod approvals;
mod bounds;
pub mod catalogue;
mod describe;
mod plan;
mod stewards;

/// What a steward's queue says about a caller's request.
enum Approval {
    /// A steward approved this caller's request (the ticket id).
    /// The ticket, and the steward's note on approving it.
    Approved(String, Option<String>),
    /// Still waiting, or rejected: the error the caller gets.
    Waiting(Error),
}

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
    /// ε of a ρ by OpenDP's conversion (a numerical search, milliseconds
    /// each), by ρ's bits: a site's losses are a handful of values.
    conversions: Arc<std::sync::Mutex<std::collections::HashMap<u64, f64>>>,
    /// The sample bounds of the dataset version last asked about.
    bounds: Arc<std::sync::Mutex<Option<Arc<bounds::MeasuredBounds>>>>,
    /// Held while the sample bounds of a version are measured.
    measuring: Arc<tokio::sync::Mutex<()>>,
    /// The catalogue last published.
    catalogue: Arc<std::sync::Mutex<Option<Arc<bonebank_schemas::wire::Catalogue>>>>,
    /// Held while a catalogue is measured.
    measuring_catalogue: Arc<tokio::sync::Mutex<()>>,
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
            conversions: Arc::default(),
            bounds: Arc::default(),
            measuring: Arc::default(),
            catalogue: Arc::default(),
            measuring_catalogue: Arc::default(),
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

    /// Parses and checks a request: a short one here, a long one on a
    /// blocking thread, never on an HTTP worker (see
    /// [`limits::parse_inline`]): however a question is built, it cannot
    /// stall the workers.
    async fn parse_and_check(&self, caller: &Caller, request: &QueryRequest) -> Result<Checked> {
        let inline = limits::parse_inline(request.sql.as_deref());
        let (request, role) = (request.clone(), caller.role);
        let (site, policy) = (self.site.clone(), self.policy.clone());
        let span = tracing::Span::current();
        let work = move || {
            let q = Self::parse(&request)?;
            span.record("question", question_id(&q.canonical()));
            check_for(&q, request.loss, role, &site, &policy)
        };
        if inline { work() } else { blocking(work).await }
    }

    /// Runs a query and returns its noisy answer. Every request and its
    /// outcome goes to the audit log; a release in the same transaction as
    /// its charge. Traced with the site, the user and the question's id
    /// (see [`question_id`]), the same id the coordinator logs.
    #[tracing::instrument(name = "question", skip_all, fields(site = %self.site, user = %caller.user, question = tracing::field::Empty))]
    pub async fn run(&self, caller: &Caller, request: &QueryRequest) -> Result<QueryResult> {
        let mut detail = audit::Question {
            user: caller.user.clone(),
            project: caller.project.clone(),
            role: caller.role.to_string(),
            loss: request.loss,
            ..Default::default()
        };
        let outcome = self.run_audited(caller, request, &mut detail).await;
        let outcome_name = match &outcome {
            Ok((_, true)) => None,
            Ok((r, false)) if r.remembered => Some("remembered"),
            // The numbers a steward's approval released, picked up: the
            // release itself is logged with the approval.
            Ok((r, false)) if r.source == bonebank_schemas::wire::Source::Approval => {
                Some("picked_up")
            }
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
            detail.outcome = Some(name.into());
            if let Err(e) = &outcome {
                // The reason as the caller saw it: refusals name constructs
                // and settings, never data.
                detail.reason = Some(bonebank_service::error::WireError::body(e).message);
            }
            if detail.query.is_none()
                && let Some(sql) = &request.sql
            {
                detail.sql = Some(sql.chars().take(2_000).collect());
            }
            self.store
                .audit_grouped("request", &caller.user, audit::detail(&detail))
                .await?;
        }
        outcome.map(|(r, _)| r)
    }

    /// Runs a query; the flag says whether the audit entry was written with
    /// the release. `detail` collects what the audit entry should say.
    async fn run_audited(
        &self,
        caller: &Caller,
        request: &QueryRequest,
        detail: &mut audit::Question,
    ) -> Result<(QueryResult, bool)> {
        let _in_flight = self.fair.enter(&caller.user)?;
        let checked = self.parse_and_check(caller, request).await?;
        detail.query = Some(checked.query.to_sql());
        detail.loss = Some(checked.loss);
        let version = self.engine.dataset_version()?.ok_or(Error::NoData)?;
        self.note_dataset(&version).await?;
        let units = privacy::units(checked.loss);
        let samples_bound = self.samples_bound(Some(&version), &checked).await?;
        let key = self.release_key(&version, &checked, units, samples_bound);

        // The rules hold on every path: a remembered release is the same
        // numbers, but the steward decided who may receive them.
        let decision =
            self.policy
                .decide(caller.role, &caller.project, &checked.query, checked.loss);
        detail.rule = decision.rule;
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
                return match self
                    .ticket(
                        caller,
                        &checked,
                        key.clone(),
                        request.purpose.as_ref(),
                        detail,
                    )
                    .await?
                {
                    Approval::Approved(ticket, note) => {
                        let (store, user) = (self.store.clone(), caller.user.clone());
                        let found = blocking(move || {
                            Ok(store
                                .release(&key)?
                                .map(|(json, _)| (json, store.charged_for(&user, &key))))
                        })
                        .await?;
                        match found {
                            Some((json, charged)) => {
                                detail.ticket = Some(ticket);
                                detail.dataset_version = Some(version);
                                let mut result = remembered(&json)?;
                                result.remembered = false;
                                result.source = bonebank_schemas::wire::Source::Approval;
                                result.charged = privacy::epsilon(charged?);
                                result.steward_note = note;
                                Ok((result, false))
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

        // A release asked for lately is in memory; any other is looked up
        // in the database, off the HTTP workers.
        let found = match self.store.recent_release(&key) {
            Some(hit) => Some(hit),
            None => {
                let (store, k) = (self.store.clone(), key.clone());
                blocking(move || store.release(&k)).await?
            }
        };
        if let Some((json, _)) = found {
            detail.dataset_version = Some(version);
            return Ok((remembered(&json)?, false));
        }
        // Only fresh questions run a plan, and only they take a token.
        self.fair.take(&caller.user, &caller.project)?;
        self.release(caller, &checked, samples_bound, version, key, detail)
            .await
    }

    /// Reserves the budget, runs the plan, adds noise and commits the release
    /// with its charge and audit entry.
    async fn release(
        &self,
        caller: &Caller,
        checked: &Checked,
        samples_bound: i64,
        version: String,
        key: String,
        detail: &mut audit::Question,
    ) -> Result<(QueryResult, bool)> {
        let checked = checked.clone();
        let plan = self.plan(&checked, samples_bound);
        let units = privacy::units(checked.loss);
        let clock = std::time::Instant::now();
        let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1000.0;
        let calibrations = self.calibrate(&plan, units)?;
        let calibrate_ms = ms(clock);
        // What the privacy maps state, each rounded up: never less than the
        // release costs, and never more than the loss asked for.
        let charge: i64 = calibrations.iter().map(|c| privacy::units_up(c.loss)).sum();
        let payer = Payer {
            user: caller.user.clone(),
            project: caller.project.clone(),
        };
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let clock = std::time::Instant::now();
        let reservation = blocking(move || store.reserve(&payer, charge, &policy))
            .await?
            .map_err(Error::BudgetExhausted)?;
        let reserve_ms = ms(clock);

        let clock = std::time::Instant::now();
        let exact = self.engine.aggregate(&plan).await?;
        let engine_ms = ms(clock);
        // The data may have changed since the version was read: key on what ran.
        let key = if exact.dataset_version == version {
            key
        } else {
            self.release_key(&exact.dataset_version, &checked, units, samples_bound)
        };
        let clock = std::time::Instant::now();
        // Sampling is CPU work: off the HTTP workers.
        let (this, asked) = (self.clone(), checked.clone());
        let version = exact.dataset_version.clone();
        let result = blocking(move || {
            this.noise(
                &asked,
                &plan,
                &exact.values,
                &version,
                &calibrations,
                charge,
            )
        })
        .await?;
        let noise_ms = ms(clock);
        let json = serde_json::to_string(&result).map_err(|e| Error::Engine(e.to_string()))?;
        let query_json = checked.query.canonical_json();
        let dataset_version = result.dataset_version.clone();
        detail.dataset_version = Some(dataset_version.clone());
        detail.release = Some(key.clone());
        detail.outcome = Some("released".into());
        let (actor, audit) = (caller.user.clone(), detail.clone());
        let clock = std::time::Instant::now();
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
        let commit_ms = ms(clock);
        tracing::debug!(
            calibrate_ms,
            reserve_ms,
            engine_ms,
            noise_ms,
            commit_ms,
            "released"
        );
        match committed {
            Committed::Released => Ok((result, true)),
            Committed::AlreadyReleased(existing) => Ok((remembered(&existing)?, true)),
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
        let mechanism = privacy::mechanism(self.policy.accounting);
        let released = privacy::release::assemble(
            self.noise.as_ref(),
            mechanism,
            self.policy.round_to,
            &checked.query.measures,
            plan.cells(),
            exact,
            calibrations,
        )?;
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
            measures: released.measures,
            dimensions: plan.dimensions.clone(),
            rows: released.rows,
            source: bonebank_schemas::wire::Source::Fresh,
            steward_note: None,
        })
    }

    pub fn dataset_version(&self) -> Result<Option<String>> {
        Ok(self.engine.dataset_version()?)
    }

    /// Loads the site's data now and each new version as it is imported,
    /// off the request path.
    pub fn watch_data(&self) {
        self.engine.clone().watch();
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

fn remembered(json: &str) -> Result<QueryResult> {
    let mut result: QueryResult =
        serde_json::from_str(json).map_err(|e| Error::Engine(format!("stored release: {e}")))?;
    result.remembered = true;
    result.charged = 0.0;
    Ok(result)
}

/// Runs database work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Engine(format!("worker: {e}")))?
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
}
