//! The 95% interval of a total over sites. Each site adds independent
//! noise of its own mechanism and scale: discrete Gaussian,
//! P(X = k) ∝ exp(−k²/(2σ²)), or discrete Laplace, P(X = k) ∝ exp(−|k|/b),
//! so the noise of the total is the convolution of the sites' distributions. This
//! module convolves them numerically and returns the smallest t with
//! P(|noise of the total| ≤ t) ≥ 95%.
//!
//! The convolution runs on a grid of width w: exact (w = 1) while
//! b_max·√n < 16 for n sites, otherwise w = ⌈b_max·√n / 16⌉, which keeps
//! about 660 points per site. On a coarser grid each site's noise is rounded
//! to the nearest multiple of w, which moves the result by well under w·n;
//! a test compares the two against each other. Distributions are cut where
//! the tails hold less than 1e-10.

use std::collections::HashMap;
use std::sync::Mutex;

use bonebank_query::interval::discrete_laplace_cdf as cdf;
use bonebank_schemas::wire::Mechanism;

/// Tail mass cut from each site's distribution.
const TAIL: f64 = 1e-10;

/// The smallest t ≥ 0 with P(|X| > t) ≤ TAIL.
fn support(b: f64) -> i64 {
    let alpha = (-1.0 / b).exp();
    // 2α^(t+1)/(1+α) ≤ TAIL
    ((TAIL * (1.0 + alpha) / 2.0).ln() / alpha.ln()).ceil() as i64
}

/// The grid width used for `scales`.
pub fn grid(scales: &[(Mechanism, f64)]) -> i64 {
    let max = scales.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let spread = max * (scales.len() as f64).sqrt();
    if spread < 16.0 {
        1
    } else {
        (spread / 16.0).ceil() as i64
    }
}

/// The noise of one site rounded to multiples of `w` (odd or 1): mass of the
/// bin j = [j·w − r, j·w + r] with r = ⌊w/2⌋, for j in −m..=m.
fn binned(mechanism: Mechanism, scale: f64, w: i64) -> Vec<f64> {
    let r = w / 2;
    match mechanism {
        Mechanism::DiscreteLaplace => {
            let m = (support(scale) + r) / w;
            (-m..=m)
                .map(|j| cdf(scale, j * w + r) - cdf(scale, j * w - r - 1))
                .collect()
        }
        Mechanism::DiscreteGaussian => {
            let pmf = bonebank_query::interval::discrete_gaussian_pmf(scale);
            let half = (pmf.len() / 2) as i64;
            let m = (half + r) / w;
            let at = |k: i64| pmf.get((k + half) as usize).copied().unwrap_or(0.0);
            (-m..=m)
                .map(|j| {
                    (j * w - r..=j * w + r)
                        .filter(|k| k.abs() <= half)
                        .map(at)
                        .sum()
                })
                .collect()
        }
    }
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        if *x == 0.0 {
            continue;
        }
        for (o, y) in out[i..].iter_mut().zip(b) {
            *o += x * y;
        }
    }
    out
}

/// The halfwidth on a given grid width (rounded up to odd). `w = 1` is exact.
pub fn halfwidth_on_grid(scales: &[(Mechanism, f64)], coverage: f64, w: i64) -> f64 {
    let w = if w > 1 && w % 2 == 0 { w + 1 } else { w.max(1) };
    let mut pmf = vec![1.0];
    for &(mechanism, scale) in scales.iter().filter(|(_, s)| *s > 0.0) {
        pmf = convolve(&pmf, &binned(mechanism, scale, w));
    }
    // pmf is symmetric around its middle index.
    let mid = pmf.len() / 2;
    let mut covered = pmf[mid];
    let mut j = 0;
    while covered < coverage && j < mid {
        j += 1;
        covered += pmf[mid - j] + pmf[mid + j];
    }
    (j as i64 * w) as f64
}

/// Halfwidths already worked out, by the scales they were for. Networks use
/// few distinct settings, so this stays small; it is emptied if it grows.
static CACHE: Mutex<Option<HashMap<Vec<u64>, f64>>> = Mutex::new(None);

/// The 95%-style halfwidth for a total of independent noises with `scales`:
/// the smallest t (on the grid) with P(|Σ X_i| ≤ t) ≥ coverage.
pub fn halfwidth(scales: &[(Mechanism, f64)], coverage: f64) -> f64 {
    let mut scales: Vec<(Mechanism, f64)> =
        scales.iter().copied().filter(|(_, s)| *s > 0.0).collect();
    if scales.is_empty() {
        return 0.0;
    }
    scales.sort_by(|a, b| (a.0 as u8).cmp(&(b.0 as u8)).then(a.1.total_cmp(&b.1)));
    let mut key: Vec<u64> = scales
        .iter()
        .map(|(m, s)| s.to_bits() ^ (*m as u64))
        .collect();
    key.push(coverage.to_bits());
    if let Some(t) = CACHE
        .lock()
        .expect("cache lock")
        .as_ref()
        .and_then(|c| c.get(&key))
    {
        return *t;
    }
    let t = halfwidth_on_grid(&scales, coverage, grid(&scales));
    let mut cache = CACHE.lock().expect("cache lock");
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() > 4096 {
        cache.clear();
    }
    cache.insert(key, t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Mechanism = Mechanism::DiscreteLaplace;
    const G: Mechanism = Mechanism::DiscreteGaussian;

    fn laplace(scales: &[f64]) -> Vec<(Mechanism, f64)> {
        scales.iter().map(|s| (L, *s)).collect()
    }

    #[test]
    fn one_site_matches_the_single_distribution() {
        for b in [0.5, 1.0, 4.0, 12.5, 40.0, 400.0] {
            for m in [L, G] {
                let exact = bonebank_query::interval::halfwidth(m, b, 0.95) as f64;
                assert_eq!(
                    halfwidth_on_grid(&[(m, b)], 0.95, 1),
                    exact,
                    "{m:?} scale {b}"
                );
            }
        }
    }

    #[test]
    fn pmf_sums_to_one() {
        for (b, w) in [(3.0, 1), (50.0, 7), (500.0, 33)] {
            for m in [L, G] {
                let s: f64 = binned(m, b, w).iter().sum();
                assert!((s - 1.0).abs() < 1e-8, "{m:?} scale {b}, grid {w}: {s}");
            }
        }
    }

    #[test]
    fn gaussian_sites_add_their_variances() {
        // A sum of discrete Gaussians is close to a Gaussian with the summed
        // variance: 1.96·√(Σσ²).
        for sigmas in [
            vec![5.0, 5.0, 5.0],
            vec![20.0, 7.0],
            vec![60.0, 80.0, 100.0],
        ] {
            let scales: Vec<(Mechanism, f64)> = sigmas.iter().map(|s| (G, *s)).collect();
            let t = halfwidth(&scales, 0.95);
            let expected = 1.959_964 * sigmas.iter().map(|s| s * s).sum::<f64>().sqrt();
            let slack = 1.0 + 2.0 * grid(&scales) as f64;
            assert!(
                (t - expected).abs() <= slack,
                "{sigmas:?}: {t} vs {expected}"
            );
        }
    }

    #[test]
    fn two_sites_match_a_direct_sum() {
        // P(|X + Y| ≤ t) summed directly over the joint distribution.
        let (a, b) = (3.0, 7.0);
        let t = halfwidth_on_grid(&laplace(&[a, b]), 0.95, 1) as i64;
        let p = |b: f64, k: i64| cdf(b, k) - cdf(b, k - 1);
        let covered = |t: i64| -> f64 {
            let mut s = 0.0;
            for x in -400i64..=400 {
                for y in -400..=400 {
                    if (x + y).abs() <= t {
                        s += p(a, x) * p(b, y);
                    }
                }
            }
            s
        };
        assert!(covered(t) >= 0.95);
        assert!(covered(t - 1) < 0.95);
    }

    #[test]
    fn the_grid_stays_close_to_the_exact_convolution() {
        for scales in [vec![40.0, 60.0, 100.0], vec![10.0; 20], vec![150.0, 5.0]] {
            let scales = laplace(&scales);
            let w = grid(&scales);
            assert!(w > 1, "{scales:?} should use a coarser grid");
            let exact = halfwidth_on_grid(&scales, 0.95, 1);
            let approx = halfwidth(&scales, 0.95);
            let allowed = (w * scales.len() as i64) as f64;
            assert!(
                (approx - exact).abs() <= allowed,
                "{scales:?}: grid {w} gives {approx}, exact {exact}"
            );
            // In practice the difference is within about one grid step.
            assert!(
                (approx - exact).abs() <= 2.0 * w as f64,
                "{scales:?}: {approx} vs {exact}"
            );
        }
    }

    #[test]
    fn more_sites_widen_the_interval() {
        let one = halfwidth(&laplace(&[10.0]), 0.95);
        let three = halfwidth(&laplace(&[10.0, 10.0, 10.0]), 0.95);
        assert!(three > one && three < 3.0 * one, "{one} {three}");
    }
}
