//! The total's 95% interval, checked against real noise: sites release with
//! OpenDP's discrete Gaussian (zCDP) or discrete Laplace (pure ε), the
//! coordinator adds them up, and the stated interval must cover the true
//! total in 95% ± 2% of releases.

use bonebank_coordinator::merge::total_value;
use bonebank_node::privacy::{self, NoiseMechanism, Noised, OpenDpNoise, Sensitivity};
use bonebank_schemas::wire::{Accounting, Mechanism};

const RELEASES: usize = 4_000;

/// `RELEASES` releases of `truth` at one site whose donors move `cells`
/// cells by at most `per_cell`, spending `loss`.
fn release(accounting: Accounting, truth: i64, (per_cell, cells, loss): (i64, i64, f64)) -> Noised {
    let c = OpenDpNoise
        .calibrate(accounting, Sensitivity::of_cells(per_cell, cells), loss)
        .unwrap();
    OpenDpNoise.release(&vec![truth; RELEASES], &c).unwrap()
}

/// Coverage of the stated interval over `RELEASES` releases of `truth` at
/// each site.
fn coverage(accounting: Accounting, truth: &[i64], settings: &[(i64, i64, f64)]) -> f64 {
    let mechanism = privacy::mechanism(accounting);
    let mut noisy = Vec::new();
    let mut scales: Vec<(Mechanism, f64)> = Vec::new();
    for (&t, &setting) in truth.iter().zip(settings) {
        let released = release(accounting, t, setting);
        scales.push((mechanism, released.scale));
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
    // Laplace scales 8, 20 and 50: exact convolution for the first pair,
    // grid for all.
    let c = coverage(
        Accounting::Pure,
        &[120, 4_000, 900],
        &[(1, 2, 0.25), (1, 10, 0.5), (1, 5, 0.1)],
    );
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
    // Gaussian σ 5, 20 and 41.
    let c = coverage(
        Accounting::Zcdp,
        &[120, 4_000, 900],
        &[(1, 1, 0.02), (5, 4, 0.125), (5, 6, 0.018)],
    );
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
}

#[test]
fn three_sites_with_the_demo_settings() {
    // Donor counts grouped by sample type: G = 6 cells, ρ 0.023·5/6 each.
    let c = coverage(Accounting::Zcdp, &[300, 0, 75], &[(1, 6, 0.019_166); 3]);
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
    // The same under pure ε: G = 4, ε 0.125.
    let c = coverage(Accounting::Pure, &[300, 0, 75], &[(1, 4, 0.125); 3]);
    assert!((0.93..=0.97).contains(&c), "coverage {c}");
}

#[test]
fn twenty_sites_on_the_coarse_grid() {
    let truth = vec![50; 20];
    for (accounting, loss) in [(Accounting::Pure, 0.25), (Accounting::Zcdp, 0.004)] {
        let c = coverage(accounting, &truth, &vec![(1, 5, loss); 20]);
        assert!((0.93..=0.97).contains(&c), "{accounting:?}: coverage {c}");
    }
}

#[test]
fn a_too_narrow_interval_would_be_caught() {
    // The check above can fail: half the stated width covers far less.
    let truth = [100, 100, 100];
    let mut noisy = Vec::new();
    let mut scales = Vec::new();
    for &t in &truth {
        let r = release(Accounting::Zcdp, t, (1, 5, 0.01));
        scales.push((Mechanism::DiscreteGaussian, r.scale));
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
