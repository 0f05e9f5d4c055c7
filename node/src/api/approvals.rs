//! Stewards' approvals: list pending requests, decide one; and a ticket's
//! state for its requester.

use actix_web::{get, post, web};
use bonebank_schemas::wire::{ApprovalDecision, ApprovalRequest, ErrorBody, TicketStatus};
use bonebank_service::openapi::{SignedIn, StewardOnly};

use super::AppState;
use crate::Error;
use crate::service::{Caller, Steward};

/// `GET /v1/approvals`: the questions waiting for a steward of this site.
#[utoipa::path(
    tag = "stewards",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every question held for approval, oldest first, with the decided ones.", body = Vec<ApprovalRequest>),
        StewardOnly,
    )
)]
#[get("")]
pub async fn list(
    state: web::Data<AppState>,
    steward: Steward,
) -> Result<web::Json<Vec<ApprovalRequest>>, Error> {
    state.service.approvals(&steward).await.map(web::Json)
}

/// `POST /v1/approvals/{ticket}` with `{"decision": "approve" | "reject", "reason": …}`
#[utoipa::path(
    tag = "stewards",
    security(("bearer" = [])),
    params(("ticket" = String, Path, description = "The ticket a held question was given.")),
    responses(Decided, StewardOnly)
)]
#[post("/{ticket}")]
pub async fn decide_here(
    state: web::Data<AppState>,
    steward: Steward,
    ticket: web::Path<String>,
    decision: web::Json<ApprovalDecision>,
) -> Result<web::Json<TicketStatus>, Error> {
    decide(state, steward, ticket, decision).await
}

/// What a steward's decision gets, besides a caller who may not decide.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
pub enum Decided {
    /// The decision is recorded (and audited); the ticket's state.
    #[response(status = 200)]
    Recorded(TicketStatus),
    /// The body is not a decision, or the ticket was decided already.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such ticket at this site.
    #[response(status = 404)]
    NoTicket(ErrorBody),
}

/// A steward's decision, from the API or from the stewards' pages.
pub async fn decide(
    state: web::Data<AppState>,
    steward: Steward,
    ticket: web::Path<String>,
    decision: web::Json<ApprovalDecision>,
) -> Result<web::Json<TicketStatus>, Error> {
    state
        .service
        .decide(&steward, &ticket, &decision)
        .await
        .map(web::Json)
}

/// `GET /v1/tickets/{ticket}`: where a held question stands, for the
/// researcher who asked it.
#[utoipa::path(
    tag = "questions",
    security(("bearer" = [])),
    params(("ticket" = String, Path, description = "The ticket the question was given.")),
    responses(
        (status = 200, description = "The ticket's state: pending, approved or rejected (with the steward's reason).", body = TicketStatus),
        (status = 404, description = "No such ticket, or not one of the caller's.", body = ErrorBody),
        SignedIn,
    )
)]
#[get("/v1/tickets/{ticket}")]
pub async fn ticket_status(
    state: web::Data<AppState>,
    caller: Caller,
    ticket: web::Path<String>,
) -> Result<web::Json<TicketStatus>, Error> {
    state
        .service
        .ticket_status(&caller, &ticket)
        .await
        .map(web::Json)
}

/// `GET /v1/tickets/{ticket}/state`: only where a ticket stands, for the
/// coordinator, which asks without a user so that it can tell the
/// requester when a question is decided. The ticket's 128 random bits are
/// the only key; the answer names no user, question or reason.
#[utoipa::path(
    tag = "questions",
    params(("ticket" = String, Path, description = "The ticket the question was given.")),
    responses(
        (status = 200, description = "The ticket's state: pending, approved, rejected or expired; never the reason.", body = TicketStatus),
        (status = 404, description = "No such ticket.", body = ErrorBody),
    )
)]
#[get("/v1/tickets/{ticket}/state")]
pub async fn ticket_state(
    state: web::Data<AppState>,
    ticket: web::Path<String>,
) -> Result<web::Json<TicketStatus>, Error> {
    state.service.ticket_state(&ticket).await.map(web::Json)
}
