//! The query language both sides speak: SQL in the supported subset is
//! turned into a [`FeasibilityQuery`], every question, however it arrived, is
//! held to the [`limits`] before it costs anything, and [`check`] holds it to
//! the surface and a site's [`policy`] (a node with its own policy, the
//! coordinator with the defaults). [`interval`] is the arithmetic of released
//! numbers that nodes and coordinator share: how wide a noisy value's 95%
//! interval is. No DataFusion, no OpenDP: the researcher's CLI and the
//! coordinator link this crate too.
//!
//! [`FeasibilityQuery`]: bonebank_schemas::FeasibilityQuery

pub mod catalogue;
pub mod check;
pub mod dimensions;
pub mod interval;
pub mod limits;
pub mod policy;
pub mod sql;

pub use check::{Checked, check};
pub use dimensions::{AGE_BANDS, ALL as ALL_DIMENSIONS, Dimension};
pub use policy::dimension_values;

use bonebank_schemas::FeasibilityQuery;
use sha2::{Digest, Sha256};

/// A short id of a question for logs and traces (its canonical JSON, in the
/// form before a site adds a role's filter): the first 12 hex digits of
/// its SHA-256, so the coordinator's and every node's logs of one question
/// can be matched without logging the question.
pub fn question_id(query: &FeasibilityQuery) -> String {
    hex::encode(&Sha256::digest(query.canonical_json().as_bytes())[..6])
}

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
