//! What every handler of the coordinator shares.

use actix_web::web;

use crate::auth::Auth;
use crate::negotiator::Negotiator;
use crate::service::Coordinator;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct State {
    pub coordinator: Coordinator,
    pub auth: web::Data<Auth>,
    pub negotiator: Negotiator,
}
