//! Intervals from the discrete Laplace distribution: P(X = k) ∝ exp(−|k|/b).

/// P(|X| > t) for discrete Laplace noise of scale `b`, t ≥ 0:
/// 2·α^(t+1)/(1+α) with α = exp(−1/b).
pub fn discrete_laplace_tail(scale: f64, t: i64) -> f64 {
    let alpha = (-1.0 / scale).exp();
    2.0 * alpha.powf((t + 1) as f64) / (1.0 + alpha)
}

/// The smallest t with P(|X| > t) ≤ 1 − coverage: [v − t, v + t] then covers
/// the true value with at least that probability.
pub fn halfwidth(scale: f64, coverage: f64) -> i64 {
    if scale <= 0.0 {
        return 0;
    }
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
    fn halfwidth_is_the_smallest_covering_integer() {
        for scale in [0.5, 1.0, 2.0, 4.0, 10.0, 37.5, 200.0] {
            let t = halfwidth(scale, 0.95);
            assert!(discrete_laplace_tail(scale, t) <= 0.05, "scale {scale}");
            if t > 0 {
                assert!(
                    discrete_laplace_tail(scale, t - 1) > 0.05,
                    "scale {scale}: {t} is not the smallest"
                );
            }
        }
        // Large scales approach the continuous Laplace: b·ln(20).
        let b = 1000.0;
        assert!((halfwidth(b, 0.95) as f64 - b * 20f64.ln()).abs() < 2.0);
    }
}
