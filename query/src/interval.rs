//! 95% intervals from the noise distributions: the discrete Laplace,
//! P(X = k) ∝ exp(−|k|/b), and the discrete Gaussian,
//! P(X = k) ∝ exp(−k²/(2σ²)).

use bonebank_schemas::wire::Mechanism;

/// Tail mass beyond which the discrete Gaussian is cut when it is summed.
const GAUSSIAN_TAIL: f64 = 1e-12;

/// P(X ≤ k) for discrete Laplace noise of scale `b`.
pub fn discrete_laplace_cdf(scale: f64, k: i64) -> f64 {
    let alpha = (-1.0 / scale).exp();
    if k >= 0 {
        1.0 - alpha.powf((k + 1) as f64) / (1.0 + alpha)
    } else {
        alpha.powf((-k) as f64) / (1.0 + alpha)
    }
}

/// P(|X| > t) for discrete Laplace noise of scale `b`, t ≥ 0:
/// 2·α^(t+1)/(1+α) with α = exp(−1/b).
pub fn discrete_laplace_tail(scale: f64, t: i64) -> f64 {
    let alpha = (-1.0 / scale).exp();
    2.0 * alpha.powf((t + 1) as f64) / (1.0 + alpha)
}

/// The discrete Gaussian of scale σ as probabilities of −m..=m, where the
/// mass beyond m is negligible (below 1e-12).
pub fn discrete_gaussian_pmf(sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return vec![1.0];
    }
    let m = (sigma * (2.0 * (1.0 / GAUSSIAN_TAIL).ln()).sqrt()).ceil() as i64 + 1;
    let weights: Vec<f64> = (-m..=m)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// P(|X| > t) for discrete Gaussian noise of scale σ.
pub fn discrete_gaussian_tail(sigma: f64, t: i64) -> f64 {
    let pmf = discrete_gaussian_pmf(sigma);
    let mid = pmf.len() / 2;
    let t = (t.max(0) as usize).min(mid);
    let inside: f64 = pmf[mid - t..=mid + t].iter().sum();
    (1.0 - inside).max(0.0)
}

/// The smallest t with P(|X| > t) ≤ 1 − coverage for the mechanism's noise
/// at `scale`: [v − t, v + t] then covers the true value with at least that
/// probability.
pub fn halfwidth(mechanism: Mechanism, scale: f64, coverage: f64) -> i64 {
    if scale <= 0.0 {
        return 0;
    }
    match mechanism {
        Mechanism::DiscreteLaplace => laplace_halfwidth(scale, coverage),
        Mechanism::DiscreteGaussian => {
            let pmf = discrete_gaussian_pmf(scale);
            let mid = pmf.len() / 2;
            let mut covered = pmf[mid];
            let mut t = 0;
            while covered < coverage && t < mid {
                t += 1;
                covered += pmf[mid - t] + pmf[mid + t];
            }
            t as i64
        }
    }
}

fn laplace_halfwidth(scale: f64, coverage: f64) -> i64 {
    let alpha = (-1.0 / scale).exp();
    // Solve 2α^(t+1)/(1+α) = 1 − coverage for t, then step to the integer.
    let t = (((1.0 - coverage) * (1.0 + alpha) / 2.0).ln() / alpha.ln() - 1.0)
        .ceil()
        .max(0.0) as i64;
    let mut t = t.saturating_sub(1).max(0);
    while discrete_laplace_tail(scale, t) > 1.0 - coverage {
        t += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_laplace_tail_is_what_its_distribution_function_leaves() {
        for (b, t) in [(0.5, 0), (3.0, 2), (40.0, 100)] {
            let inside = discrete_laplace_cdf(b, t) - discrete_laplace_cdf(b, -t - 1);
            assert!(
                (1.0 - inside - discrete_laplace_tail(b, t)).abs() < 1e-12,
                "{b} {t}"
            );
        }
        // Symmetric: P(X ≤ −k−1) = P(X > k).
        let b = 7.0;
        assert!((discrete_laplace_cdf(b, -6) - (1.0 - discrete_laplace_cdf(b, 5))).abs() < 1e-12);
    }

    #[test]
    fn halfwidth_is_the_smallest_covering_integer() {
        for scale in [0.5, 1.0, 2.0, 4.0, 10.0, 37.5, 200.0] {
            let t = halfwidth(Mechanism::DiscreteLaplace, scale, 0.95);
            assert!(discrete_laplace_tail(scale, t) <= 0.05, "scale {scale}");
            if t > 0 {
                assert!(
                    discrete_laplace_tail(scale, t - 1) > 0.05,
                    "scale {scale}: {t} is not the smallest"
                );
            }
            let t = halfwidth(Mechanism::DiscreteGaussian, scale, 0.95);
            assert!(discrete_gaussian_tail(scale, t) <= 0.05, "σ {scale}");
            if t > 0 {
                assert!(
                    discrete_gaussian_tail(scale, t - 1) > 0.05,
                    "σ {scale}: {t} is not the smallest"
                );
            }
        }
        // Large scales approach the continuous distributions: b·ln(20) and
        // 1.96σ.
        let b = 1000.0;
        let laplace = halfwidth(Mechanism::DiscreteLaplace, b, 0.95) as f64;
        assert!((laplace - b * 20f64.ln()).abs() < 2.0);
        let gaussian = halfwidth(Mechanism::DiscreteGaussian, b, 0.95) as f64;
        assert!((gaussian - 1.959_964 * b).abs() < 2.0, "{gaussian}");
    }

    #[test]
    fn the_gaussian_pmf_sums_to_one_and_is_symmetric() {
        for sigma in [0.3, 1.0, 7.5, 120.0] {
            let pmf = discrete_gaussian_pmf(sigma);
            assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let n = pmf.len();
            assert!((0..n / 2).all(|i| (pmf[i] - pmf[n - 1 - i]).abs() < 1e-15));
        }
    }
}
