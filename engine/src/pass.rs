//! One streaming pass over the donor-sorted surface: the rows the filter
//! keeps are gathered per donor into the cells of the plan (small integer
//! indices, from the dictionary codes), and when a donor's rows end its
//! contribution is bounded and added to the answer. Every aggregate of a
//! plan comes out of the same pass; nothing is hashed per row.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};

use super::filter::CompiledFilter;
use super::{Aggregate, Plan};
use crate::{Error, Result};

/// A cell's index along one dimension that no public key has: the row is
/// dropped.
const OFF: u32 = u32::MAX;

/// What the pass adds up for each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The plan's aggregates, each donor bounded as the privacy model says.
    Bounded,
    /// The true, unbounded `COUNT(*)` and `COUNT(DISTINCT donor)` of each
    /// cell, for evaluating accuracy; never released.
    Truth,
}

/// A surface batch as the pass reads it: instead of a 64-bit donor key per
/// row, which rows begin a donor's run (the rows of a donor are adjacent,
/// as the surface is sorted by donor), and each run's key. Whether a new
/// donor began between two rows is a look at a word or two of bits; a
/// row's run is the number of runs begun up to it, from the bits of its
/// word and a running count per word. About 1.5 bits a row, small enough
/// to stay in the processor's cache.
#[derive(Debug)]
pub struct DonorBatch {
    /// The surface's columns but `donor_key`.
    pub batch: RecordBatch,
    /// Bit `j` of word `w + 1`: row `64 w + j` begins a run (word 0 is
    /// none, so that a row's word always has one before it).
    starts: Vec<u64>,
    /// Per word, the runs begun before it.
    before: Vec<u32>,
    /// Per run, the donor's key.
    keys: Vec<i64>,
}

impl DonorBatch {
    pub fn new(batch: RecordBatch) -> Result<Self> {
        let donors = donor_keys(&batch)?;
        u32::try_from(donors.len())
            .map_err(|_| Error::Engine("a surface batch has too many rows".into()))?;
        let mut keys = Vec::new();
        let mut starts = vec![0u64; donors.len().div_ceil(64) + 1];
        for (i, &d) in donors.iter().enumerate() {
            if keys.last() != Some(&d) {
                keys.push(d);
                starts[i / 64 + 1] |= 1 << (i % 64);
            }
        }
        let before = starts[1..]
            .iter()
            .scan(0u32, |runs, w| {
                let here = *runs;
                *runs += w.count_ones();
                Some(here)
            })
            .collect();
        Ok(Self {
            batch: without_keys(&batch)?,
            starts,
            before,
            keys,
        })
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The run `row` is in.
    fn run(&self, row: u32) -> u32 {
        let (w, bit) = ((row / 64) as usize, row % 64);
        let begun = self.starts[w + 1] & (u64::MAX >> (63 - bit));
        self.before[w] + begun.count_ones() - 1
    }

    /// The key of the donor of `row`.
    fn key(&self, row: u32) -> i64 {
        self.keys[self.run(row) as usize]
    }

    /// Whether a run begins in rows `lo..=hi` (none if `lo` is `hi + 1`).
    /// Rows less than 64 apart are in two adjacent words, read as one
    /// 128-bit number.
    #[inline(always)]
    fn begins(&self, lo: u32, hi: u32) -> bool {
        let rows = hi + 1 - lo;
        if rows > 64 {
            return self.begins_far(lo, hi);
        }
        let w = (hi / 64) as usize;
        let two = (u128::from(self.starts[w + 1]) << 64) | u128::from(self.starts[w]);
        // Bit 0 of `two` is row 64 (w - 1).
        let bits = two.wrapping_shr(lo + 64 - 64 * w as u32) & ((1u128 << rows) - 1);
        bits != 0
    }

    fn begins_far(&self, lo: u32, hi: u32) -> bool {
        let (first, last) = ((lo / 64) as usize + 1, (hi / 64) as usize + 1);
        self.starts[first] >> (lo % 64) != 0
            || self.starts[first + 1..last].iter().any(|&w| w != 0)
            || self.starts[last] & (u64::MAX >> (63 - hi % 64)) != 0
    }
}

impl DonorBatch {
    /// Whether `row` begins a donor's run.
    fn begins_run(&self, row: usize) -> bool {
        self.starts[row / 64 + 1] >> (row % 64) & 1 == 1
    }
}

/// Per value of `types`, how many donors have at least `k` rows of it, for
/// `k = 1..=ceiling` (`[t][k - 1]`). Each donor's rows are read in surface
/// order and no more than `ceiling` of them in all, so that one donor moves
/// the table by at most `ceiling` entries, each by one: L1 `ceiling`, L2
/// √`ceiling`. Rows of other types count nowhere.
pub fn samples_per_donor(
    batches: &[DonorBatch],
    types: &[&str],
    ceiling: usize,
) -> Result<Vec<Vec<i64>>> {
    let mut out = vec![vec![0i64; ceiling]; types.len()];
    let mut counts = vec![0usize; types.len()];
    let flush = |counts: &mut [usize], out: &mut [Vec<i64>]| {
        for (t, c) in counts.iter_mut().enumerate() {
            for k in &mut out[t][..*c] {
                *k += 1;
            }
            *c = 0;
        }
    };
    for part in batches {
        let column = part
            .batch
            .column_by_name("sample_type")
            .ok_or_else(|| Error::Engine("the surface has no column sample_type".into()))?;
        let dictionary = column
            .as_any_dictionary_opt()
            .ok_or_else(|| Error::Engine("sample_type is not dictionary-encoded".into()))?;
        let values = dictionary
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Engine("sample_type's values are not text".into()))?;
        let index: Vec<Option<usize>> = (0..values.len())
            .map(|i| types.iter().position(|t| *t == values.value(i)))
            .collect();
        let keys = dictionary.normalized_keys();
        let mut read = 0;
        for (row, &key) in keys.iter().enumerate() {
            if part.begins_run(row) {
                flush(&mut counts, &mut out);
                read = 0;
            }
            if read < ceiling {
                read += 1;
                if let Some(t) = index[key] {
                    counts[t] += 1;
                }
            }
        }
        // Batches never split a donor.
        flush(&mut counts, &mut out);
    }
    Ok(out)
}

/// The schema the pass reads: the surface's but `donor_key`.
pub fn schema(surface: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
    let fields: Vec<_> = surface
        .fields()
        .iter()
        .filter(|f| f.name() != "donor_key")
        .cloned()
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
}

fn without_keys(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "donor_key")
        .collect();
    Ok(batch.project(&keep)?)
}

fn donor_keys(batch: &RecordBatch) -> Result<&[i64]> {
    Ok(batch
        .column_by_name("donor_key")
        .ok_or_else(|| Error::Engine("the surface has no column donor_key".into()))?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| Error::Engine("donor keys are not 64-bit integers".into()))?
        .values())
}

/// Runs the pass, to its end: it has no clock, since where a clock stopped
/// it would depend on which rows match (the runner decides beforehand,
/// from the plan's shape and the row count).
pub fn run(
    plan: &Plan,
    filter: &CompiledFilter,
    batches: &[DonorBatch],
    mode: Mode,
) -> Result<Vec<Vec<i64>>> {
    run_with(plan, filter, batches, mode, true)
}

/// The pass; `counting` lets a plan that only counts take [`Counts`]
/// (the tests compare it with [`Sums`]).
fn run_with(
    plan: &Plan,
    filter: &CompiledFilter,
    batches: &[DonorBatch],
    mode: Mode,
    counting: bool,
) -> Result<Vec<Vec<i64>>> {
    let layout = Layout::new(plan)?;
    let mut counts = Counts::for_plan(plan, &layout, mode, batches).filter(|_| counting);
    let mut sums = Sums::new(plan, if counts.is_some() { 0 } else { layout.cells }, mode);
    // Reused for every batch: the kept rows, and each one's cell.
    let (mut rows, mut cells) = (Vec::<u32>::new(), Vec::<u32>::new());
    let mut evaluation = filter.evaluation();
    for (b, part) in batches.iter().enumerate() {
        let batch = &part.batch;
        let kept = evaluation.keeps(batch)?;
        kept_rows(&kept, &mut rows);
        if rows.is_empty() {
            if let Some(counts) = &mut counts {
                counts.start(part, 0);
                counts.end(part);
            }
            continue;
        }
        let columns = Columns::of(plan, &layout, batch)?;
        cells.clear();
        cells.resize(rows.len(), 0);
        for d in &columns.dimensions {
            d.add_offsets(&rows, &mut cells);
        }
        if let Some(counts) = &mut counts {
            counts.start(part, rows.len());
            counts.add(b, part, &rows, &cells);
            counts.end(part);
            continue;
        }
        // The donor run of the rows just read.
        let mut run = u32::MAX;
        for (&row, &cell) in rows.iter().zip(&cells) {
            // A key outside the public value sets: the row is dropped.
            if cell == OFF {
                continue;
            }
            let row_run = part.run(row);
            if row_run != run {
                run = row_run;
                sums.donor(part.keys[run as usize]);
            }
            let row = row as usize;
            sums.add(cell, |a| columns.value(a, row));
        }
    }
    Ok(match counts {
        Some(counts) => counts.finish(),
        None => sums.finish(),
    })
}

/// Runs the pass on `cores` threads at once, each over a run of whole
/// batches (batches never split a donor, so each donor is still bounded
/// once, whole), and adds up what they found.
pub fn run_on(
    cores: usize,
    plan: &Plan,
    filter: &CompiledFilter,
    batches: &[DonorBatch],
    mode: Mode,
) -> Result<Vec<Vec<i64>>> {
    if cores <= 1 || batches.len() < 2 {
        return run(plan, filter, batches, mode);
    }
    // Runs of about equal rows.
    let total: usize = batches.iter().map(DonorBatch::num_rows).sum();
    let mut runs: Vec<&[DonorBatch]> = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, b) in batches.iter().enumerate() {
        rows += b.num_rows();
        if rows * cores >= total * (runs.len() + 1) && runs.len() + 1 < cores {
            runs.push(&batches[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&batches[start..]);
    let results: Vec<Result<Vec<Vec<i64>>>> = std::thread::scope(|scope| {
        let others: Vec<_> = runs[1..]
            .iter()
            .map(|run_of| scope.spawn(move || run(plan, filter, run_of, mode)))
            .collect();
        let mut all = vec![run(plan, filter, runs[0], mode)];
        all.extend(others.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Engine("a pass thread panicked".into())))
        }));
        all
    });
    let mut results = results.into_iter();
    let mut sum = results.next().expect("at least one run")?;
    for part in results {
        for (out, add) in sum.iter_mut().zip(part?) {
            for (o, a) in out.iter_mut().zip(add) {
                *o += a;
            }
        }
    }
    Ok(sum)
}

/// The positions of the set bits, a 64-bit word at a time.
fn kept_rows(kept: &arrow::buffer::BooleanBuffer, rows: &mut Vec<u32>) {
    rows.clear();
    rows.reserve(kept.count_set_bits());
    let chunks = kept.inner().bit_chunks(kept.offset(), kept.len());
    let mut base = 0u32;
    for mut word in chunks
        .iter()
        .chain(std::iter::once(chunks.remainder_bits()))
    {
        while word != 0 {
            rows.push(base + word.trailing_zeros());
            word &= word - 1;
        }
        base += 64;
    }
}

/// Where each dimension's public keys sit in a cell's index: the first
/// dimension most significant, as [`Plan::cells`] lists them.
struct Layout {
    strides: Vec<u32>,
    cells: usize,
}

impl Layout {
    fn new(plan: &Plan) -> Result<Self> {
        let mut strides = vec![1u32; plan.keys.len()];
        let mut cells: u64 = 1;
        for (d, keys) in plan.keys.iter().enumerate().rev() {
            strides[d] = u32::try_from(cells)
                .map_err(|_| Error::Engine("too many cells in one answer".into()))?;
            cells *= keys.len() as u64;
        }
        if cells >= u64::from(OFF) {
            return Err(Error::Engine("too many cells in one answer".into()));
        }
        Ok(Self {
            strides,
            cells: cells as usize,
        })
    }
}

/// One batch's columns as the pass reads them.
struct Columns<'a> {
    dimensions: Vec<Dimension<'a>>,
    /// Per aggregate, the column it sums or counts (64-bit), if any.
    values: Vec<Option<arrow::array::Int64Array>>,
}

/// A dimension's column, and the offset its every value adds to a cell's
/// index (`OFF` for a value without a public key).
struct Dimension<'a> {
    /// Dictionary keys of codes, or whole numbers.
    values: Ints<'a>,
    nulls: Option<&'a NullBuffer>,
    /// Per dictionary entry, or per number from `lowest`.
    offsets: Vec<u32>,
    lowest: i64,
    null_offset: u32,
}

/// Whole numbers as the surface stores them.
enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
}

impl<'a> Ints<'a> {
    /// Dictionary keys or numbers of an array, if it holds either.
    fn of(array: &'a dyn Array) -> Option<(Self, Option<&'a NullBuffer>)> {
        let keys = |d: &'a dyn Array| match d.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int8 => {
                Some(Ints::I8(d.as_dictionary::<Int8Type>().keys().values()))
            }
            DataType::Dictionary(k, _) if **k == DataType::Int16 => {
                Some(Ints::I16(d.as_dictionary::<Int16Type>().keys().values()))
            }
            DataType::Int16 => Some(Ints::I16(d.as_primitive::<Int16Type>().values())),
            DataType::Int32 => Some(Ints::I32(d.as_primitive::<Int32Type>().values())),
            _ => None,
        };
        keys(array).map(|ints| (ints, array.nulls()))
    }
}

impl<'a> Columns<'a> {
    fn of(plan: &Plan, layout: &Layout, batch: &'a RecordBatch) -> Result<Self> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Engine(format!("the surface has no column {name}")))
        };
        let mut dimensions = Vec::with_capacity(plan.dimensions.len());
        for ((name, keys), stride) in plan.dimensions.iter().zip(&plan.keys).zip(&layout.strides) {
            let offset_of = |key: Option<&str>| {
                keys.iter()
                    .position(|k| Some(k.as_str()) == key)
                    .map_or(OFF, |i| i as u32 * stride)
            };
            // A missing value reads as the key "none", where there is one.
            let null_offset = offset_of(Some("none"));
            let array = column(name)?;
            let (values, nulls) = Ints::of(array.as_ref()).ok_or_else(|| {
                Error::Engine(format!(
                    "the dimension {name} is stored as {}, not as codes or integers",
                    array.data_type()
                ))
            })?;
            let (offsets, lowest) = match array.as_any_dictionary_opt() {
                Some(dict) => {
                    let names = dict.values().as_string::<i32>();
                    let offsets = (0..names.len())
                        .map(|i| offset_of(names.is_valid(i).then(|| names.value(i))))
                        .collect();
                    (offsets, 0)
                }
                None => {
                    let parsed: Vec<i64> = keys.iter().filter_map(|k| k.parse().ok()).collect();
                    let lowest = parsed.iter().copied().min().unwrap_or(0);
                    let highest = parsed.iter().copied().max().unwrap_or(-1);
                    let offsets = (lowest..=highest)
                        .map(|v| offset_of(Some(&v.to_string())))
                        .collect();
                    (offsets, lowest)
                }
            };
            dimensions.push(Dimension {
                values,
                nulls,
                offsets,
                lowest,
                null_offset,
            });
        }
        let values = plan
            .aggregates
            .iter()
            .map(|a| match a {
                Aggregate::Sum { column: c, .. } | Aggregate::Count { column: c } => Ok(Some(
                    cast(column(c)?, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                )),
                Aggregate::Samples | Aggregate::Donors => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(Self { dimensions, values })
    }

    /// The value aggregate `a` reads from the row: none where the column is
    /// empty (it then adds nothing, as SQL's SUM and COUNT skip NULL).
    fn value(&self, a: usize, row: usize) -> Option<i64> {
        let column = self.values[a].as_ref()?;
        column.is_valid(row).then(|| column.value(row))
    }
}

impl Dimension<'_> {
    /// Adds each row's offset along this dimension to its cell; a value
    /// without a public key makes the cell `OFF` for good (it saturates).
    fn add_offsets(&self, rows: &[u32], cells: &mut [u32]) {
        match self.values {
            Ints::I8(v) => self.add(v, rows, cells),
            Ints::I16(v) => self.add(v, rows, cells),
            Ints::I32(v) => self.add(v, rows, cells),
        }
    }

    fn add<T: Copy + Into<i64>>(&self, values: &[T], rows: &[u32], cells: &mut [u32]) {
        for (&row, cell) in rows.iter().zip(cells.iter_mut()) {
            let row = row as usize;
            let offset = if self.nulls.is_some_and(|n| n.is_null(row)) {
                self.null_offset
            } else {
                usize::try_from(values[row].into() - self.lowest)
                    .ok()
                    .and_then(|i| self.offsets.get(i).copied())
                    .unwrap_or(OFF)
            };
            *cell = cell.saturating_add(offset);
        }
    }
}

/// The answer so far, and the current donor's rows per cell. Cells are
/// indices into dense arrays, the answer's and the current donor's alike,
/// so that a row adds to its cell without a search.
struct Sums<'p> {
    plan: &'p Plan,
    mode: Mode,
    /// The answer: per cell, one value per vector (cell-major).
    out: Vec<i64>,
    /// Values per cell in `out`: the plan's aggregates, or two for the
    /// truth.
    width: usize,
    donor: Option<i64>,
    /// The current donor's cells, in the order first seen.
    touched: Vec<u32>,
    /// Per cell, the current donor's rows in it (zero in cells it is not
    /// in).
    rows: Vec<i64>,
    /// Per cell and aggregate, the current donor's running sum or count
    /// of values (cell-major; only when some aggregate reads values).
    values: Vec<i64>,
    rank: ahash::RandomState,
    limit: usize,
    /// Whether an aggregate sums or counts a column's values (or only rows
    /// and donors).
    reads_values: bool,
}

impl<'p> Sums<'p> {
    /// Room for `cells` cells (none when the pass does not use it).
    fn new(plan: &'p Plan, cells: usize, mode: Mode) -> Self {
        let width = match mode {
            Mode::Bounded => plan.aggregates.len(),
            Mode::Truth => 2,
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
    fn donor(&mut self, donor: i64) {
        if self.donor != Some(donor) {
            self.end_donor();
            self.donor = Some(donor);
        }
    }

    /// One kept row of the current donor in `cell`.
    #[inline]
    fn add(&mut self, cell: u32, value: impl Fn(usize) -> Option<i64>) {
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
    fn end_donor(&mut self) {
        let Some(donor) = self.donor else { return };
        let n = self.width;
        if self.mode == Mode::Bounded && self.touched.len() > self.limit {
            let rank = &self.rank;
            self.touched
                .sort_unstable_by_key(|&c| rank.hash_one((donor, c as usize)));
        }
        let kept = match self.mode {
            Mode::Bounded => self.touched.len().min(self.limit),
            Mode::Truth => self.touched.len(),
        };
        for (i, &cell) in self.touched.iter().enumerate() {
            let c = cell as usize;
            let rows = std::mem::take(&mut self.rows[c]);
            if i < kept {
                let out = &mut self.out[c * n..(c + 1) * n];
                match self.mode {
                    Mode::Truth => {
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
    fn finish(mut self) -> Vec<Vec<i64>> {
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

/// The pass of a plan that counts only samples and donors, and of the
/// truth. Each row adds to its cell as it is read: the sample if fewer than
/// the bound of its donor's rows in the cell came before it, the donor if
/// none did. No branch depends on the data except one rarely taken: a donor
/// in more cells than the plan allows has its extra cells, chosen as
/// [`Sums::end_donor`] chooses them, taken back when its rows end.
struct Counts<'p> {
    plan: &'p Plan,
    batches: &'p [DonorBatch],
    mode: Mode,
    /// At most this many of a donor's rows count in a cell.
    max_rows: i64,
    /// At most this many cells count for a donor.
    limit: usize,
    samples: Vec<i64>,
    donors: Vec<i64>,
    /// Per cell, the last donor with a row in it (by its number in the
    /// pass, from 1), and that donor's rows in it so far.
    last: Vec<u64>,
    rows_in: Vec<i64>,
    /// The current donor: its number, its first row (batch and row), the
    /// cells it is in so far, and the cell of each of its rows
    /// (`cells[..rows]`).
    donor: u64,
    first: (usize, u32),
    distinct: usize,
    cells: Vec<u32>,
    rows: usize,
    /// In the current batch: the row after the last one counted, whether
    /// any was, and whether its first run is the current donor's, whose
    /// rows went on from the batch before.
    next: u32,
    counted: bool,
    continued: bool,
    /// Whether the current donor's rows may go on into the next batch: no
    /// other donor's run began after them. And the last key of the batch
    /// before.
    open: bool,
    last_key: Option<i64>,
    rank: ahash::RandomState,
}

impl<'p> Counts<'p> {
    /// The counting pass, if the plan only counts samples and donors.
    fn for_plan(
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
            Mode::Truth => (i64::MAX, usize::MAX),
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
        })
    }

    /// A batch begins, of which at most `rows` rows will be counted.
    fn start(&mut self, part: &DonorBatch, rows: usize) {
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
    fn add(&mut self, b: usize, part: &DonorBatch, rows: &[u32], cells: &[u32]) {
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

    /// The batch ends.
    fn end(&mut self, part: &DonorBatch) {
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
    fn finish(mut self) -> Vec<Vec<i64>> {
        if self.distinct > self.limit {
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

/// A donor (`key`) is in more cells than allowed: keeps the first `limit`
/// of them by the seed's ranking and takes back what its other cells added
/// (`rows`: the cell of each of its rows).
fn take_back(
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

/// The keyed hash that ranks a donor's cells: a function of the plan's seed
/// alone.
fn rank_hasher(seed: u64) -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        seed,
        seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
        seed.rotate_left(31) ^ 0xbf58_476d_1ce4_e5b9,
        seed.rotate_left(47) ^ 0x94d0_49bb_1331_11eb,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringDictionaryBuilder};
    use arrow::datatypes::{Field, Schema};
    use bonebank_schemas::{Filter, Value};

    use super::*;
    use crate::Spread;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new(
                "sample_type",
                DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new("donor_key", DataType::Int64, false),
        ]))
    }

    /// `donors` donors in donor order, each with `rows` rows in every one of
    /// `keys`, in batches of at most `batch_rows` rows.
    fn everyone_everywhere(
        keys: &[String],
        donors: i64,
        rows: i64,
        batch_rows: usize,
    ) -> Vec<DonorBatch> {
        let mut all = Vec::new();
        for d in 0..donors {
            for k in keys {
                for _ in 0..rows {
                    all.push((k.clone(), d * 7919));
                }
            }
        }
        all.chunks(batch_rows).map(donor_batch).collect()
    }

    /// A batch of (sample type, donor key) rows.
    fn donor_batch(rows: &[(String, i64)]) -> DonorBatch {
        let mut names = StringDictionaryBuilder::<Int16Type>::new();
        for (k, _) in rows {
            names.append_value(k);
        }
        let who = Int64Array::from_iter_values(rows.iter().map(|(_, d)| *d));
        let batch =
            RecordBatch::try_new(schema(), vec![Arc::new(names.finish()), Arc::new(who)]).unwrap();
        DonorBatch::new(batch).unwrap()
    }

    fn plan(keys: Vec<String>, bound: i64, seed: u64) -> Plan {
        Plan {
            dimensions: vec!["sample_type".into()],
            keys: vec![keys],
            filter: Filter::True,
            aggregates: vec![Aggregate::Donors, Aggregate::Samples],
            max_samples_per_donor: 2,
            spread: vec![Spread::AtMost(bound)],
            seed,
        }
    }

    fn keys() -> Vec<String> {
        ('a'..='j').map(String::from).collect()
    }

    /// The table the sample bounds are measured from: per type, donors with
    /// at least k rows of it, each donor read to the ceiling and no further.
    #[test]
    fn samples_per_donor_counts_donors_with_at_least_k_of_each_type() {
        let row = |t: &str, d: i64| (t.to_owned(), d);
        let mut rows = Vec::new();
        // Donor 1: three of a, one of b. Donor 2: one of a. Donor 3: six
        // of b, of which the ceiling of 4 reads four.
        rows.extend([row("a", 1), row("a", 1), row("b", 1), row("a", 1)]);
        rows.push(row("a", 2));
        rows.extend((0..6).map(|_| row("b", 3)));
        // Donor 4 in a batch of its own: a type not asked about.
        let batches = vec![donor_batch(&rows), donor_batch(&[row("z", 4)])];
        let table = samples_per_donor(&batches, &["a", "b", "c"], 4).unwrap();
        assert_eq!(
            table[0],
            vec![2, 1, 1, 0],
            "a: donors 1 and 2, then donor 1"
        );
        assert_eq!(
            table[1],
            vec![2, 1, 1, 1],
            "b: donors 1 and 3, then donor 3 to 4"
        );
        assert_eq!(table[2], vec![0, 0, 0, 0]);
        // One donor moves the table by at most the ceiling, one per entry.
        let without_3 = vec![donor_batch(&rows[..5]), donor_batch(&[row("z", 4)])];
        let less = samples_per_donor(&without_3, &["a", "b", "c"], 4).unwrap();
        let moved: i64 = table
            .iter()
            .flatten()
            .zip(less.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert_eq!(moved, 4);
    }

    fn bounded(plan: &Plan, batches: &[DonorBatch]) -> Vec<Vec<i64>> {
        let filter = CompiledFilter::new(&plan.filter, &schema()).unwrap();
        run(plan, &filter, batches, Mode::Bounded).unwrap()
    }

    #[test]
    fn donors_over_the_bound_keep_cells_chosen_without_regard_to_key_names() {
        // 1000 donors in all 10 cells, 3 kept each: every cell expects 300
        // donors (a sum of 1000 draws with p = 0.3, standard deviation 14.5).
        // Keeping the first three keys in any fixed order would give 1000,
        // 1000, 1000 and seven zeros.
        let batches = everyone_everywhere(&keys(), 1000, 3, 4096);
        for seed in [1, 2, 3] {
            let values = bounded(&plan(keys(), 3, seed), &batches);
            let (donors, samples) = (&values[0], &values[1]);
            assert_eq!(donors.iter().sum::<i64>(), 3000, "3 cells per donor");
            assert_eq!(
                samples.iter().sum::<i64>(),
                6000,
                "2 rows per donor and cell"
            );
            for (cell, &count) in donors.iter().enumerate() {
                assert!(
                    (count - 300).abs() < 73,
                    "seed {seed}: cell {cell} has {count}"
                );
            }
        }
        // Keys renamed in reverse order: the counts still spread evenly.
        let reversed: Vec<String> = keys().into_iter().rev().collect();
        let batches = everyone_everywhere(&reversed, 1000, 1, 4096);
        let values = bounded(&plan(reversed, 3, 9), &batches);
        assert!(
            values[0].iter().all(|&c| (c - 300).abs() < 73),
            "{:?}",
            values[0]
        );
    }

    #[test]
    fn the_choice_is_fixed_by_the_seed_and_changes_with_it() {
        let batches = everyone_everywhere(&keys(), 200, 1, 4096);
        let run = |seed| bounded(&plan(keys(), 2, seed), &batches);
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn a_donor_split_across_batches_is_one_donor() {
        // Batches of 7 rows cut through donors' 30 rows (10 cells, 3 rows each).
        let small = everyone_everywhere(&keys(), 40, 3, 7);
        let whole = everyone_everywhere(&keys(), 40, 3, 100_000);
        let p = plan(keys(), 4, 11);
        assert_eq!(bounded(&p, &small), bounded(&p, &whole));
        assert_eq!(bounded(&p, &small)[0].iter().sum::<i64>(), 40 * 4);
    }

    #[test]
    fn donors_within_the_bound_keep_every_cell() {
        let batches = everyone_everywhere(&keys(), 50, 9, 4096);
        let values = bounded(&plan(keys(), 10, 1), &batches);
        assert_eq!(values[0], vec![50; 10]);
        assert_eq!(
            values[1],
            vec![100; 10],
            "9 rows count as max_samples_per_donor 2"
        );
    }

    #[test]
    fn a_pass_on_two_cores_finds_what_one_finds() {
        // Batches cut at donors (30 rows each: 10 cells of 3 rows).
        let batches = everyone_everywhere(&keys(), 60, 3, 30);
        let p = plan(keys(), 4, 11);
        let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
        for mode in [Mode::Bounded, Mode::Truth] {
            let one = run(&p, &filter, &batches, mode).unwrap();
            for cores in [2, 3, 7] {
                assert_eq!(
                    run_on(cores, &p, &filter, &batches, mode).unwrap(),
                    one,
                    "{cores} cores"
                );
            }
        }
    }

    /// Random donors with random rows in random cells (some outside the
    /// public keys), cut into batches at random rows.
    fn random_surface(seed: u64) -> (Vec<String>, Vec<DonorBatch>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let names: Vec<String> = ('a'..='n').map(String::from).collect();
        let mut all = Vec::new();
        for d in 0..300 {
            for _ in 0..rng.random_range(0..12) {
                all.push((names[rng.random_range(0..names.len())].clone(), d * 31));
            }
        }
        let mut batches = Vec::new();
        let mut rest = all.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.random_range(1..200).min(rest.len()));
            batches.push(donor_batch(chunk));
            rest = tail;
        }
        // Public keys: the first ten names; the other four are dropped.
        (names[..10].to_vec(), batches)
    }

    #[test]
    fn the_counting_pass_finds_what_the_general_pass_finds() {
        for seed in 0..20 {
            let (keys, batches) = random_surface(seed);
            for bound in [1, 2, 3, 10] {
                let mut p = plan(keys.clone(), bound, seed * 7 + bound as u64);
                p.max_samples_per_donor = 1 + (seed % 3) as i64;
                if seed % 2 == 1 {
                    p.filter = Filter::In {
                        column: "sample_type".into(),
                        values: ["a", "c", "d", "e", "m"]
                            .map(|k| Value::Text(k.into()))
                            .to_vec(),
                    };
                }
                let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
                for mode in [Mode::Bounded, Mode::Truth] {
                    let counting = run_with(&p, &filter, &batches, mode, true).unwrap();
                    let general = run_with(&p, &filter, &batches, mode, false).unwrap();
                    assert_eq!(counting, general, "seed {seed}, bound {bound}, {mode:?}");
                }
                // The bound bound: some donor was in more cells than allowed.
                if bound == 1 {
                    let truth = run_with(&p, &filter, &batches, Mode::Truth, true).unwrap();
                    let bounded = run_with(&p, &filter, &batches, Mode::Bounded, true).unwrap();
                    assert!(bounded[0].iter().sum::<i64>() < truth[1].iter().sum::<i64>());
                }
            }
        }
    }

    #[test]
    fn each_row_is_read_as_its_donor_s_and_new_donors_are_seen() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Donors of 1 to 150 rows: runs within a word, across words, and
        // words no run begins in.
        for rows in [1, 63, 64, 65, 130, 1_000] {
            let mut donors = Vec::new();
            let mut d = -500i64;
            while donors.len() < rows {
                d += rng.random_range(1..1_000);
                let n = rng.random_range(1..150).min(rows - donors.len());
                donors.extend(std::iter::repeat_n(d, n));
            }
            let rows_of: Vec<(String, i64)> = donors.iter().map(|&d| ("a".into(), d)).collect();
            let part = donor_batch(&rows_of);
            assert!(part.batch.column_by_name("donor_key").is_none());
            for (row, &donor) in donors.iter().enumerate() {
                assert_eq!(part.key(row as u32), donor, "row {row}");
            }
            let begins_at = |r: usize| r == 0 || donors[r] != donors[r - 1];
            for _ in 0..2_000 {
                let lo = rng.random_range(0..=rows);
                let hi = rng.random_range(lo.max(1) - 1..rows);
                let expected = (lo..=hi).any(begins_at);
                assert_eq!(part.begins(lo as u32, hi as u32), expected, "{lo}..={hi}");
            }
        }
    }

    #[test]
    fn kept_rows_are_the_set_bits_in_order() {
        for len in [0, 1, 63, 64, 65, 200, 4097] {
            let bits: Vec<bool> = (0..len).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
            let buffer = arrow::buffer::BooleanBuffer::from(bits.clone());
            // And a slice that does not start on a byte.
            for (offset, view) in [
                (0, buffer.clone()),
                (3.min(len), buffer.slice(3.min(len), len - 3.min(len))),
            ] {
                let mut rows = Vec::new();
                kept_rows(&view, &mut rows);
                let expected: Vec<u32> = (offset..len)
                    .filter(|&i| bits[i])
                    .map(|i| (i - offset) as u32)
                    .collect();
                assert_eq!(rows, expected, "len {len}, offset {offset}");
            }
        }
    }

    #[test]
    fn the_truth_is_unbounded() {
        let batches = everyone_everywhere(&keys(), 50, 9, 4096);
        let filter = CompiledFilter::new(&Filter::True, &schema()).unwrap();
        let truth = run(&plan(keys(), 2, 1), &filter, &batches, Mode::Truth).unwrap();
        assert_eq!(truth[0], vec![450; 10], "every row");
        assert_eq!(truth[1], vec![50; 10], "every donor in every cell");
    }

    #[test]
    fn rows_outside_the_filter_or_the_public_keys_add_nothing() {
        let batches = everyone_everywhere(&keys(), 20, 1, 4096);
        let mut p = plan(keys()[..4].to_vec(), 10, 1);
        p.filter = Filter::In {
            column: "sample_type".into(),
            values: vec![Value::Text("b".into()), Value::Text("e".into())],
        };
        assert_eq!(bounded(&p, &batches)[0], vec![0, 20, 0, 0]);
    }

    /// The estimate a question is turned away by depends on the plan's
    /// shape and the row count only: not on the values the filter names.
    #[test]
    fn a_plans_estimate_is_its_shape_times_the_rows() {
        let mut p = plan(keys()[..2].to_vec(), 2, 1);
        let base = p.steps_per_row();
        p.filter = Filter::In {
            column: "sample_type".into(),
            values: vec![Value::Text("a".into())],
        };
        let one = p.steps_per_row();
        assert_eq!(one, base + 1);
        let nobody = Filter::In {
            column: "sample_type".into(),
            values: vec![Value::Text("nobody has this".into())],
        };
        let same_shape = Plan {
            filter: nobody,
            ..p.clone()
        };
        assert_eq!(
            same_shape.estimated_ms(1_000_000),
            p.estimated_ms(1_000_000)
        );
        p.filter = Filter::And(vec![
            p.filter.clone(),
            Filter::Not(Box::new(p.filter.clone())),
        ]);
        assert_eq!(p.steps_per_row(), base + 2);
        assert_eq!(p.estimated_ms(2_000), 2.0 * p.estimated_ms(1_000));
    }
}
