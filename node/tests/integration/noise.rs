//! The noise itself, tested statistically with a fixed number of draws: the
//! released values follow the discrete Gaussian (zCDP) or discrete Laplace
//! (pure ε) of the stated scale, intervals cover at 95%, and the loss
//! charged is the loss asked for.

use bonebank_node::privacy::{
    self, NoiseMechanism, Noised, OpenDpNoise, Sensitivity, discrete_gaussian_pmf,
    discrete_gaussian_tail, discrete_laplace_tail, halfwidth,
};
use bonebank_schemas::wire::{Accounting, Mechanism};

const DRAWS: usize = 40_000;

fn moments(xs: &[i64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<i64>() as f64 / n;
    let var = xs.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

fn release(accounting: Accounting, values: &[i64], s: Sensitivity, loss: f64) -> Noised {
    let c = OpenDpNoise.calibrate(accounting, s, loss).unwrap();
    OpenDpNoise.release(values, &c).unwrap()
}

/// Checks `DRAWS` draws of noise against the distribution: mean, variance,
/// P(0) and the tail beyond the 95% halfwidth, each within 5 standard errors.
fn check_draws(
    label: &str,
    noise: &[i64],
    variance: f64,
    p0: f64,
    tail: impl Fn(i64) -> f64,
    t: i64,
) {
    let n = DRAWS as f64;
    let (mean, var) = moments(noise);
    let se_mean = (variance / n).sqrt();
    assert!(
        mean.abs() < 5.0 * se_mean,
        "{label}: mean {mean}, se {se_mean}"
    );
    assert!(
        (var / variance - 1.0).abs() < 0.08,
        "{label}: variance {var}, expected {variance}"
    );
    let zeros = noise.iter().filter(|x| **x == 0).count() as f64 / n;
    assert!(
        (zeros - p0).abs() < 5.0 * (p0 * (1.0 - p0) / n).sqrt(),
        "{label}: P(0) {zeros} vs {p0}"
    );
    let outside = noise.iter().filter(|x| x.abs() > t).count() as f64 / n;
    let expected = tail(t);
    assert!(
        (outside - expected).abs() < 5.0 * (expected * (1.0 - expected) / n).sqrt(),
        "{label}: {outside} outside ±{t}, expected {expected}"
    );
    assert!(
        outside < 0.06,
        "{label}: {outside} outside the 95% interval"
    );
}

#[test]
fn released_values_follow_the_discrete_gaussian_of_the_stated_scale() {
    // (per cell, cells, ρ, truth)
    for (per_cell, cells, rho, truth) in
        [(1, 1, 0.023, 0i64), (1, 6, 0.019, 1000), (5, 6, 0.004, 37)]
    {
        let s = Sensitivity::of_cells(per_cell, cells);
        let released = release(Accounting::Zcdp, &vec![truth; DRAWS], s, rho);
        let sigma = released.scale;
        // σ = Δ₂/√(2ρ), with Δ₂ = √cells · per_cell.
        let expected_sigma = (cells as f64).sqrt() * per_cell as f64 / (2.0 * rho).sqrt();
        assert!(
            (sigma / expected_sigma - 1.0).abs() < 1e-9,
            "σ {sigma} vs {expected_sigma}"
        );
        let pmf = discrete_gaussian_pmf(sigma);
        let mid = (pmf.len() / 2) as i64;
        let variance: f64 = pmf
            .iter()
            .enumerate()
            .map(|(i, p)| ((i as i64 - mid) as f64).powi(2) * p)
            .sum();
        let noise: Vec<i64> = released.values.iter().map(|v| v - truth).collect();
        let t = halfwidth(Mechanism::DiscreteGaussian, sigma, 0.95);
        check_draws(
            &format!("Gaussian Δ₂={} ρ={rho}", s.l2),
            &noise,
            variance,
            pmf[mid as usize],
            |t| discrete_gaussian_tail(sigma, t),
            t,
        );
        // The privacy map states at most the ρ asked for, and no less than
        // a hair below it.
        assert!(
            released.loss <= rho && rho - released.loss < 1e-9,
            "charged {}",
            released.loss
        );
    }
}

#[test]
fn released_values_follow_the_discrete_laplace_of_the_stated_scale() {
    for (sensitivity, epsilon, truth) in [(1, 0.5, 0i64), (10, 1.0, 1000), (4, 0.25, 37)] {
        let released = release(
            Accounting::Pure,
            &vec![truth; DRAWS],
            Sensitivity::of_cells(1, sensitivity),
            epsilon,
        );
        let b = released.scale;
        assert!(
            (b - sensitivity as f64 / epsilon).abs() / b < 1e-9,
            "scale {b}"
        );
        let alpha: f64 = (-1.0 / b).exp();
        let variance = 2.0 * alpha / (1.0 - alpha).powi(2);
        let noise: Vec<i64> = released.values.iter().map(|v| v - truth).collect();
        let t = halfwidth(Mechanism::DiscreteLaplace, b, 0.95);
        check_draws(
            &format!("Laplace Δ₁={sensitivity} ε={epsilon}"),
            &noise,
            variance,
            (1.0 - alpha) / (1.0 + alpha),
            |t| discrete_laplace_tail(b, t),
            t,
        );
        assert!(
            released.loss <= epsilon && epsilon - released.loss < 1e-9,
            "charged {}",
            released.loss
        );
    }
}

#[test]
fn the_l2_sensitivity_never_rounds_below_the_truth() {
    for cells in 1..=200i64 {
        for per_cell in [1i64, 2, 5, 20, 450] {
            let s = Sensitivity::of_cells(per_cell, cells);
            assert_eq!(s.l1, per_cell * cells);
            // Δ₂² ≥ cells · per_cell², exactly in integers where it can be.
            assert!(
                s.l2 * s.l2 >= (cells * per_cell * per_cell) as f64,
                "{cells} {per_cell}"
            );
            assert!(s.l2 < ((cells * per_cell * per_cell) as f64).sqrt() * (1.0 + 1e-12));
        }
    }
}

#[test]
fn the_default_user_budget_is_epsilon_five_at_delta_one_in_a_million() {
    let z = bonebank_query::policy::Policy::default().zcdp;
    let eps = privacy::zcdp_epsilon(z.budget.user, z.delta).unwrap();
    assert!(z.delta <= 1e-6);
    assert!((4.9..=5.0).contains(&eps), "ρ {} is ε {eps}", z.budget.user);
    // Twenty fresh questions at the default ρ fit the user budget.
    assert!(20.0 * z.rho.default <= z.budget.user + 1e-12);
    assert!(21.0 * z.rho.default > z.budget.user);
}

#[test]
fn noise_is_integer_and_fresh_for_each_release() {
    for accounting in [Accounting::Zcdp, Accounting::Pure] {
        let s = Sensitivity::of_cells(5, 1);
        let a = release(accounting, &[100; 64], s, 0.05);
        let b = release(accounting, &[100; 64], s, 0.05);
        assert_ne!(a.values, b.values, "two releases drew the same noise");
        // Zero and small counts get the same noise as any other: no special case.
        let small = release(
            accounting,
            &vec![0; DRAWS],
            Sensitivity::of_cells(1, 1),
            0.05,
        );
        assert!(
            small.values.iter().any(|v| *v < 0),
            "noise on zero was never negative"
        );
        assert!(small.values.iter().any(|v| *v > 0));
    }
}
