//! Stewards' approvals: list pending requests, decide one; and a ticket's
//! state for its requester.

use actix_web::web;
use bonebank_schemas::wire::{ApprovalDecision, ApprovalRequest, TicketStatus};

use super::AppState;
use crate::Error;
use crate::service::{Caller, Steward};

/// `GET /v1/approvals`
pub async fn list(
    state: web::Data<AppState>,
    steward: Steward,
) -> Result<web::Json<Vec<ApprovalRequest>>, Error> {
    state.service.approvals(&steward).await.map(web::Json)
}

/// `POST /v1/approvals/{ticket}` with `{"decision": "approve" | "reject", "reason": …}`
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

/// `GET /v1/tickets/{ticket}`
pub async fn ticket(
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
