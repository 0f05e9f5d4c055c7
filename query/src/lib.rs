//! The query language both sides speak: SQL in the supported subset is
//! turned into a [`FeasibilityQuery`], and every question, however it
//! arrived, is held to the [`limits`] before it costs anything. What a
//! particular site allows (its dimensions, values and policy) is the node's
//! to check.
//!
//! [`FeasibilityQuery`]: bonebank_schemas::FeasibilityQuery

pub mod limits;
pub mod sql;

/// Why a query is refused: the construct, and what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

impl Refusal {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// The shape every query must have, for hints.
pub const SHAPE_HINT: &str = "queries look like: SELECT <dimensions>, COUNT(*), COUNT(DISTINCT donor_id) \
FROM samples WHERE <filters> GROUP BY <dimensions>; SUM(col) and AVG(col) work on bounded columns";
