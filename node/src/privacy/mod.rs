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

/// ε as whole units (rounded to the nearest unit): for ε a caller asks for
/// and budgets a policy sets.
pub fn units(epsilon: f64) -> i64 {
    (epsilon * UNITS_PER_EPSILON).round() as i64
}

/// ε as whole units, rounded up: the fewest units whose ε is at least
/// `epsilon`. What the ledger charges for a privacy map's ε, so rounding
/// never under-charges.
pub fn units_up(epsilon: f64) -> i64 {
    let mut k = (epsilon * UNITS_PER_EPSILON).ceil() as i64;
    while k > 0 && self::epsilon(k - 1) >= epsilon {
        k -= 1;
    }
    while self::epsilon(k) < epsilon {
        k += 1;
    }
    k
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

/// The noise for one vector, chosen before any data is read: its scale, and
/// the ε the mechanism's privacy map states for the sensitivity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub sensitivity: i64,
    pub scale: f64,
    /// Never above the ε asked for.
    pub epsilon: f64,
}

/// The noise seam: OpenDP in production, a fixed offset in tests that need
/// exact numbers.
pub trait NoiseMechanism: Send + Sync + std::fmt::Debug {
    /// The noise that makes a release `epsilon`-DP when one donor changes
    /// the vector by at most `sensitivity` in L1 distance. Reads no data.
    fn calibrate(&self, sensitivity: i64, epsilon: f64) -> Result<Calibration>;
    /// Releases `values` with the calibrated noise.
    fn release(&self, values: &[i64], calibration: &Calibration) -> Result<Noised>;

    /// Calibrates and releases in one step.
    fn calibrate_and_release(
        &self,
        values: &[i64],
        sensitivity: i64,
        epsilon: f64,
    ) -> Result<Noised> {
        let calibration = self.calibrate(sensitivity, epsilon)?;
        self.release(values, &calibration)
    }
}

/// Adds a fixed offset and claims the scale the real mechanism would use. For
/// tests of merging and the API only: it protects nothing.
#[derive(Debug, Clone, Copy)]
pub struct FixedOffset(pub i64);

impl NoiseMechanism for FixedOffset {
    fn calibrate(&self, sensitivity: i64, epsilon: f64) -> Result<Calibration> {
        Ok(Calibration {
            sensitivity,
            scale: sensitivity as f64 / epsilon,
            epsilon,
        })
    }

    fn release(&self, values: &[i64], calibration: &Calibration) -> Result<Noised> {
        Ok(Noised {
            values: values.iter().map(|v| v + self.0).collect(),
            scale: calibration.scale,
            epsilon: calibration.epsilon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_up_never_rounds_below_the_epsilon() {
        for x in [
            0.083333334,
            0.0833333333333,
            1.0 / 3.0,
            0.25,
            0.1 + 0.2,
            1e-9,
            0.999999999,
        ] {
            let k = units_up(x);
            assert!(epsilon(k) >= x, "{x}: {k}");
            assert!(epsilon(k - 1) < x, "{x}: {k} is not the fewest");
        }
        assert_eq!(units_up(0.25), 250_000_000);
        assert_eq!(units_up(0.0833333333333), 83_333_334);
    }
}
