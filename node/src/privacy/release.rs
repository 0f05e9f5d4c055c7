//! A release assembled from a plan's exact aggregates: every vector noised
//! with its calibration, every measure's values with their 95% intervals (an
//! average's from its noisy sum and count), counts rounded as the site's
//! policy says, one row per cell. Nothing leaves the node that did not pass
//! through here.

use bonebank_schemas::Measure;
use bonebank_schemas::surface;
use bonebank_schemas::wire::{MeasureNoise, Mechanism, NoisyValue, ResultRow};

use super::{COVERAGE, Calibration, NoiseMechanism, Noised, halfwidth};
use crate::Result;

/// The released part of an answer: how each measure was noised, and the
/// rows.
#[derive(Debug)]
pub struct Released {
    pub measures: Vec<MeasureNoise>,
    pub rows: Vec<ResultRow>,
}

/// Noises `exact` (one vector per aggregate the measures need, in order,
/// one value per cell of `cells`) and assembles the answer. `round` is the
/// site's rounding of counts and sums (1: none).
pub fn assemble(
    noise: &dyn NoiseMechanism,
    mechanism: Mechanism,
    round: i64,
    measures_asked: &[Measure],
    cells: Vec<Vec<String>>,
    exact: &[Vec<i64>],
    calibrations: &[Calibration],
) -> Result<Released> {
    let mut noised = Vec::new();
    for (values, c) in exact.iter().zip(calibrations) {
        noised.push((c.sensitivity, noise.release(values, c)?));
    }

    let mut measures = Vec::new();
    let mut per_measure: Vec<Vec<NoisyValue>> = Vec::new();
    let mut next = noised.iter();
    for m in measures_asked {
        match m {
            Measure::Avg { column } => {
                let (ds, sum) = next.next().expect("one vector per aggregate");
                let (_, count) = next.next().expect("one vector per aggregate");
                let (lo, hi) = surface::bounds(column).expect("checked bounded column");
                per_measure.push(averages(mechanism, sum, count, lo as f64, hi as f64));
                measures.push(MeasureNoise {
                    measure: m.clone(),
                    label: m.label(),
                    mechanism,
                    sensitivity: *ds,
                    scale: sum.scale,
                    loss: sum.loss + count.loss,
                    rounded_to: 1,
                });
            }
            _ => {
                let (ds, v) = next.next().expect("one vector per aggregate");
                let t = halfwidth(mechanism, v.scale, COVERAGE);
                let r = round.max(1);
                per_measure.push(
                    v.values
                        .iter()
                        .map(|&x| NoisyValue {
                            value: round_to(x, r) as f64,
                            // Outward from the unrounded value: it covers
                            // whenever the exact interval did.
                            interval: [
                                (x - t).div_euclid(r) as f64 * r as f64,
                                (x + t + r - 1).div_euclid(r) as f64 * r as f64,
                            ],
                        })
                        .collect(),
                );
                measures.push(MeasureNoise {
                    measure: m.clone(),
                    label: m.label(),
                    mechanism,
                    sensitivity: *ds,
                    scale: v.scale,
                    loss: v.loss,
                    rounded_to: r,
                });
            }
        }
    }
    let rows = cells
        .into_iter()
        .enumerate()
        .map(|(c, key)| ResultRow {
            key,
            values: per_measure.iter().map(|m| m[c].clone()).collect(),
        })
        .collect();
    Ok(Released { measures, rows })
}

/// Averages as noisy sum over noisy count, clamped to the column's bounds;
/// the interval combines 97.5% intervals of both, so it covers at 95%.
fn averages(
    mechanism: Mechanism,
    sum: &Noised,
    count: &Noised,
    lo: f64,
    hi: f64,
) -> Vec<NoisyValue> {
    let (ts, tc) = (
        halfwidth(mechanism, sum.scale, 0.975) as f64,
        halfwidth(mechanism, count.scale, 0.975) as f64,
    );
    sum.values
        .iter()
        .zip(&count.values)
        .map(|(&s, &c)| {
            let (s, c) = (s as f64, c as f64);
            let value = if c >= 1.0 {
                (s / c).clamp(lo, hi)
            } else {
                (lo + hi) / 2.0
            };
            let low = if c + tc >= 1.0 {
                ((s - ts) / (c + tc)).clamp(lo, hi)
            } else {
                lo
            };
            let high = if c - tc >= 1.0 {
                ((s + ts) / (c - tc)).clamp(lo, hi)
            } else {
                hi
            };
            NoisyValue {
                value,
                interval: [low.min(value), high.max(value)],
            }
        })
        .collect()
}

/// `x` rounded to the nearest multiple of `r`, halves upwards.
fn round_to(x: i64, r: i64) -> i64 {
    if r <= 1 {
        return x;
    }
    let down = x.div_euclid(r) * r;
    if (x - down) * 2 >= r { down + r } else { down }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_to_the_nearest_multiple() {
        assert_eq!(round_to(14, 10), 10);
        assert_eq!(round_to(15, 10), 20);
        assert_eq!(round_to(-4, 10), 0);
        assert_eq!(round_to(-6, 10), -10);
        assert_eq!(round_to(7, 1), 7);
    }

    #[test]
    fn an_average_stays_within_its_bounds_and_its_interval_holds_it() {
        let sum = Noised {
            values: vec![500, 40, 3],
            scale: 2.0,
            loss: 0.1,
        };
        let count = Noised {
            values: vec![10, 0, -2],
            scale: 2.0,
            loss: 0.1,
        };
        let v = averages(Mechanism::DiscreteGaussian, &sum, &count, 0.0, 100.0);
        assert_eq!(v[0].value, 50.0);
        assert!(
            v[0].interval[0] <= 50.0 && v[0].interval[1] >= 50.0,
            "{:?}",
            v[0]
        );
        // No donors counted: the middle of the bounds, the whole range.
        assert_eq!(v[1].value, 50.0);
        assert_eq!(v[2].interval, [0.0, 100.0]);
    }
}
