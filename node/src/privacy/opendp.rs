//! OpenDP's noise over integer vectors: the discrete Gaussian under zCDP
//! (calibrated to the L2 sensitivity) and the discrete Laplace under pure
//! ε-DP (calibrated to the L1 sensitivity). Integer noise, sampled exactly.

use bonebank_schemas::wire::Accounting;
use opendp::combinators::ConcentratedMeasure;
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};

use super::{Calibration, NoiseMechanism, Noised, Sensitivity};
use crate::{Error, Result};

/// OpenDP's mechanisms: `make_gaussian` with `ZeroConcentratedDivergence` on
/// `VectorDomain<AtomDomain<i64>>` and `L2Distance<f64>`, or `make_laplace`
/// with `MaxDivergence` and `L1Distance<i64>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenDpNoise;

/// Held around every call into OpenDP's constructors, privacy maps and
/// conversions. Their float arithmetic (`inf_sqrt`, `inf_ln`, …) swaps the
/// process's panic hook for a silent one and back (`catch_unwind_silent`);
/// two threads doing that at once can leave the silent hook installed for
/// good, and every later panic of the node would go unreported. One call
/// at a time keeps the hook the node's own.
static OPENDP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serially<T>(f: impl FnOnce() -> T) -> T {
    let _one = OPENDP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f()
}

type Gaussian = Measurement<
    VectorDomain<AtomDomain<i64>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<i64>,
>;
type Laplace = Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>;

fn gaussian(scale: f64) -> Result<Gaussian> {
    serially(|| {
        make_gaussian(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L2Distance::<f64>::default(),
            scale,
            None,
        )
    })
    .map_err(fail)
}

fn laplace(scale: f64) -> Result<Laplace> {
    serially(|| {
        make_laplace(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
    })
    .map_err(fail)
}

impl NoiseMechanism for OpenDpNoise {
    fn calibrate(
        &self,
        accounting: Accounting,
        sensitivity: Sensitivity,
        loss: f64,
    ) -> Result<Calibration> {
        if !(loss > 0.0 && loss.is_finite()) || sensitivity.l1 < 0 {
            return Err(Error::Noise(format!(
                "invalid loss {loss} or sensitivity {sensitivity:?}"
            )));
        }
        let (delta, mut scale) = super::nominal_scale(accounting, sensitivity, loss);
        // The privacy maps round up, so widen the scale by a few ulps until
        // the map's loss is within the loss asked for.
        for _ in 0..64 {
            let charged = match accounting {
                Accounting::Zcdp => {
                    let m = gaussian(scale)?;
                    serially(|| m.map(&sensitivity.l2))
                }
                Accounting::Pure => {
                    let m = laplace(scale)?;
                    serially(|| m.map(&sensitivity.l1))
                }
            }
            .map_err(fail)?;
            if charged <= loss {
                return Ok(Calibration {
                    accounting,
                    sensitivity: delta,
                    scale,
                    loss: charged,
                });
            }
            scale = scale.next_up();
        }
        Err(Error::Noise(format!("no scale found for loss {loss}")))
    }

    fn release(&self, values: &[i64], c: &Calibration) -> Result<Noised> {
        let values = values.to_vec();
        let noisy = match c.accounting {
            Accounting::Zcdp => gaussian(c.scale)?.invoke(&values),
            Accounting::Pure => laplace(c.scale)?.invoke(&values),
        }
        .map_err(fail)?;
        Ok(Noised {
            values: noisy,
            scale: c.scale,
            loss: c.loss,
        })
    }
}

/// The ε that ρ-zCDP amounts to at `delta`, by OpenDP's conversion
/// (Canonne, Kamath and Steinke's, as `make_zCDP_to_approxDP` uses it).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> Result<f64> {
    serially(|| {
        <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(rho)
            .and_then(|profile| profile.epsilon(delta))
    })
    .map_err(fail)
}

fn fail(e: opendp::error::Error) -> Error {
    Error::Noise(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Calibrations and conversions on many threads at once leave the
    /// panic hook as it was: a panic afterwards still reaches it.
    #[test]
    fn opendp_on_many_threads_leaves_the_panic_hook_in_place() {
        let reported = Arc::new(AtomicUsize::new(0));
        let seen = reported.clone();
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..150 {
                        let loss = 0.01 + f64::from(t * 150 + i) * 1e-4;
                        let s = Sensitivity {
                            l1: 3,
                            l2: 3f64.sqrt(),
                        };
                        OpenDpNoise.calibrate(Accounting::Zcdp, s, loss).unwrap();
                        zcdp_epsilon(loss, 1e-6).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let caught = std::panic::catch_unwind(|| panic!("a panic after OpenDP's work"));
        let hook_ran = reported.load(Ordering::SeqCst);
        std::panic::set_hook(before);
        assert!(caught.is_err());
        assert_eq!(
            hook_ran, 1,
            "the panic went unreported: OpenDP left its silent hook"
        );
    }
}
