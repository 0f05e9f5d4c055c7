//! The query surface as the node enforces it: SQL in the supported subset is
//! turned into a [`FeasibilityQuery`], and every query, however it arrived, is
//! checked against the surface and the site's policy before it runs.
//!
//! [`FeasibilityQuery`]: bonebank_schemas::FeasibilityQuery

mod dimensions;
pub mod sql;
mod validate;

pub use dimensions::{AGE_BANDS, ALL as ALL_DIMENSIONS, Dimension, dimension_values};
pub use validate::{Checked, check};

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
