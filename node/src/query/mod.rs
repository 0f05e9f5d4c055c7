//! The query surface as the node enforces it: SQL in the supported subset is
//! turned into a [`FeasibilityQuery`], and every query, however it arrived, is
//! checked against the surface and the site's policy before it runs.
//!
//! [`FeasibilityQuery`]: bonebank_schemas::FeasibilityQuery

mod dimensions;
mod validate;

pub use bonebank_query::{Refusal, SHAPE_HINT, limits, sql};
pub use dimensions::{AGE_BANDS, ALL as ALL_DIMENSIONS, Dimension, dimension_values};
pub use validate::{Checked, check};
