//! The donor-sorted surface as the pass reads it: which rows begin a
//! donor's run, and each run's donor key, in about 1.5 bits a row.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;

use crate::{Error, Result};

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
    pub(super) starts: Vec<u64>,
    /// Per word, the runs begun before it.
    pub(super) before: Vec<u32>,
    /// Per run, the donor's key.
    pub(super) keys: Vec<i64>,
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
    pub(super) fn run(&self, row: u32) -> u32 {
        let (w, bit) = ((row / 64) as usize, row % 64);
        let begun = self.starts[w + 1] & (u64::MAX >> (63 - bit));
        self.before[w] + begun.count_ones() - 1
    }

    /// The key of the donor of `row`.
    pub(super) fn key(&self, row: u32) -> i64 {
        self.keys[self.run(row) as usize]
    }

    /// Whether a run begins in rows `lo..=hi` (none if `lo` is `hi + 1`).
    /// Rows less than 64 apart are in two adjacent words, read as one
    /// 128-bit number.
    #[inline(always)]
    pub(super) fn begins(&self, lo: u32, hi: u32) -> bool {
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

    pub(super) fn begins_far(&self, lo: u32, hi: u32) -> bool {
        let (first, last) = ((lo / 64) as usize + 1, (hi / 64) as usize + 1);
        self.starts[first] >> (lo % 64) != 0
            || self.starts[first + 1..last].iter().any(|&w| w != 0)
            || self.starts[last] & (u64::MAX >> (63 - hi % 64)) != 0
    }
}

impl DonorBatch {
    /// Whether `row` begins a donor's run.
    pub(super) fn begins_run(&self, row: usize) -> bool {
        self.starts[row / 64 + 1] >> (row % 64) & 1 == 1
    }
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

pub(super) fn without_keys(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "donor_key")
        .collect();
    Ok(batch.project(&keep)?)
}

pub(super) fn donor_keys(batch: &RecordBatch) -> Result<&[i64]> {
    Ok(batch
        .column_by_name("donor_key")
        .ok_or_else(|| Error::Engine("the surface has no column donor_key".into()))?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| Error::Engine("donor keys are not 64-bit integers".into()))?
        .values())
}
