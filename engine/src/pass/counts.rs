//! The counting accumulator, for plans that count only samples and donors
//! (and for the truth): a donor's rows in each cell are counted as they
//! come, and only a donor in more cells than allowed is gone back over.

use super::columns::{Layout, OFF};
use super::donors::DonorBatch;
use super::{Mode, rank_hasher};
use crate::{Aggregate, Plan};

/// The pass of a plan that counts only samples and donors, and of the
/// truth. Each row adds to its cell as it is read: the sample if fewer than
/// the bound of its donor's rows in the cell came before it, the donor if
/// none did. No branch depends on the data except one rarely taken: a donor
/// in more cells than the plan allows has its extra cells, chosen as
/// [`Sums::end_donor`] chooses them, taken back when its rows end.
pub(super) struct Counts<'p> {
    pub(super) plan: &'p Plan,
    pub(super) batches: &'p [DonorBatch],
    pub(super) mode: Mode,
    /// At most this many of a donor's rows count in a cell.
    pub(super) max_rows: i64,
    /// At most this many cells count for a donor.
    pub(super) limit: usize,
    pub(super) samples: Vec<i64>,
    pub(super) donors: Vec<i64>,
    /// Per cell, the last donor with a row in it (by its number in the
    /// pass, from 1), and that donor's rows in it so far.
    pub(super) last: Vec<u64>,
    pub(super) rows_in: Vec<i64>,
    /// The current donor: its number, its first row (batch and row), the
    /// cells it is in so far, and the cell of each of its rows
    /// (`cells[..rows]`).
    pub(super) donor: u64,
    pub(super) first: (usize, u32),
    pub(super) distinct: usize,
    pub(super) cells: Vec<u32>,
    pub(super) rows: usize,
    /// In the current batch: the row after the last one counted, whether
    /// any was, and whether its first run is the current donor's, whose
    /// rows went on from the batch before.
    pub(super) next: u32,
    pub(super) counted: bool,
    pub(super) continued: bool,
    /// Whether the current donor's rows may go on into the next batch: no
    /// other donor's run began after them. And the last key of the batch
    /// before.
    pub(super) open: bool,
    pub(super) last_key: Option<i64>,
    pub(super) rank: ahash::RandomState,
    /// The plan's caps per class of cells (see [`crate::SampleCaps`]),
    /// when bounded.
    pub(super) caps: Option<Caps>,
    /// Counting cells per donor ([`Mode::Cells`]): per number of cells
    /// from 1 to the plan's `max_cells`, the donors in exactly that many
    /// (the last: in that many or more).
    pub(super) spread: Option<Vec<i64>>,
}

/// Caps per class: the class's stride and count of keys (none: one
/// class), each class's cap, what the donor being settled used, and its
/// cells with their rows (kept from donor to donor). And the stride and
/// count of keys of each dimension along which a donor keeps one value
/// ([`Plan::one_value`]).
pub(super) struct Caps {
    by: Option<(u32, u32)>,
    caps: Vec<i64>,
    used: Vec<i64>,
    cells: Vec<(u32, i64)>,
    one_value: Vec<(u32, u32)>,
}

impl<'p> Counts<'p> {
    /// The counting pass, if the plan only counts samples and donors.
    pub(super) fn for_plan(
        plan: &'p Plan,
        layout: &Layout,
        mode: Mode,
        batches: &'p [DonorBatch],
    ) -> Option<Self> {
        let counts_only = plan
            .aggregates
            .iter()
            .all(|a| matches!(a, Aggregate::Samples | Aggregate::Donors));
        if mode == Mode::Bounded && !counts_only {
            return None;
        }
        let (max_rows, limit) = match mode {
            Mode::Bounded => (
                plan.max_samples_per_donor,
                usize::try_from(plan.cells_per_donor()).unwrap_or(usize::MAX),
            ),
            Mode::Truth | Mode::Cells => (i64::MAX, usize::MAX),
        };
        Some(Self {
            plan,
            batches,
            mode,
            max_rows,
            limit,
            samples: vec![0; layout.cells],
            donors: vec![0; layout.cells],
            last: vec![0; layout.cells],
            rows_in: vec![0; layout.cells],
            donor: 0,
            first: (0, 0),
            distinct: 0,
            cells: Vec::new(),
            rows: 0,
            next: 0,
            counted: false,
            continued: false,
            open: false,
            last_key: None,
            rank: rank_hasher(plan.seed),
            // A donor's values along a one-value dimension are known only
            // once its rows end, so such a plan gathers rows as caps do
            // (with one class, uncapped, where it has no caps).
            caps: match (mode, &plan.sample_caps) {
                (Mode::Bounded, c) if c.is_some() || !plan.one_value.is_empty() => {
                    let stride = |d: usize| (layout.strides[d], plan.keys[d].len().max(1) as u32);
                    let caps = c
                        .as_ref()
                        .map_or_else(|| vec![i64::MAX], |c| c.caps.clone());
                    Some(Caps {
                        by: c.as_ref().and_then(|c| c.by).map(stride),
                        used: vec![0; caps.len()],
                        caps,
                        cells: Vec::new(),
                        one_value: plan.one_value.iter().map(|d| stride(*d)).collect(),
                    })
                }
                _ => None,
            },
            spread: (mode == Mode::Cells)
                .then(|| vec![0; usize::try_from(plan.max_cells.unwrap_or(1).max(1)).unwrap_or(1)]),
        })
    }

    /// A batch begins, of which at most `rows` rows will be counted.
    pub(super) fn start(&mut self, part: &DonorBatch, rows: usize) {
        self.continued = self.open && part.keys.first() == self.last_key.as_ref();
        // A run that goes on from the batch before begins no new donor.
        self.next = u32::from(self.continued);
        self.counted = false;
        if self.cells.len() < self.rows + rows {
            self.cells.resize(self.rows + rows, 0);
        }
    }

    /// Kept rows of batch `b`, in order, and their cells. The state the
    /// loop changes is held in locals, and written back after it.
    pub(super) fn add(&mut self, b: usize, part: &DonorBatch, rows: &[u32], cells: &[u32]) {
        if self.caps.is_some() {
            return self.add_capped(b, part, rows, cells);
        }
        let Self {
            batches,
            max_rows,
            limit,
            samples,
            donors,
            last,
            rows_in,
            cells: donor_cells,
            rank,
            spread,
            ..
        } = self;
        let (max_rows, limit) = (*max_rows, *limit);
        let (samples, donors, last, rows_in, donor_cells) = (
            samples.as_mut_slice(),
            donors.as_mut_slice(),
            last.as_mut_slice(),
            rows_in.as_mut_slice(),
            donor_cells.as_mut_slice(),
        );
        let (mut donor, mut first, mut distinct, mut len, mut next) =
            (self.donor, self.first, self.distinct, self.rows, self.next);
        let mut counted = false;
        for (&row, &cell) in rows.iter().zip(cells) {
            // A key outside the public value sets: the row is dropped.
            if cell == OFF {
                continue;
            }
            let new = part.begins(next, row);
            next = row + 1;
            counted = true;
            if new & (distinct > limit) {
                let key = batches[first.0].key(first.1);
                take_back(
                    &mut donor_cells[..len],
                    key,
                    rank,
                    limit,
                    max_rows,
                    samples,
                    donors,
                );
            }
            if new && let Some(spread) = spread.as_mut() {
                tally(spread, distinct);
            }
            donor += u64::from(new);
            first = if new { (b, row) } else { first };
            distinct = if new { 0 } else { distinct };
            let at = if new { 0 } else { len };
            donor_cells[at] = cell;
            len = at + 1;
            let c = cell as usize;
            let fresh = last[c] != donor;
            let before = if fresh { 0 } else { rows_in[c] };
            rows_in[c] = before + 1;
            last[c] = donor;
            samples[c] += i64::from(before < max_rows);
            donors[c] += i64::from(fresh);
            distinct += usize::from(fresh);
        }
        self.counted |= counted;
        (self.donor, self.first, self.distinct, self.rows, self.next) =
            (donor, first, distinct, len, next);
    }

    /// As [`Counts::add`], under the plan's caps per class of cells. Which
    /// of a donor's samples count must not depend on the order its rows
    /// come in (which other donors' rows may change), so a donor's rows
    /// are only gathered here, and counted when the donor ends
    /// ([`Counts::settle_capped`]).
    fn add_capped(&mut self, b: usize, part: &DonorBatch, rows: &[u32], cells: &[u32]) {
        let mut counted = false;
        for (&row, &cell) in rows.iter().zip(cells) {
            if cell == OFF {
                continue;
            }
            let new = part.begins(self.next, row);
            self.next = row + 1;
            counted = true;
            if new {
                if self.rows > 0 {
                    self.settle_capped();
                }
                self.donor += 1;
                self.first = (b, row);
                self.rows = 0;
            }
            self.cells[self.rows] = cell;
            self.rows += 1;
        }
        self.counted |= counted;
    }

    /// Counts the donor whose rows were gathered (`cells[..rows]`): along
    /// each one-value dimension, only its cells with the value the seed
    /// ranks first of those it has; then those cells in the seed's ranking
    /// (the one [`take_back`] uses), the first `limit` kept, each adding
    /// the donor once and its rows in the cell up to the bound and to what
    /// is left of the cell's class's cap.
    fn settle_capped(&mut self) {
        let key = self.batches[self.first.0].key(self.first.1);
        let rows = &mut self.cells[..self.rows];
        rows.sort_unstable();
        let caps = self.caps.as_mut().expect("a capped pass");
        let cells = &mut caps.cells;
        cells.clear();
        for &cell in rows.iter() {
            match cells.last_mut() {
                Some((c, n)) if *c == cell => *n += 1,
                _ => cells.push((cell, 1)),
            }
        }
        for &(stride, keys) in &caps.one_value {
            let value = |cell: u32| (cell / stride) % keys;
            let kept = cells
                .iter()
                .map(|&(c, _)| value(c))
                .min_by_key(|v| self.rank.hash_one((key, stride, *v)));
            if let Some(kept) = kept {
                cells.retain(|&(c, _)| value(c) == kept);
            }
        }
        // One cell needs no order.
        if cells.len() > 1 {
            cells.sort_unstable_by_key(|&(c, _)| self.rank.hash_one((key, c as usize)));
        }
        caps.used.iter_mut().for_each(|u| *u = 0);
        for &(cell, n) in cells.iter().take(self.limit) {
            let class = caps
                .by
                .map_or(0, |(stride, k)| ((cell / stride) % k) as usize);
            let take = n
                .min(self.max_rows)
                .min(caps.caps[class] - caps.used[class])
                .max(0);
            caps.used[class] += take;
            self.samples[cell as usize] += take;
            self.donors[cell as usize] += 1;
        }
        self.rows = 0;
    }

    /// The batch ends.
    pub(super) fn end(&mut self, part: &DonorBatch) {
        if part.num_rows() == 0 {
            return;
        }
        let last = part.num_rows() as u32 - 1;
        self.open = if self.counted {
            !part.begins(self.next, last)
        } else {
            self.continued && part.keys.len() == 1
        };
        self.last_key = part.keys.last().copied();
    }

    /// One vector per aggregate (or the truth's two), each in cell order.
    pub(super) fn finish(mut self) -> Vec<Vec<i64>> {
        if self.caps.is_some() {
            if self.rows > 0 {
                self.settle_capped();
            }
        } else if let Some(spread) = self.spread.as_mut() {
            tally(spread, self.distinct);
        } else if self.distinct > self.limit {
            let key = self.batches[self.first.0].key(self.first.1);
            take_back(
                &mut self.cells[..self.rows],
                key,
                &self.rank,
                self.limit,
                self.max_rows,
                &mut self.samples,
                &mut self.donors,
            );
        }
        match self.mode {
            Mode::Truth => vec![self.samples, self.donors],
            Mode::Cells => {
                // Donors in at least k cells: those in k or more.
                let mut at_least = self.spread.unwrap_or_default();
                for k in (1..at_least.len()).rev() {
                    at_least[k - 1] += at_least[k];
                }
                vec![at_least]
            }
            Mode::Bounded => self
                .plan
                .aggregates
                .iter()
                .map(|a| match a {
                    Aggregate::Donors => self.donors.clone(),
                    _ => self.samples.clone(),
                })
                .collect(),
        }
    }
}

/// A donor whose rows ended was in `cells` cells: one more donor with that
/// many (the last entry: that many or more). None before the first donor.
fn tally(spread: &mut [i64], cells: usize) {
    if cells > 0
        && let Some(last) = spread.len().checked_sub(1)
    {
        spread[(cells - 1).min(last)] += 1;
    }
}

/// A donor (`key`) is in more cells than allowed: keeps the first `limit`
/// of them by the seed's ranking and takes back what its other cells added
/// (`rows`: the cell of each of its rows).
pub(super) fn take_back(
    rows: &mut [u32],
    key: i64,
    rank: &ahash::RandomState,
    limit: usize,
    max_rows: i64,
    samples: &mut [i64],
    donors: &mut [i64],
) {
    rows.sort_unstable();
    let mut cells: Vec<(u32, i64)> = Vec::new();
    for &cell in rows.iter() {
        match cells.last_mut() {
            Some((c, n)) if *c == cell => *n += 1,
            _ => cells.push((cell, 1)),
        }
    }
    cells.sort_unstable_by_key(|&(c, _)| rank.hash_one((key, c as usize)));
    for &(cell, n) in &cells[limit.min(cells.len())..] {
        samples[cell as usize] -= n.min(max_rows);
        donors[cell as usize] -= 1;
    }
}
