//! The general accumulator: any plan's aggregates, sums and counts of
//! values included, with the current donor's rows gathered per cell and
//! bounded when the donor's rows end.

use super::{Mode, rank_hasher};
use crate::{Aggregate, Plan};

/// The answer so far, and the current donor's rows per cell. Cells are
/// indices into dense arrays, the answer's and the current donor's alike,
/// so that a row adds to its cell without a search.
pub(super) struct Sums<'p> {
    pub(super) plan: &'p Plan,
    pub(super) mode: Mode,
    /// The answer: per cell, one value per vector (cell-major).
    pub(super) out: Vec<i64>,
    /// Values per cell in `out`: the plan's aggregates, or two for the
    /// truth.
    pub(super) width: usize,
    pub(super) donor: Option<i64>,
    /// The current donor's cells, in the order first seen.
    pub(super) touched: Vec<u32>,
    /// Per cell, the current donor's rows in it (zero in cells it is not
    /// in).
    pub(super) rows: Vec<i64>,
    /// Per cell and aggregate, the current donor's running sum or count
    /// of values (cell-major; only when some aggregate reads values).
    pub(super) values: Vec<i64>,
    pub(super) rank: ahash::RandomState,
    pub(super) limit: usize,
    /// Whether an aggregate sums or counts a column's values (or only rows
    /// and donors).
    pub(super) reads_values: bool,
}

impl<'p> Sums<'p> {
    /// Room for `cells` cells (none when the pass does not use it).
    pub(super) fn new(plan: &'p Plan, cells: usize, mode: Mode) -> Self {
        let width = match mode {
            Mode::Bounded => plan.aggregates.len(),
            Mode::Truth | Mode::Cells => 2,
        };
        let reads_values = mode == Mode::Bounded
            && plan
                .aggregates
                .iter()
                .any(|a| matches!(a, Aggregate::Sum { .. } | Aggregate::Count { .. }));
        Self {
            plan,
            mode,
            out: vec![0; cells * width],
            width,
            donor: None,
            touched: Vec::new(),
            rows: vec![0; cells],
            values: if reads_values {
                vec![0; cells * width]
            } else {
                Vec::new()
            },
            rank: rank_hasher(plan.seed),
            limit: usize::try_from(plan.cells_per_donor()).unwrap_or(usize::MAX),
            reads_values,
        }
    }

    /// The next kept rows are `donor`'s: the one before is done, unless it
    /// is the same donor (whose rows went on in the batch before).
    pub(super) fn donor(&mut self, donor: i64) {
        if self.donor != Some(donor) {
            self.end_donor();
            self.donor = Some(donor);
        }
    }

    /// One kept row of the current donor in `cell`.
    #[inline]
    pub(super) fn add(&mut self, cell: u32, value: impl Fn(usize) -> Option<i64>) {
        let c = cell as usize;
        if self.rows[c] == 0 {
            self.touched.push(cell);
        }
        self.rows[c] += 1;
        if !self.reads_values {
            return;
        }
        let n = self.width;
        for (a, aggregate) in self.plan.aggregates.iter().enumerate() {
            let Some(v) = value(a) else { continue };
            self.values[c * n + a] += match aggregate {
                Aggregate::Sum { lo, hi, .. } => v.clamp(*lo, *hi),
                Aggregate::Count { .. } => 1,
                Aggregate::Samples | Aggregate::Donors => 0,
            };
        }
    }

    /// Adds the current donor's contribution. A donor in more than
    /// [`Plan::cells_per_donor`] cells keeps that many, chosen by ranking
    /// its cells on a hash keyed by the plan's seed: uniformly at random for
    /// each release, whatever the cells' names or order. In each kept cell
    /// it adds at most [`Aggregate::bounded`] of its rows.
    pub(super) fn end_donor(&mut self) {
        let Some(donor) = self.donor else { return };
        let n = self.width;
        if self.mode == Mode::Bounded && self.touched.len() > self.limit {
            let rank = &self.rank;
            self.touched
                .sort_unstable_by_key(|&c| rank.hash_one((donor, c as usize)));
        }
        let kept = match self.mode {
            Mode::Bounded => self.touched.len().min(self.limit),
            Mode::Truth | Mode::Cells => self.touched.len(),
        };
        for (i, &cell) in self.touched.iter().enumerate() {
            let c = cell as usize;
            let rows = std::mem::take(&mut self.rows[c]);
            if i < kept {
                let out = &mut self.out[c * n..(c + 1) * n];
                match self.mode {
                    Mode::Truth | Mode::Cells => {
                        out[0] += rows;
                        out[1] += 1;
                    }
                    Mode::Bounded if !self.reads_values => {
                        let s = self.plan.max_samples_per_donor;
                        for (o, aggregate) in out.iter_mut().zip(&self.plan.aggregates) {
                            *o += aggregate.bounded(rows, 0, s);
                        }
                    }
                    Mode::Bounded => {
                        let s = self.plan.max_samples_per_donor;
                        let values = &self.values[c * n..(c + 1) * n];
                        for ((o, aggregate), &v) in
                            out.iter_mut().zip(&self.plan.aggregates).zip(values)
                        {
                            *o += aggregate.bounded(rows, v, s);
                        }
                    }
                }
            }
            if self.reads_values {
                self.values[c * n..(c + 1) * n].fill(0);
            }
        }
        self.touched.clear();
    }

    /// One vector per aggregate (or the truth's two), each in cell order.
    pub(super) fn finish(mut self) -> Vec<Vec<i64>> {
        self.end_donor();
        (0..self.width)
            .map(|a| {
                self.out
                    .iter()
                    .skip(a)
                    .step_by(self.width)
                    .copied()
                    .collect()
            })
            .collect()
    }
}
