//! The noise itself, tested statistically with a fixed number of draws: the
//! released values follow the discrete Laplace distribution of the stated
//! scale, intervals cover at 95%, and the ε charged is the ε asked for.

use bonebank_node::privacy::{NoiseMechanism, OpenDpLaplace, discrete_laplace_tail, halfwidth};

const DRAWS: usize = 40_000;

fn moments(xs: &[i64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<i64>() as f64 / n;
    let var = xs.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

#[test]
fn released_values_follow_the_discrete_laplace_of_the_stated_scale() {
    for (sensitivity, epsilon, truth) in [(1, 0.5, 0i64), (10, 1.0, 1000), (4, 0.25, 37)] {
        let calibration = OpenDpLaplace.calibrate(sensitivity, epsilon).unwrap();
        let released = OpenDpLaplace
            .release(&vec![truth; DRAWS], &calibration)
            .unwrap();
        let b = released.scale;
        assert!(
            (b - sensitivity as f64 / epsilon).abs() / b < 1e-9,
            "scale {b}"
        );
        let alpha = (-1.0 / b).exp();
        let variance = 2.0 * alpha / (1.0 - alpha).powi(2);
        let noise: Vec<i64> = released.values.iter().map(|v| v - truth).collect();
        let (mean, var) = moments(&noise);
        let se_mean = (variance / DRAWS as f64).sqrt();
        assert!(
            mean.abs() < 5.0 * se_mean,
            "Δ={sensitivity} ε={epsilon}: mean {mean}, se {se_mean}"
        );
        assert!(
            (var / variance - 1.0).abs() < 0.08,
            "Δ={sensitivity} ε={epsilon}: variance {var}, expected {variance}"
        );
        // P(noise = 0) = (1 − α)/(1 + α).
        let p0 = (1.0 - alpha) / (1.0 + alpha);
        let zeros = noise.iter().filter(|x| **x == 0).count() as f64 / DRAWS as f64;
        assert!(
            (zeros - p0).abs() < 5.0 * (p0 * (1.0 - p0) / DRAWS as f64).sqrt(),
            "P(0) {zeros} vs {p0}"
        );
        // The tail beyond the 95% halfwidth is at most 5%.
        let t = halfwidth(b, 0.95);
        let outside = noise.iter().filter(|x| x.abs() > t).count() as f64 / DRAWS as f64;
        let expected = discrete_laplace_tail(b, t);
        assert!(
            (outside - expected).abs() < 5.0 * (expected * (1.0 - expected) / DRAWS as f64).sqrt()
        );
        assert!(outside < 0.06);
        // The privacy map states at most the ε asked for, and no less than a hair below it.
        assert!(
            released.epsilon <= epsilon && epsilon - released.epsilon < 1e-9,
            "charged {}",
            released.epsilon
        );
    }
}

#[test]
fn noise_is_integer_and_fresh_for_each_release() {
    let a = OpenDpLaplace
        .calibrate_and_release(&[100; 64], 5, 0.5)
        .unwrap();
    let b = OpenDpLaplace
        .calibrate_and_release(&[100; 64], 5, 0.5)
        .unwrap();
    assert_ne!(a.values, b.values, "two releases drew the same noise");
    // Zero and small counts get the same noise as any other: no special case.
    let small = OpenDpLaplace
        .calibrate_and_release(&vec![0; DRAWS], 1, 0.5)
        .unwrap();
    assert!(
        small.values.iter().any(|v| *v < 0),
        "noise on zero was never negative"
    );
    assert!(small.values.iter().any(|v| *v > 0));
}
