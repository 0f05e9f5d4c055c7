//! Noise. Every released number passes through a [`NoiseMechanism`]; the
//! production one is OpenDP's discrete Laplace. ε is split into whole
//! nano-ε units so that budgets add up exactly.

mod interval;
mod opendp;

pub use interval::{discrete_laplace_tail, halfwidth};
pub use opendp::OpenDpLaplace;

use crate::Result;

/// ε is accounted in units of 10⁻⁹, so sums over many queries are exact.
pub const UNITS_PER_EPSILON: f64 = 1e9;

/// ε as whole units (rounded to the nearest unit).
pub fn units(epsilon: f64) -> i64 {
    (epsilon * UNITS_PER_EPSILON).round() as i64
}

/// Units as ε.
pub fn epsilon(units: i64) -> f64 {
    units as f64 / UNITS_PER_EPSILON
}

/// A vector of integers released with noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Noised {
    pub values: Vec<i64>,
    /// Scale of the discrete Laplace noise on each value.
    pub scale: f64,
    /// ε as the mechanism's privacy map states it for the sensitivity; never
    /// above the ε asked for.
    pub epsilon: f64,
}

/// The noise seam: OpenDP in production, a fixed offset in tests that need
/// exact numbers.
pub trait NoiseMechanism: Send + Sync + std::fmt::Debug {
    /// Releases `values` with noise so that the release is `epsilon`-DP when
    /// one donor changes the vector by at most `sensitivity` in L1 distance.
    fn release(&self, values: &[i64], sensitivity: i64, epsilon: f64) -> Result<Noised>;
}

/// Adds a fixed offset and claims the scale the real mechanism would use. For
/// tests of merging and the API only: it protects nothing.
#[derive(Debug, Clone, Copy)]
pub struct FixedOffset(pub i64);

impl NoiseMechanism for FixedOffset {
    fn release(&self, values: &[i64], sensitivity: i64, epsilon: f64) -> Result<Noised> {
        Ok(Noised {
            values: values.iter().map(|v| v + self.0).collect(),
            scale: sensitivity as f64 / epsilon,
            epsilon,
        })
    }
}
