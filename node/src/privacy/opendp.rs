//! OpenDP's discrete Laplace mechanism over integer vectors.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

use super::{NoiseMechanism, Noised};
use crate::{Error, Result};

/// Discrete Laplace noise from OpenDP (`make_laplace` on
/// `VectorDomain<AtomDomain<i64>>` with `L1Distance<i64>`): integer noise,
/// sampled exactly, no floating-point noise.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenDpLaplace;

impl NoiseMechanism for OpenDpLaplace {
    fn release(&self, values: &[i64], sensitivity: i64, epsilon: f64) -> Result<Noised> {
        if !(epsilon > 0.0 && epsilon.is_finite()) || sensitivity < 0 {
            return Err(Error::Noise(format!(
                "invalid epsilon {epsilon} or sensitivity {sensitivity}"
            )));
        }
        let fail = |e: opendp::error::Error| Error::Noise(e.to_string());
        // scale = Δ/ε; the privacy map rounds up, so widen the scale by a few
        // ulps until the map's ε is within the ε asked for.
        let mut scale = (sensitivity.max(1) as f64) / epsilon;
        for _ in 0..64 {
            let m = make_laplace::<_, _, MaxDivergence>(
                VectorDomain::new(AtomDomain::<i64>::default()),
                L1Distance::<i64>::default(),
                scale,
                None,
            )
            .map_err(fail)?;
            let charged = m.map(&sensitivity).map_err(fail)?;
            if charged <= epsilon {
                let noisy = m.invoke(&values.to_vec()).map_err(fail)?;
                return Ok(Noised {
                    values: noisy,
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
}
