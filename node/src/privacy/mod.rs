//! Noise. Every released number passes through a [`NoiseMechanism`]; the
//! production one is OpenDP's: the discrete Gaussian under zCDP (the
//! network's default) or the discrete Laplace under pure ε-DP. Losses (ρ or
//! ε) are split into whole nano units so that budgets add up exactly.

mod opendp;
pub mod release;

pub use bonebank_query::interval::{
    discrete_gaussian_pmf, discrete_gaussian_tail, discrete_laplace_tail, halfwidth,
};
pub use opendp::{OpenDpNoise, zcdp_epsilon};

use bonebank_schemas::wire::{Accounting, Mechanism};

use crate::Result;

/// Losses are accounted in units of 10⁻⁹, so sums over many queries are
/// exact. (The functions below say ε; they serve ρ alike.)
pub const UNITS_PER_EPSILON: f64 = 1e9;

/// Coverage of the intervals released with each number.
pub const COVERAGE: f64 = 0.95;

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

/// The mechanism a site's accounting uses.
pub fn mechanism(accounting: Accounting) -> Mechanism {
    match accounting {
        Accounting::Zcdp => Mechanism::DiscreteGaussian,
        Accounting::Pure => Mechanism::DiscreteLaplace,
    }
}

/// How far removing one donor can move a vector of true values: in L1
/// (what the Laplace mechanism needs) and in L2 (the Gaussian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensitivity {
    pub l1: i64,
    /// Rounded up, never below the true L2 distance.
    pub l2: f64,
}

impl Sensitivity {
    /// One donor moves at most `cells` cells, each by at most `per_cell`:
    /// L1 = cells·per_cell, L2 = √cells·per_cell.
    pub fn of_cells(per_cell: i64, cells: i64) -> Self {
        let l2 = (cells as f64).sqrt() * per_cell as f64;
        Self {
            l1: per_cell * cells,
            // √ and × are correctly rounded; one step up covers both.
            l2: if l2 > 0.0 {
                l2.next_up().next_up()
            } else {
                0.0
            },
        }
    }
}

/// The sensitivity a mechanism is calibrated to under `accounting`, and the
/// scale that spends `loss` on it before the privacy map's rounding:
/// σ = Δ₂/√(2ρ) for the Gaussian, b = Δ₁/ε for the Laplace (a sensitivity
/// of 0 is taken as 1, so the scale is never 0).
pub fn nominal_scale(accounting: Accounting, s: Sensitivity, loss: f64) -> (f64, f64) {
    match accounting {
        Accounting::Zcdp => (s.l2, s.l2.max(1.0) / (2.0 * loss).sqrt()),
        Accounting::Pure => (s.l1 as f64, s.l1.max(1) as f64 / loss),
    }
}

/// A vector of integers released with noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Noised {
    pub values: Vec<i64>,
    /// Scale of the noise on each value (σ or b).
    pub scale: f64,
    /// Loss as the mechanism's privacy map states it; never above the loss
    /// asked for.
    pub loss: f64,
}

/// The noise for one vector, chosen before any data is read: its scale, and
/// the loss the mechanism's privacy map states for the sensitivity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub accounting: Accounting,
    /// The sensitivity the mechanism was calibrated to: L2 under zCDP, L1
    /// under pure ε-DP.
    pub sensitivity: f64,
    pub scale: f64,
    /// Never above the loss asked for.
    pub loss: f64,
}

/// The noise seam: OpenDP in production, a fixed offset in tests that need
/// exact numbers.
pub trait NoiseMechanism: Send + Sync + std::fmt::Debug {
    /// The noise that makes a release cost at most `loss` (ρ or ε, by the
    /// accounting) when one donor moves the vector by at most
    /// `sensitivity`. Reads no data.
    fn calibrate(
        &self,
        accounting: Accounting,
        sensitivity: Sensitivity,
        loss: f64,
    ) -> Result<Calibration>;
    /// Releases `values` with the calibrated noise.
    fn release(&self, values: &[i64], calibration: &Calibration) -> Result<Noised>;
}

/// Adds a fixed offset and claims the scale the real mechanism would use. For
/// tests of merging and the API only: it protects nothing.
#[derive(Debug, Clone, Copy)]
pub struct FixedOffset(pub i64);

impl NoiseMechanism for FixedOffset {
    fn calibrate(
        &self,
        accounting: Accounting,
        sensitivity: Sensitivity,
        loss: f64,
    ) -> Result<Calibration> {
        let (sensitivity, scale) = nominal_scale(accounting, sensitivity, loss);
        Ok(Calibration {
            accounting,
            sensitivity,
            scale,
            loss,
        })
    }

    fn release(&self, values: &[i64], calibration: &Calibration) -> Result<Noised> {
        Ok(Noised {
            values: values.iter().map(|v| v + self.0).collect(),
            scale: calibration.scale,
            loss: calibration.loss,
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
