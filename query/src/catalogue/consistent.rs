//! One consistent estimate from a catalogue's noisy tables.
//!
//! Each table is measured on its own, with noise of its own, so the raw
//! tables disagree: the sexes' samples do not add up to the total, a
//! cell may be negative, a cell may show more donors than samples. The
//! catalogue publishes instead the estimate closest to all of them that
//! has none of these faults, and the error model of that estimate.
//!
//! **Least squares over marginals.** Every table of one count is a
//! marginal of one unknown table over all the dimensions. Split each
//! marginal into its ANOVA components: for a set *A* of dimensions, the
//! part of the counts over *A* that no smaller set explains (the table
//! over *A*, centred along each of its dimensions). These components are
//! orthogonal, and a marginal over *B* is the sum of its components over
//! every *A* ⊆ *B*. A table over *S* measures each component *A* ⊆ *S*
//! with independent noise of variance σ²_S · Π_{j ∈ S∖A} n_j (its cells
//! summed over the dimensions *A* leaves out). The weighted least-squares
//! estimate of the whole is therefore, component by component, the
//! inverse-variance mean of the tables' measurements of it, and its
//! variance is known exactly: V_A = 1 / Σ_S 1/v_{S,A}. A count over some
//! values of each dimension of a table has variance
//! Σ_{A ⊆ B} Π_{j ∈ A} (k_j − k_j²/n_j) Π_{j ∈ B∖A} (k_j/n_j)² V_A,
//! which is what [`variance`] works out, so an interval needs no
//! simulation. This is the decomposition ResidualPlanner (Xiao et al.,
//! 2023) builds its measurements on; here it only reconciles them.
//!
//! Donor counts add up along donor-level dimensions only (a donor has one
//! sex, but may give serum and stem cells), so donors are fitted within
//! each group of tables that differ only in donor-level dimensions, and
//! samples over all tables at once.
//!
//! **Bounds.** Within a cell, samples are at least the donors and at most
//! the samples-per-donor bound times the donors, and neither is negative.
//! Each cell of the fit is taken to the nearest point that keeps these
//! bounds, in the metric of its two measurements' precision (see
//! [`reconcile`] for why cell by cell). The intervals are the
//! least-squares estimate's; the evaluation measures how well they cover
//! the true counts after the bounds.

use std::collections::BTreeSet;

/// One noisy table: the attributes it is over (indices into the sizes), in
/// the order its cells run (the first most significant), and the variance
/// of each of its cells' noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub attributes: Vec<usize>,
    pub variance: f64,
}

/// For every table, the variance of each component of its fitted counts:
/// per set of its attributes (sorted), the variance V_A.
pub type Residuals = Vec<Vec<(Vec<usize>, f64)>>;

/// The weighted least-squares fit of `values` (one vector per table of
/// `shapes`) as marginals of one table over attributes of `sizes`: each
/// table's consistent values, and the variances of their components.
pub fn least_squares(
    sizes: &[usize],
    shapes: &[Shape],
    values: &[Vec<f64>],
) -> (Vec<Vec<f64>>, Residuals) {
    let components: BTreeSet<Vec<usize>> = shapes
        .iter()
        .flat_map(|s| subsets(&sorted(&s.attributes)))
        .collect();
    let mut fitted: Vec<(Vec<usize>, Vec<f64>, f64)> = Vec::with_capacity(components.len());
    for a in components {
        let mut sum = vec![0.0; cells(sizes, &a)];
        let mut precision = 0.0;
        for (shape, values) in shapes.iter().zip(values) {
            if !a.iter().all(|x| shape.attributes.contains(x)) {
                continue;
            }
            let mut part = vec![0.0; sum.len()];
            for (cell, to) in cell_map(sizes, &shape.attributes, &a)
                .into_iter()
                .enumerate()
            {
                part[to] += values[cell];
            }
            centre(&mut part, sizes, &a);
            let folded = cells(sizes, &shape.attributes) / cells(sizes, &a);
            let weight = 1.0 / (shape.variance.max(f64::MIN_POSITIVE) * folded as f64);
            for (s, p) in sum.iter_mut().zip(&part) {
                *s += weight * p;
            }
            precision += weight;
        }
        sum.iter_mut().for_each(|s| *s /= precision);
        fitted.push((a, sum, 1.0 / precision));
    }
    let mut tables = Vec::with_capacity(shapes.len());
    let mut residuals = Vec::with_capacity(shapes.len());
    for shape in shapes {
        let mut out = vec![0.0; cells(sizes, &shape.attributes)];
        let mut own = Vec::new();
        for (a, component, variance) in &fitted {
            if !a.iter().all(|x| shape.attributes.contains(x)) {
                continue;
            }
            let spread = (cells(sizes, &shape.attributes) / cells(sizes, a)) as f64;
            for (cell, from) in cell_map(sizes, &shape.attributes, a)
                .into_iter()
                .enumerate()
            {
                out[cell] += component[from] / spread;
            }
            own.push((a.clone(), *variance));
        }
        tables.push(out);
        residuals.push(own);
    }
    (tables, residuals)
}

/// The variance of a fitted count over a table's cells where its `i`th
/// attribute takes `chosen[i]` of its `sizes[i]` values, from the table's
/// component variances (attributes by position in the table: `residual`
/// gives V_A for a set of positions, sorted).
pub fn variance(sizes: &[usize], chosen: &[usize], residual: impl Fn(&[usize]) -> f64) -> f64 {
    let positions: Vec<usize> = (0..sizes.len()).collect();
    subsets(&positions)
        .into_iter()
        .map(|a| {
            let factor: f64 = positions
                .iter()
                .map(|j| {
                    let (k, n) = (chosen[*j] as f64, sizes[*j] as f64);
                    if a.contains(j) {
                        k - k * k / n
                    } else {
                        (k / n).powi(2)
                    }
                })
                .product();
            if factor == 0.0 {
                0.0
            } else {
                factor * residual(&a)
            }
        })
        .sum()
}

/// A table's donor and sample counts, measured, and the bound on samples
/// per donor in a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub donors: Vec<f64>,
    pub samples: Vec<f64>,
    pub samples_per_donor: f64,
}

/// What [`reconcile`] gives: per table, fitted donors and samples, and the
/// component variances of each.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub donors: Vec<Vec<f64>>,
    pub samples: Vec<Vec<f64>>,
    pub donor_residuals: Residuals,
    pub sample_residuals: Residuals,
    /// The cells the bounds moved, and the most one count moved.
    pub moved: usize,
    pub largest_move: f64,
}

/// The least-squares estimate of the measurements, samples fitted over all
/// tables and donors within each of `donor_groups` (table indices whose
/// counts add up along the attributes they differ in); then each cell
/// taken to the nearest point of 0 ≤ donors ≤ samples ≤ bound × donors,
/// in the metric of the two measurements' precision.
///
/// The bounds are applied cell by cell, after the fit, and not fitted
/// jointly with it. Fitted jointly (Dykstra's projections between the
/// consistent tables and the cones), they make every table add up exactly,
/// but at a price the evaluation measured: a deep table's many empty cells
/// have noise of both signs, the negative half is lifted to zero, and
/// keeping the tables consistent carries that lift into the totals. At the
/// demo sites, the site's total samples then covered the TRUE count in
/// none of 60 catalogues. Cell by cell, a coarse table keeps its unbiased
/// fit, and a finer table's cells add up to it except by what the bounds
/// moved, which [`Reconciled::moved`] counts.
pub fn reconcile(
    sizes: &[usize],
    donor_shapes: &[Shape],
    sample_shapes: &[Shape],
    measured: &[Pair],
    donor_groups: &[Vec<usize>],
) -> Reconciled {
    let mut donors = vec![Vec::new(); measured.len()];
    let mut donor_residuals = vec![Vec::new(); measured.len()];
    for group in donor_groups {
        let shapes: Vec<Shape> = group.iter().map(|t| donor_shapes[*t].clone()).collect();
        let values: Vec<Vec<f64>> = group.iter().map(|t| measured[*t].donors.clone()).collect();
        let (fitted, residuals) = least_squares(sizes, &shapes, &values);
        for ((t, f), r) in group.iter().zip(fitted).zip(residuals) {
            donors[*t] = f;
            donor_residuals[*t] = r;
        }
    }
    let samples0: Vec<Vec<f64>> = measured.iter().map(|p| p.samples.clone()).collect();
    let (mut samples, sample_residuals) = least_squares(sizes, sample_shapes, &samples0);
    let (mut moved, mut largest_move) = (0, 0.0f64);
    for t in 0..measured.len() {
        let weights = (
            1.0 / donor_shapes[t].variance.max(f64::MIN_POSITIVE),
            1.0 / sample_shapes[t].variance.max(f64::MIN_POSITIVE),
        );
        for c in 0..donors[t].len() {
            let (d, s) = (donors[t][c], samples[t][c]);
            let (pd, ps) = into_cone(d, s, measured[t].samples_per_donor, weights);
            let by = (pd - d).abs().max((ps - s).abs());
            // Rounding error of the fit is not a move.
            if by > 1e-9 {
                moved += 1;
                largest_move = largest_move.max(by);
            }
            donors[t][c] = pd;
            samples[t][c] = ps;
        }
    }
    Reconciled {
        donors,
        samples,
        donor_residuals,
        sample_residuals,
        moved,
        largest_move,
    }
}

/// The nearest point to (d, s), in the metric weighing d by `w.0` and s by
/// `w.1`, of the cone 0 ≤ d ≤ s ≤ b·d.
fn into_cone(d: f64, s: f64, b: f64, w: (f64, f64)) -> (f64, f64) {
    let b = b.max(1.0);
    if d >= 0.0 && d <= s && s <= b * d {
        return (d, s);
    }
    // Outside, the nearest point is on one of the two rays (1, c).
    let onto = |c: f64| {
        let t = ((w.0 * d + w.1 * c * s) / (w.0 + w.1 * c * c)).max(0.0);
        let (pd, ps) = (t, c * t);
        (w.0 * (pd - d).powi(2) + w.1 * (ps - s).powi(2), pd, ps)
    };
    let (a, b) = (onto(1.0), onto(b));
    if a.0 <= b.0 { (a.1, a.2) } else { (b.1, b.2) }
}

/// A measurement to be given a share of the loss: the attributes of its
/// table, its L2 sensitivity, the system it is fitted in (measurements
/// fitted together share components), and its target half-width.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub attributes: Vec<usize>,
    pub sensitivity: f64,
    pub system: usize,
    pub target: f64,
}

/// What component `a` of a table over `b` adds to one cell's variance,
/// per unit of the component's variance (see [`variance`], with one value
/// of each dimension chosen).
fn one_cell(sizes: &[usize], b: &[usize], a: &[usize]) -> f64 {
    b.iter()
        .map(|j| {
            let n = sizes[*j] as f64;
            if a.contains(j) {
                1.0 - 1.0 / n
            } else {
                1.0 / (n * n)
            }
        })
        .product()
}

/// The variance of one cell of a table over `b` in a fit whose component
/// precisions are `precision` (per sorted attribute set).
fn cell_variance(
    sizes: &[usize],
    b: &[usize],
    precision: &std::collections::BTreeMap<Vec<usize>, f64>,
) -> f64 {
    subsets(&sorted(b))
        .into_iter()
        .map(|a| {
            let factor = one_cell(sizes, b, &a);
            if factor == 0.0 {
                0.0
            } else {
                factor / precision.get(&a).copied().unwrap_or(f64::MIN_POSITIVE)
            }
        })
        .sum()
}

/// Each component's precision in each system, for losses `rho`: a table
/// over S measured with ρ_S contributes 2ρ_S/(Δ²_S · Π_{S∖A} n_j) to every
/// component A ⊆ S of its system.
fn precisions(
    sizes: &[usize],
    planned: &[Planned],
    rho: &[f64],
) -> Vec<std::collections::BTreeMap<Vec<usize>, f64>> {
    let systems = planned.iter().map(|p| p.system).max().map_or(0, |m| m + 1);
    let mut out = vec![std::collections::BTreeMap::new(); systems];
    for (p, r) in planned.iter().zip(rho) {
        let whole = cells(sizes, &p.attributes);
        for a in subsets(&sorted(&p.attributes)) {
            let folded = (whole / cells(sizes, &a)) as f64;
            *out[p.system].entry(a).or_insert(0.0) +=
                2.0 * r / (p.sensitivity * p.sensitivity * folded);
        }
    }
    out
}

/// The workload's weighted variance for losses `rho`: per measurement,
/// one cell of its table's fitted variance over its target squared.
pub fn workload_error(sizes: &[usize], planned: &[Planned], rho: &[f64]) -> f64 {
    let precision = precisions(sizes, planned, rho);
    planned
        .iter()
        .map(|p| cell_variance(sizes, &p.attributes, &precision[p.system]) / (p.target * p.target))
        .sum()
}

/// The split over `planned` of the total of `start` that minimises
/// [`workload_error`]: the error is convex in the losses, and at its
/// minimum on Σρ = total every measurement's marginal gain is equal. Each
/// round multiplies every share by the square root of its marginal gain
/// and rescales (a fixed point of this is that condition). When no two
/// measurements share a component one round reaches the independent
/// tables' optimum ρ ∝ Δ/t from anywhere.
pub fn optimal_split(
    sizes: &[usize],
    planned: &[Planned],
    start: Vec<f64>,
    rounds: usize,
) -> Vec<f64> {
    let total: f64 = start.iter().sum();
    let mut rho = start;
    for _ in 0..rounds {
        let precision = precisions(sizes, planned, &rho);
        // −∂error/∂ρ_S for each measurement S.
        let mut gain = vec![0.0; planned.len()];
        for q in planned {
            let b = sorted(&q.attributes);
            for a in subsets(&b) {
                let factor = one_cell(sizes, &b, &a);
                if factor == 0.0 {
                    continue;
                }
                let p_a = precision[q.system][&a];
                let base = factor / (q.target * q.target) / (p_a * p_a);
                for (s, m) in planned.iter().enumerate() {
                    if m.system == q.system && a.iter().all(|x| m.attributes.contains(x)) {
                        let folded = (cells(sizes, &m.attributes) / cells(sizes, &a)) as f64;
                        gain[s] += base * 2.0 / (m.sensitivity * m.sensitivity * folded);
                    }
                }
            }
        }
        // No measurement is starved to nothing: each is released.
        let floor = total * 1e-4;
        let next: Vec<f64> = rho
            .iter()
            .zip(&gain)
            .map(|(r, g)| (r * g.sqrt()).max(floor))
            .collect();
        let sum: f64 = next.iter().sum();
        rho = next.iter().map(|r| total * r / sum).collect();
    }
    rho
}

/// The number of cells of a table over `attributes`.
fn cells(sizes: &[usize], attributes: &[usize]) -> usize {
    attributes.iter().map(|a| sizes[*a]).product()
}

fn sorted(attributes: &[usize]) -> Vec<usize> {
    let mut s = attributes.to_vec();
    s.sort_unstable();
    s
}

/// Every subset of `set` (kept in its order).
pub(crate) fn subsets<T: Copy>(set: &[T]) -> Vec<Vec<T>> {
    (0u32..1 << set.len())
        .map(|mask| {
            set.iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, a)| *a)
                .collect()
        })
        .collect()
}

/// For each cell of a table over `from`, the cell of its marginal over
/// `onto` (a subset of `from`, sorted, cells in that order) it adds to.
fn cell_map(sizes: &[usize], from: &[usize], onto: &[usize]) -> Vec<usize> {
    let strides: Vec<usize> = from
        .iter()
        .map(|a| {
            onto.iter()
                .position(|b| b == a)
                .map_or(0, |i| cells(sizes, &onto[i + 1..]))
        })
        .collect();
    let n = cells(sizes, from);
    let mut out = Vec::with_capacity(n);
    let mut digits = vec![0usize; from.len()];
    let mut index = 0usize;
    for _ in 0..n {
        out.push(index);
        for axis in (0..from.len()).rev() {
            digits[axis] += 1;
            index += strides[axis];
            if digits[axis] < sizes[from[axis]] {
                break;
            }
            index -= strides[axis] * digits[axis];
            digits[axis] = 0;
        }
    }
    out
}

/// Centres a table over `attributes` (sorted, cells in that order) along
/// each of its attributes: its component over exactly that set.
fn centre(values: &mut [f64], sizes: &[usize], attributes: &[usize]) {
    for (i, a) in attributes.iter().enumerate() {
        let n = sizes[*a];
        let stride = cells(sizes, &attributes[i + 1..]);
        for outer in 0..values.len() / (n * stride) {
            for inner in 0..stride {
                let at = |k: usize| outer * n * stride + k * stride + inner;
                let mean = (0..n).map(|k| values[at(k)]).sum::<f64>() / n as f64;
                for k in 0..n {
                    values[at(k)] -= mean;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Sizes 2 (a donor-level attribute) × 3 × 4, and every table over a
    /// subset of them, each with its variance.
    fn lattice(variance: impl Fn(&[usize]) -> f64) -> (Vec<usize>, Vec<Shape>) {
        let sizes = vec![2, 3, 4];
        let shapes = subsets(&[0, 1, 2])
            .into_iter()
            .map(|attributes| Shape {
                variance: variance(&attributes),
                attributes,
            })
            .collect();
        (sizes, shapes)
    }

    /// The marginals of `full` (over all of `sizes`, in order) for each shape.
    fn marginals(sizes: &[usize], full: &[f64], shapes: &[Shape]) -> Vec<Vec<f64>> {
        let all: Vec<usize> = (0..sizes.len()).collect();
        shapes
            .iter()
            .map(|s| {
                // A table's own order may differ from the sorted one.
                let sorted_map = cell_map(sizes, &all, &sorted(&s.attributes));
                let mut sorted_values = vec![0.0; cells(sizes, &s.attributes)];
                for (c, to) in sorted_map.into_iter().enumerate() {
                    sorted_values[to] += full[c];
                }
                let mut own = vec![0.0; sorted_values.len()];
                let back = cell_map(sizes, &s.attributes, &sorted(&s.attributes));
                for (c, from) in back.into_iter().enumerate() {
                    own[c] = sorted_values[from];
                }
                own
            })
            .collect()
    }

    #[test]
    fn consistent_tables_are_their_own_fit() {
        let (sizes, mut shapes) = lattice(|a| 1.0 + a.len() as f64);
        // One table in an order of its own.
        shapes.push(Shape {
            attributes: vec![2, 0],
            variance: 3.0,
        });
        let full: Vec<f64> = (0..24).map(|i| (i * 7 % 11) as f64).collect();
        let exact = marginals(&sizes, &full, &shapes);
        let (fit, _) = least_squares(&sizes, &shapes, &exact);
        for (f, e) in fit.iter().zip(&exact) {
            for (a, b) in f.iter().zip(e) {
                assert!((a - b).abs() < 1e-9, "{f:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn the_fit_adds_up_across_tables_and_to_the_total() {
        let (sizes, shapes) = lattice(|a| [1.0, 4.0, 9.0, 16.0][a.len()]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let noisy: Vec<Vec<f64>> = shapes
            .iter()
            .map(|s| {
                (0..cells(&sizes, &s.attributes))
                    .map(|_| rng.random_range(0.0..50.0))
                    .collect()
            })
            .collect();
        let (fit, _) = least_squares(&sizes, &shapes, &noisy);
        let full = &fit[shapes.iter().position(|s| s.attributes.len() == 3).unwrap()];
        let implied = marginals(&sizes, full, &shapes);
        for (f, i) in fit.iter().zip(&implied) {
            for (a, b) in f.iter().zip(i) {
                assert!((a - b).abs() < 1e-9);
            }
        }
    }

    /// The stated variance of a count is the variance of its fitted value
    /// over 4,000 draws of the tables' noise, for one cell, a selection of
    /// values, and the total.
    #[test]
    fn the_stated_variance_is_the_fits_variance() {
        const DRAWS: usize = 4_000;
        let (sizes, shapes) = lattice(|a| [2.0, 3.0, 5.0, 7.0][a.len()]);
        let full: Vec<f64> = (0..24).map(|i| (i * 5 % 13) as f64 * 10.0).collect();
        let exact = marginals(&sizes, &full, &shapes);
        let table = shapes.iter().position(|s| s.attributes == [1, 2]).unwrap();
        // Cells of the (1, 2) table: attribute 1 takes values {0, 2}, 2 takes {1}.
        let chosen_cells = [1usize, 2 * 4 + 1];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let normal = rand_distr::StandardNormal;
        let mut errors = Vec::with_capacity(DRAWS);
        for _ in 0..DRAWS {
            let noisy: Vec<Vec<f64>> = shapes
                .iter()
                .zip(&exact)
                .map(|(s, e)| {
                    e.iter()
                        .map(|v| v + s.variance.sqrt() * rng.sample::<f64, _>(normal))
                        .collect()
                })
                .collect();
            let (fit, _) = least_squares(&sizes, &shapes, &noisy);
            let value: f64 = chosen_cells.iter().map(|c| fit[table][*c]).sum();
            let truth: f64 = chosen_cells.iter().map(|c| exact[table][*c]).sum();
            errors.push(value - truth);
        }
        let (_, residuals) = least_squares(&sizes, &shapes, &exact);
        let stated = variance(&[3, 4], &[2, 1], |a| {
            let attrs: Vec<usize> = a.iter().map(|p| [1, 2][*p]).collect();
            residuals[table]
                .iter()
                .find(|(r, _)| *r == attrs)
                .map(|(_, v)| *v)
                .unwrap()
        });
        let mean = errors.iter().sum::<f64>() / DRAWS as f64;
        let observed = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / DRAWS as f64;
        // The variance's standard error is about √(2/N) = 2.2%: five of them.
        assert!(
            (observed / stated - 1.0).abs() < 0.11,
            "observed {observed}, stated {stated}"
        );
        assert!(
            mean.abs() < 5.0 * (stated / DRAWS as f64).sqrt(),
            "mean {mean}"
        );
        // And it is smaller than the measured table's own for those cells.
        assert!(stated < 2.0 * shapes[table].variance);
    }

    /// With nothing shared, the split is the independent tables' optimum
    /// ρ ∝ Δ/t; with tables fitted together, it does better than that on
    /// the workload's error, and any other nearby split does worse.
    #[test]
    fn the_split_minimises_the_workloads_error() {
        let (sizes, shapes) = lattice(|_| 1.0);
        let alone: Vec<Planned> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Planned {
                attributes: s.attributes.clone(),
                sensitivity: 1.0 + s.attributes.len() as f64,
                system: i,
                target: 8.0,
            })
            .collect();
        let even = vec![2.0 / alone.len() as f64; alone.len()];
        let split = optimal_split(&sizes, &alone, even.clone(), 50);
        let sum: f64 = alone.iter().map(|p| p.sensitivity).sum();
        for (r, p) in split.iter().zip(&alone) {
            assert!((r - 2.0 * p.sensitivity / sum).abs() < 1e-9, "{split:?}");
        }
        let shared: Vec<Planned> = alone
            .iter()
            .map(|p| Planned {
                system: 0,
                ..p.clone()
            })
            .collect();
        let naive: Vec<f64> = shared.iter().map(|p| 2.0 * p.sensitivity / sum).collect();
        let best = optimal_split(&sizes, &shared, naive.clone(), 300);
        assert!((best.iter().sum::<f64>() - 2.0).abs() < 1e-9);
        let e = |r: &[f64]| workload_error(&sizes, &shared, r);
        assert!(e(&best) < e(&naive), "{} against {}", e(&best), e(&naive));
        for (i, j) in [(0, 7), (3, 5), (7, 1)] {
            let mut moved = best.clone();
            let d = 0.05 * moved[i].min(moved[j]);
            moved[i] += d;
            moved[j] -= d;
            assert!(e(&moved) >= e(&best) * (1.0 - 1e-9), "moving {i} to {j}");
        }
    }

    #[test]
    fn a_single_table_states_its_own_noise() {
        let v = variance(&[5], &[1], |a| if a.is_empty() { 2.0 * 5.0 } else { 2.0 });
        assert!((v - 2.0).abs() < 1e-12);
        let all = variance(&[5], &[5], |a| if a.is_empty() { 2.0 * 5.0 } else { 2.0 });
        assert!((all - 10.0).abs() < 1e-12);
    }

    #[test]
    fn reconciled_cells_keep_their_bounds_and_still_add_up() {
        let (sizes, shapes) = lattice(|a| [1.0, 4.0, 9.0, 16.0][a.len()]);
        let sample_shapes: Vec<Shape> = shapes
            .iter()
            .map(|s| Shape {
                attributes: s.attributes.clone(),
                variance: 25.0 * s.variance,
            })
            .collect();
        // Sparse truth: most cells empty, as in a biobank.
        let donors_full: Vec<f64> = (0..24)
            .map(|i| if i % 5 == 0 { 3.0 } else { 0.0 })
            .collect();
        let samples_full: Vec<f64> = donors_full.iter().map(|d| 2.0 * d).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let normal = rand_distr::StandardNormal;
        let mut noisy = |full: &[f64], shapes: &[Shape]| -> Vec<Vec<f64>> {
            marginals(&sizes, full, shapes)
                .into_iter()
                .zip(shapes)
                .map(|(t, s)| {
                    t.iter()
                        .map(|v| v + s.variance.sqrt() * rng.sample::<f64, _>(normal))
                        .collect()
                })
                .collect()
        };
        let nd = noisy(&donors_full, &shapes);
        let ns = noisy(&samples_full, &sample_shapes);
        let measured: Vec<Pair> = nd
            .into_iter()
            .zip(ns)
            .map(|(donors, samples)| Pair {
                donors,
                samples,
                samples_per_donor: 5.0,
            })
            .collect();
        // Attribute 0 is donor-level: tables differing only in it form a group.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for rest in subsets(&[1, 2]) {
            groups.push(
                shapes
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.attributes
                            .iter()
                            .filter(|a| **a != 0)
                            .copied()
                            .collect::<Vec<_>>()
                            == rest
                    })
                    .map(|(i, _)| i)
                    .collect(),
            );
        }
        let r = reconcile(&sizes, &shapes, &sample_shapes, &measured, &groups);
        // The noise broke the bounds, so some cells moved.
        assert!(r.moved > 0);
        for (t, p) in measured.iter().enumerate() {
            for (d, s) in r.donors[t].iter().zip(&r.samples[t]) {
                assert!(*d >= 0.0 && d <= s && *s <= p.samples_per_donor * d + 1e-12);
                assert!(*d > 0.0 || *s == 0.0);
            }
        }
        // A table adds up to a coarser one but for what the bounds moved.
        let full = &r.samples[shapes.iter().position(|s| s.attributes.len() == 3).unwrap()];
        let slack = r.moved as f64 * r.largest_move;
        for (f, i) in r.samples.iter().zip(marginals(&sizes, full, &shapes)) {
            for (a, b) in f.iter().zip(&i) {
                assert!((a - b).abs() <= slack + 1e-9, "{a} vs {b}");
            }
        }
        // Without noise nothing moves, and the tables add up exactly.
        let exact: Vec<Pair> = marginals(&sizes, &donors_full, &shapes)
            .into_iter()
            .zip(marginals(&sizes, &samples_full, &shapes))
            .map(|(donors, samples)| Pair {
                donors,
                samples,
                samples_per_donor: 5.0,
            })
            .collect();
        let r0 = reconcile(&sizes, &shapes, &sample_shapes, &exact, &groups);
        assert_eq!(r0.moved, 0);
        // Donors add up over the donor-level attribute.
        let by = |attrs: &[usize]| shapes.iter().position(|s| s.attributes == attrs).unwrap();
        let (total, by_sex) = (r0.donors[by(&[])][0], &r0.donors[by(&[0])]);
        assert!((total - by_sex.iter().sum::<f64>()).abs() < 1e-9);
        // The fit of a well-filled total is not moved by the bounds.
        assert_eq!(r.samples[by(&[])][0], {
            let (fit, _) = least_squares(
                &sizes,
                &sample_shapes,
                &measured
                    .iter()
                    .map(|p| p.samples.clone())
                    .collect::<Vec<_>>(),
            );
            fit[by(&[])][0]
        });
    }
}
