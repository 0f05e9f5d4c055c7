//! OpenDP's discrete Laplace mechanism over integer vectors.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

use super::{Calibration, NoiseMechanism, Noised};
use crate::{Error, Result};

/// Discrete Laplace noise from OpenDP (`make_laplace` on
/// `VectorDomain<AtomDomain<i64>>` with `L1Distance<i64>`): integer noise,
/// sampled exactly, no floating-point noise.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenDpLaplace;

impl NoiseMechanism for OpenDpLaplace {
    fn calibrate(&self, sensitivity: i64, epsilon: f64) -> Result<Calibration> {
        if !(epsilon > 0.0 && epsilon.is_finite()) || sensitivity < 0 {
            return Err(Error::Noise(format!(
                "invalid epsilon {epsilon} or sensitivity {sensitivity}"
            )));
        }
        // scale = Δ/ε; the privacy map rounds up, so widen the scale by a few
        // ulps until the map's ε is within the ε asked for.
        let mut scale = (sensitivity.max(1) as f64) / epsilon;
        for _ in 0..64 {
            let charged = measurement(scale)?.map(&sensitivity).map_err(fail)?;
            if charged <= epsilon {
                return Ok(Calibration {
                    sensitivity,
                    scale,
                    epsilon: charged,
                });
            }
            scale = scale.next_up();
        }
        Err(Error::Noise(format!(
            "no scale found for epsilon {epsilon}"
        )))
    }

    fn release(&self, values: &[i64], calibration: &Calibration) -> Result<Noised> {
        let noisy = measurement(calibration.scale)?
            .invoke(&values.to_vec())
            .map_err(fail)?;
        Ok(Noised {
            values: noisy,
            scale: calibration.scale,
            epsilon: calibration.epsilon,
        })
    }
}

type Laplace = opendp::core::Measurement<
    VectorDomain<AtomDomain<i64>>,
    L1Distance<i64>,
    MaxDivergence,
    Vec<i64>,
>;

fn measurement(scale: f64) -> Result<Laplace> {
    make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )
    .map_err(fail)
}

fn fail(e: opendp::error::Error) -> Error {
    Error::Noise(e.to_string())
}
