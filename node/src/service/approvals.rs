//! Stewards' approvals: a question that needs one files a ticket; a steward
//! of this site lists the waiting tickets and decides; the requester looks
//! at where a ticket stands.

use bonebank_query::policy::Action;
use bonebank_query::{Checked, Refusal};
use bonebank_schemas::FeasibilityQuery;
use bonebank_schemas::wire::{ApprovalDecision, ApprovalRequest, TicketStatus};

use super::{Approval, QueryService, blocking};
use crate::privacy;
use crate::service::{Caller, Steward};
use crate::store::TicketState;
use crate::{Error, Result, audit};

impl QueryService {
    /// For a query that needs a steward: the caller's own approved ticket
    /// for it, or why the caller waits (filing a new ticket if there is none,
    /// or it expired).
    pub(super) async fn ticket(
        &self,
        caller: &Caller,
        checked: &Checked,
        key: String,
        purpose: Option<&bonebank_schemas::wire::Purpose>,
        detail: &mut audit::Question,
    ) -> Result<Approval> {
        let (store, user, k) = (self.store.clone(), caller.user.clone(), key.clone());
        let existing = blocking(move || store.ticket_for(&user, &k)).await?;
        let site = self.site.to_string();
        if let Some(t) = existing {
            detail.ticket = Some(t.id.clone());
            match t.current_state() {
                TicketState::Approved => return Ok(Approval::Approved(t.id, t.reason)),
                TicketState::Pending => {
                    return Ok(Approval::Waiting(Error::Pending {
                        site,
                        ticket: t.id,
                        audited: false,
                    }));
                }
                TicketState::Rejected => {
                    return Ok(Approval::Waiting(Error::PolicyRefused(Refusal::new(
                        format!(
                            "a data steward of {site} rejected this query: {}",
                            t.reason.as_deref().unwrap_or("no reason given")
                        ),
                        "change the question, or talk to the site's data steward",
                    ))));
                }
                TicketState::Expired => {}
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
            state: TicketState::Pending,
            decided_by: None,
            decided_at: None,
            reason: None,
            first_approval: None,
            purpose: purpose.map(|p| p.text.chars().take(2_000).collect()),
            purpose_ref: purpose
                .and_then(|p| p.reference.as_ref())
                .map(|r| r.chars().take(200).collect()),
        };
        detail.ticket = Some(ticket.id.clone());
        detail.outcome = Some("pending_approval".into());
        let (store, entry, t) = (self.store.clone(), audit::detail(detail), ticket.clone());
        blocking(move || store.file_ticket(&t, &entry)).await?;
        Ok(Approval::Waiting(Error::Pending {
            site,
            ticket: ticket.id,
            audited: true,
        }))
    }

    /// Pending requests, for a steward of this site (the [`Steward`]
    /// extractor admitted them; no other way in).
    pub async fn approvals(&self, steward: &Steward) -> Result<Vec<ApprovalRequest>> {
        let store = self.store.clone();
        let tickets = blocking(move || store.pending_tickets()).await?;
        self.as_requests(steward, tickets).await
    }

    /// The latest requests, pending and decided, newest first: a steward's
    /// queue with what was decided, by whom and when.
    pub async fn recent_approvals(&self, steward: &Steward) -> Result<Vec<ApprovalRequest>> {
        let store = self.store.clone();
        let tickets = blocking(move || store.recent_tickets(RECENT_TICKETS)).await?;
        self.as_requests(steward, tickets).await
    }

    async fn as_requests(
        &self,
        _steward: &Steward,
        tickets: Vec<crate::store::Ticket>,
    ) -> Result<Vec<ApprovalRequest>> {
        let mut out = Vec::new();
        // A requester's record scans the audit log: once per requester.
        let mut records = std::collections::HashMap::new();
        for t in tickets {
            let (requester, query) = requester_of(&t)?;
            let budget = self.budget(&requester).await?;
            let history = match records.get(&t.user) {
                Some(h) => *h,
                None => {
                    let (store, user) = (self.store.clone(), t.user.clone());
                    let h = blocking(move || store.history_of(&user)).await?;
                    records.insert(t.user.clone(), h);
                    h
                }
            };
            let rule = self
                .policy
                .decide(requester.role, &requester.project, &query, t.loss)
                .rule;
            let approvals_required = rule
                .and_then(|n| self.policy.rules.get(n - 1))
                .and_then(|r| r.approvals_required)
                .unwrap_or(1);
            out.push(ApprovalRequest {
                ticket: t.id.clone(),
                state: t.current_state().to_string(),
                user: t.user.clone(),
                project: t.project.clone(),
                role: t.role.clone(),
                sql: query.to_sql(),
                query: Some(query),
                loss: t.loss,
                created: rfc3339(t.created),
                expires: rfc3339(t.expires),
                user_remaining: budget.user.remaining,
                project_remaining: budget.project.remaining,
                user_spent: budget.user.spent,
                project_spent: budget.project.spent,
                decided_by: t.decided_by,
                decided_at: t.decided_at.map(rfc3339),
                reason: t.reason,
                rule,
                history,
                approvals_required,
                first_approval: t.first_approval,
                purpose: t.purpose.map(|text| bonebank_schemas::wire::Purpose {
                    text,
                    reference: t.purpose_ref,
                }),
            });
        }
        Ok(out)
    }

    /// A steward's decision. Approving reserves the requester's budget, runs
    /// the query and stores the release, so the requester's next look gets
    /// it; rejecting records the reason the requester will see.
    pub async fn decide(
        &self,
        steward: &Steward,
        ticket: &str,
        decision: &ApprovalDecision,
    ) -> Result<TicketStatus> {
        let (store, id) = (self.store.clone(), ticket.to_owned());
        let t = blocking(move || store.ticket(&id))
            .await?
            .ok_or_else(|| Error::NoTicket(format!("there is no ticket {ticket} at this site")))?;
        if t.current_state() != TicketState::Pending {
            return Err(Error::BadRequest(format!(
                "ticket {ticket} is {}, not pending",
                t.current_state()
            )));
        }
        let mut entry = audit::Decision {
            ticket: t.id.clone(),
            requester: t.user.clone(),
            decision: decision.decision.clone(),
            reason: None,
        };
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
            entry.reason = Some(r.to_owned());
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
            // The four-eyes rule: a first approval is recorded and the
            // question waits for a second, different steward.
            let required = rules
                .rule
                .and_then(|n| self.policy.rules.get(n - 1))
                .and_then(|r| r.approvals_required)
                .unwrap_or(1);
            let mut approvers = steward.user().to_owned();
            if required >= 2 {
                match &t.first_approval {
                    None => {
                        let first = audit::Decision {
                            decision: "approve_first".into(),
                            ..entry.clone()
                        };
                        let (store, id, who) =
                            (self.store.clone(), t.id.clone(), steward.user().to_owned());
                        let recorded = blocking(move || {
                            store.first_approval(&id, &who, &audit::detail(&first))
                        })
                        .await?;
                        if !recorded {
                            return Err(Error::BadRequest(format!(
                                "ticket {ticket} was decided, expired or approved once meanwhile"
                            )));
                        }
                        return Ok(TicketStatus {
                            ticket: t.id,
                            state: TicketState::Pending.to_string(),
                            reason: None,
                        });
                    }
                    Some(first) if first == steward.user() => {
                        return Err(Error::BadRequest(format!(
                            "you approved ticket {ticket} already; its rule needs a second, different data steward"
                        )));
                    }
                    Some(first) => approvers = format!("{first} and {approvers}"),
                }
            }
            let version = self.engine.dataset_version()?.ok_or(Error::NoData)?;
            let units = privacy::units(checked.loss);
            let samples_bound = self.samples_bound(Some(&version), &checked).await?;
            let key = self.release_key(&version, &checked, units, samples_bound);
            let mut detail = audit::Question {
                user: requester.user.clone(),
                project: requester.project.clone(),
                role: requester.role.to_string(),
                loss: Some(checked.loss),
                query: Some(checked.query.to_sql()),
                ticket: Some(t.id.clone()),
                approved_by: Some(approvers),
                ..Default::default()
            };
            let store = self.store.clone();
            let k = key.clone();
            if blocking(move || store.release(&k)).await?.is_none() {
                self.release(
                    &requester,
                    &checked,
                    samples_bound,
                    version,
                    key,
                    &mut detail,
                )
                .await?;
            }
        }
        let (store, id, who) = (self.store.clone(), t.id.clone(), steward.user().to_owned());
        let reason_owned = reason.map(str::to_owned);
        let decided = blocking(move || {
            store.decide_ticket(
                &id,
                approve,
                &who,
                reason_owned.as_deref(),
                &audit::detail(&entry),
            )
        })
        .await?;
        if !decided {
            return Err(Error::BadRequest(format!(
                "ticket {ticket} was decided or expired meanwhile"
            )));
        }
        Ok(TicketStatus {
            ticket: t.id,
            state: if approve {
                TicketState::Approved
            } else {
                TicketState::Rejected
            }
            .to_string(),
            reason: reason.map(str::to_owned),
        })
    }

    /// Where a ticket stands, for its requester or a steward of this site.
    pub async fn ticket_status(&self, caller: &Caller, ticket: &str) -> Result<TicketStatus> {
        let (store, id) = (self.store.clone(), ticket.to_owned());
        let t = blocking(move || store.ticket(&id)).await?;
        match t {
            Some(t) if t.user == caller.user || self.is_steward(caller) => Ok(TicketStatus {
                state: t.current_state().to_string(),
                ticket: t.id,
                reason: t.reason,
            }),
            _ => Err(Error::NoTicket(format!(
                "you have no ticket {ticket} at this site"
            ))),
        }
    }

    /// Only where a ticket stands (see `GET /v1/tickets/{ticket}/state`).
    pub async fn ticket_state(&self, ticket: &str) -> Result<TicketStatus> {
        let (store, id) = (self.store.clone(), ticket.to_owned());
        match blocking(move || store.ticket(&id)).await? {
            Some(t) => Ok(TicketStatus {
                state: t.current_state().to_string(),
                ticket: t.id,
                reason: None,
            }),
            None => Err(Error::NoTicket(format!(
                "there is no ticket {ticket} at this site"
            ))),
        }
    }

    pub(super) fn is_steward(&self, caller: &Caller) -> bool {
        Steward::stewards(caller, self.site.as_str())
    }
}

/// How many of the latest tickets a steward's queue lists.
const RECENT_TICKETS: usize = 200;

/// Unix seconds as RFC 3339, UTC.
pub(super) fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A ticket id: 16 random bytes in hex (rand's thread-local CSPRNG, seeded by the OS).
pub(super) fn new_ticket_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Who asked for a ticket's query, and the query.
pub(super) fn requester_of(t: &crate::store::Ticket) -> Result<(Caller, FeasibilityQuery)> {
    let damaged = |e: &dyn std::fmt::Display| Error::Engine(format!("ticket {}: {e}", t.id));
    let caller = Caller {
        user: t.user.clone(),
        project: t.project.clone(),
        role: t.role.parse().map_err(|e| damaged(&e))?,
        sites: Vec::new(),
        email: None,
    };
    let query = serde_json::from_str(&t.query).map_err(|e| damaged(&e))?;
    Ok((caller, query))
}
