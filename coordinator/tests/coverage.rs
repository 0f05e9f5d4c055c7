//! The total's 95% interval, checked against real noise: sites release with
//! OpenDP's discrete Laplace, the coordinator adds them up, and the stated
//! interval must cover the true total in 95% ± 2% of releases.

use bonebank_coordinator::merge::total_value;
use bonebank_node::privacy::{NoiseMechanism, OpenDpLaplace};

const RELEASES: usize = 4_000;

/// Coverage of the stated interval over `RELEASES` releases of `truth` at
/// each site, with noise of scale sensitivity/ε per site.
fn coverage(truth: &[i64], settings: &[(i64, f64)]) -> f64 {
    let mut noisy = Vec::new();
    let mut scales = Vec::new();
    for (&t, &(sensitivity, epsilon)) in truth.iter().zip(settings) {
        let released = OpenDpLaplace
            .calibrate_and_release(&vec![t; RELEASES], sensitivity, epsilon)
            .unwrap();
        scales.push(released.scale);
        noisy.push(released.values);
    }
    let true_total: i64 = truth.iter().sum();
    let covered = (0..RELEASES)
        .filter(|&i| {
            let sum: i64 = noisy.iter().map(|v| v[i]).sum();
            let total = total_value(sum as f64, &scales);
            total.interval[0] <= true_total as f64 && true_total as f64 <= total.interval[1]
        })
        .count();
    covered as f64 / RELEASES as f64
}

#[test]
fn three_sites_with_different_scales() {
    // Scales 8, 20 and 50: exact convolution for the first pair, grid for all.
    let c = coverage(&[120, 4_000, 900], &[(2, 0.25), (10, 0.5), (5, 0.1)]);
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
}

#[test]
fn three_sites_with_the_demo_settings() {
    // Donor counts of a grouped query: sensitivity G = 4, ε 0.125 each.
    let c = coverage(&[300, 0, 75], &[(4, 0.125), (4, 0.125), (4, 0.125)]);
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
}

#[test]
fn twenty_sites_on_the_coarse_grid() {
    let truth = vec![50; 20];
    let settings = vec![(5, 0.25); 20];
    let c = coverage(&truth, &settings);
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
}

#[test]
fn a_too_narrow_interval_would_be_caught() {
    // The check above can fail: half the stated width covers far less.
    let (truth, settings) = (vec![100, 100, 100], vec![(5, 0.25); 3]);
    let mut noisy = Vec::new();
    let mut scales = Vec::new();
    for (&t, &(s, e)) in truth.iter().zip(&settings) {
        let r = OpenDpLaplace
            .calibrate_and_release(&vec![t; RELEASES], s, e)
            .unwrap();
        scales.push(r.scale);
        noisy.push(r.values);
    }
    let covered = (0..RELEASES)
        .filter(|&i| {
            let sum: i64 = noisy.iter().map(|v| v[i]).sum();
            let total = total_value(sum as f64, &scales);
            let half = (total.interval[1] - total.interval[0]) / 4.0;
            (sum as f64 - 300.0).abs() <= half
        })
        .count() as f64
        / RELEASES as f64;
    assert!(covered < 0.93, "{covered}");
}
