//! Stewards' tickets: a question that needs approval waits here, pending,
//! until a steward decides or it expires.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{Store, now};
use crate::Result;

/// A query waiting for (or decided by) a steward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    pub user: String,
    pub project: String,
    pub role: String,
    pub release_key: String,
    /// The checked query, canonical JSON.
    pub query: String,
    /// The loss asked for, in the site's measure (stored in the column
    /// `epsilon`, named when every site accounted in ε).
    pub loss: f64,
    /// As stored; [`Ticket::current_state`] is what it is now.
    pub state: TicketState,
    pub decided_by: Option<String>,
    /// Unix seconds.
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// Under a four-eyes rule: the steward who approved first, while a
    /// second must still approve.
    pub first_approval: Option<String>,
    /// What the requester said the question is for, and a reference.
    pub purpose: Option<String>,
    pub purpose_ref: Option<String>,
}

impl Ticket {
    /// The state as of now: a pending ticket past `expires` has expired.
    pub fn current_state(&self) -> TicketState {
        if self.state == TicketState::Pending && now() >= self.expires {
            TicketState::Expired
        } else {
            self.state
        }
    }
}

/// Where a ticket stands. Stored as its name; `expired` is never stored,
/// only seen (a pending ticket past its expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    fn stored(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

impl std::fmt::Display for TicketState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(super) const TICKET_COLUMNS: &str = "id, created, expires, user, project, role, release_key, query, epsilon, state, decided_by, reason, decided_at, first_approval, purpose, purpose_ref";

pub(super) fn ticket(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get(0)?,
        created: r.get(1)?,
        expires: r.get(2)?,
        user: r.get(3)?,
        project: r.get(4)?,
        role: r.get(5)?,
        release_key: r.get(6)?,
        query: r.get(7)?,
        loss: r.get(8)?,
        state: {
            let name: String = r.get(9)?;
            TicketState::stored(&name).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    9,
                    rusqlite::types::Type::Text,
                    format!("ticket state {name:?}").into(),
                )
            })?
        },
        decided_by: r.get(10)?,
        reason: r.get(11)?,
        decided_at: r.get(12)?,
        first_approval: r.get(13)?,
        purpose: r.get(14)?,
        purpose_ref: r.get(15)?,
    })
}

impl Store {
    /// The caller's latest ticket for a release key, if any.
    pub fn ticket_for(&self, user: &str, release_key: &str) -> Result<Option<Ticket>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE user = ?1 AND release_key = ?2 ORDER BY created DESC, rowid DESC LIMIT 1"),
                params![user, release_key],
                ticket,
            )
            .optional()?)
    }

    pub fn ticket(&self, id: &str) -> Result<Option<Ticket>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"),
                [id],
                ticket,
            )
            .optional()?)
    }

    /// A requester's record here: questions answered (fresh or
    /// remembered, from the audit log), and tickets approved and rejected.
    pub fn history_of(&self, user: &str) -> Result<bonebank_schemas::wire::RequesterHistory> {
        let conn = self.conn();
        let answered: i64 = conn.query_row(
            "SELECT COUNT(*) FROM audit WHERE kind = 'request' AND actor = ?1 \
             AND json_extract(detail, '$.outcome') IN ('released', 'remembered')",
            [user],
            |r| r.get(0),
        )?;
        let (approved, rejected): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(state = 'approved'), 0), COALESCE(SUM(state = 'rejected'), 0) FROM tickets WHERE user = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(bonebank_schemas::wire::RequesterHistory {
            answered,
            approved,
            rejected,
        })
    }

    /// Pending tickets that have not expired, oldest first.
    pub fn pending_tickets(&self) -> Result<Vec<Ticket>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE state = 'pending' AND expires > ?1 ORDER BY created, rowid"
        ))?;
        let rows = stmt.query_map([now()], ticket)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest `limit` tickets, pending or decided, newest first.
    pub fn recent_tickets(&self, limit: usize) -> Result<Vec<Ticket>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets ORDER BY created DESC, rowid DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], ticket)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Files a new ticket and its audit entry in one transaction.
    pub fn file_ticket(&self, t: &Ticket, audit: &serde_json::Value) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO tickets (id, created, expires, user, project, role, release_key, query, epsilon, state, purpose, purpose_ref) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?11)",
            params![t.id, t.created, t.expires, t.user, t.project, t.role, t.release_key, t.query, t.loss, t.purpose, t.purpose_ref],
        )?;
        crate::audit::append(&tx, "request", &t.user, audit)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a pending ticket decided, with its audit entry, in one
    /// transaction. False if it was no longer pending.
    /// Under a four-eyes rule: records `steward`'s approval as the first of
    /// two, with its audit entry; false if the ticket was decided, expired
    /// or approved once meanwhile.
    pub fn first_approval(
        &self,
        id: &str,
        steward: &str,
        audit: &serde_json::Value,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE tickets SET first_approval = ?2 \
             WHERE id = ?1 AND state = 'pending' AND expires > ?3 AND first_approval IS NULL",
            params![id, steward, now()],
        )?;
        if changed == 1 {
            crate::audit::append(&tx, "decision", steward, audit)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    pub fn decide_ticket(
        &self,
        id: &str,
        approved: bool,
        steward: &str,
        reason: Option<&str>,
        audit: &serde_json::Value,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE tickets SET state = ?2, decided_by = ?3, decided_at = ?4, reason = ?5 \
             WHERE id = ?1 AND state = 'pending' AND expires > ?4",
            params![
                id,
                if approved {
                    TicketState::Approved
                } else {
                    TicketState::Rejected
                }
                .as_str(),
                steward,
                now(),
                reason
            ],
        )?;
        if changed == 1 {
            crate::audit::append(&tx, "decision", steward, audit)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }
}
