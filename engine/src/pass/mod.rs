//! One streaming pass over the donor-sorted surface: the rows the filter
//! keeps are gathered per donor into the cells of the plan (small integer
//! indices, from the dictionary codes), and when a donor's rows end its
//! contribution is bounded and added to the answer. Every aggregate of a
//! plan comes out of the same pass; nothing is hashed per row.

mod columns;
mod counts;
mod donors;
mod parallel;
mod sums;

use arrow::array::{Array, AsArray};

use columns::{Columns, Layout, OFF};
use counts::Counts;
pub use donors::{DonorBatch, schema};
pub use parallel::run_on;
use sums::Sums;

use crate::filter::CompiledFilter;
use crate::{Error, Plan, Result};

/// What the pass adds up for each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The plan's aggregates, each donor bounded as the privacy model says.
    Bounded,
    /// The true, unbounded `COUNT(*)` and `COUNT(DISTINCT donor)` of each
    /// cell, for evaluating accuracy; never released.
    Truth,
    /// How many cells of the plan each donor is in, unbounded: one vector,
    /// whose `k - 1`th entry is the donors in at least `k` cells, for
    /// `k = 1..=` the plan's `max_cells`. One donor adds one to at most
    /// `max_cells` entries. For the catalogue's cell bounds; never released
    /// as it is. Only for plans that count samples and donors.
    Cells,
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
    if mode == Mode::Cells && counts.is_none() {
        return Err(Error::Engine(
            "cells per donor are counted for plans that only count".into(),
        ));
    }
    if plan.sample_caps.is_some() && mode == Mode::Bounded && counts.is_none() {
        return Err(Error::Engine(
            "caps on a donor's samples need a plan that only counts".into(),
        ));
    }
    if !plan.one_value.is_empty() && mode == Mode::Bounded && counts.is_none() {
        return Err(Error::Engine(
            "one value per donor along a dimension needs a plan that only counts".into(),
        ));
    }
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

/// The keyed hash that ranks a donor's cells: a function of the plan's seed
/// alone.
pub(super) fn rank_hasher(seed: u64) -> ahash::RandomState {
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

    use arrow::array::{Int64Array, RecordBatch, StringDictionaryBuilder};
    use arrow::datatypes::{DataType, Field, Int16Type, Schema};
    use bonebank_schemas::{Filter, Value};

    use super::*;
    use crate::{Aggregate, Spread};

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
            max_cells: None,
            seed,
            sample_caps: None,
            one_value: Vec::new(),
        }
    }

    /// Caps per class of cells: a donor's rows of each class count, in all
    /// its cells together, up to the class's cap and no more; the caps
    /// bound what one donor moves the samples vector by.
    #[test]
    fn caps_count_a_donors_first_samples_of_each_class_in_all_its_cells() {
        let row = |t: &str, d: i64| (t.to_owned(), d);
        // Donor 1: five of a, three of b; donor 2: one of a.
        let mut rows: Vec<(String, i64)> = (0..5).map(|_| row("a", 1)).collect();
        rows.extend((0..3).map(|_| row("b", 1)));
        let batches = vec![donor_batch(&rows), donor_batch(&[row("a", 2)])];
        let abc: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut p = plan(abc.clone(), 3, 1);
        p.max_samples_per_donor = 10;
        // By sample type: a at most 3, b at most 1.
        p.sample_caps = Some(crate::SampleCaps {
            by: Some(0),
            caps: vec![3, 1, 1],
        });
        let v = bounded(&p, &batches);
        assert_eq!(v[0], vec![2, 1, 0], "donors are not capped");
        assert_eq!(
            v[1],
            vec![4, 1, 0],
            "donor 1: 3 of a and 1 of b; donor 2: 1 of a"
        );
        // Donor 1 alone moves the samples by (3, 1, 0): within √(9 + 1 + 1).
        let (l2, l1) = p.sample_caps.as_ref().unwrap().sensitivity();
        assert!(l2 >= 10f64.sqrt() && l2 <= 11f64.sqrt() + 1e-9, "{l2}");
        assert_eq!(l1, 5);
        // One class for all cells: 4 of donor 1's rows count, filling its
        // cells in the seed's order (a first: 4 of a; b first: 3 of b, 1 of a).
        p.sample_caps = Some(crate::SampleCaps {
            by: None,
            caps: vec![4],
        });
        let v = bounded(&p, &batches);
        assert!(v[1] == [5, 0, 0] || v[1] == [2, 3, 0], "{:?}", v[1]);
        assert_eq!(p.sample_caps.as_ref().unwrap().sensitivity(), (4.0, 4));
        // The truth counts everything.
        let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
        let truth = run(&p, &filter, &batches, Mode::Truth).unwrap();
        assert_eq!(truth[0], vec![6, 3, 0]);
    }

    /// A donor in more cells than it may be keeps the seed's cells, and
    /// what they count under the caps; which rows count does not depend on
    /// the order of the donor's rows (which other donors' rows may change).
    #[test]
    fn caps_hold_when_a_donor_gives_back_cells() {
        // 50 donors in all 10 cells, 3 rows each; one class capped at 4,
        // and 2 cells kept per donor.
        let batches = everyone_everywhere(&keys(), 50, 3, 7);
        let mut p = plan(keys(), 10, 3);
        p.max_samples_per_donor = 3;
        p.max_cells = Some(2);
        p.sample_caps = Some(crate::SampleCaps {
            by: None,
            caps: vec![4],
        });
        let v = bounded(&p, &batches);
        assert_eq!(v[0].iter().sum::<i64>(), 100, "two cells per donor");
        // Each donor's two cells hold 3 + 3 rows, of which 4 count.
        assert_eq!(v[1].iter().sum::<i64>(), 50 * 4);
        // The donors' rows in the opposite order: the same counts.
        let reversed: Vec<String> = keys().into_iter().rev().collect();
        let backwards = everyone_everywhere(&reversed, 50, 3, 7);
        assert_eq!(bounded(&p, &backwards), v);
        // The same in one batch as across batches of 7 rows.
        let whole = everyone_everywhere(&keys(), 50, 3, 100_000);
        assert_eq!(bounded(&p, &whole), v);
        // The general pass refuses caps rather than ignore them.
        let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
        assert!(run_with(&p, &filter, &batches, Mode::Bounded, false).is_err());
    }

    fn keys() -> Vec<String> {
        ('a'..='j').map(String::from).collect()
    }

    /// The table the catalogue's cell bounds are read from: donors in at
    /// least k cells, unbounded, whichever batches and threads a donor's
    /// rows fall in; one donor moves it by at most `max_cells` entries.
    #[test]
    fn cells_per_donor_counts_donors_in_at_least_k_cells() {
        let row = |t: &str, d: i64| (t.to_owned(), d);
        let mut rows = Vec::new();
        // Donor 1 in a, b, c (a twice); donor 2 in a; donor 3 in all ten
        // keys; donor 4 in b and d.
        rows.extend([row("a", 1), row("b", 1), row("a", 1), row("c", 1)]);
        rows.push(row("a", 2));
        rows.extend(keys().iter().map(|k| (k.clone(), 3)));
        rows.extend([row("d", 4), row("b", 4)]);
        let mut p = plan(keys(), 2, 1);
        p.max_cells = Some(4);
        let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
        // Whole, and in batches of three rows, which split donors 1 and 3.
        for batch_rows in [rows.len(), 3] {
            let batches: Vec<DonorBatch> = rows.chunks(batch_rows).map(donor_batch).collect();
            for cores in [1, 2] {
                let v = parallel::run_on(cores, &p, &filter, &batches, Mode::Cells).unwrap();
                assert_eq!(
                    v,
                    vec![vec![4, 3, 2, 1]],
                    "batches of {batch_rows}, {cores} threads: donors in 1+, 2+, 3+, 4+ cells"
                );
            }
        }
        // Without donor 3 (in ten cells) the table moves by four entries.
        let fewer: Vec<(String, i64)> = rows.iter().filter(|r| r.1 != 3).cloned().collect();
        let v = run(&p, &filter, &[donor_batch(&fewer)], Mode::Cells).unwrap();
        assert_eq!(v, vec![vec![3, 2, 1, 0]]);
        // The bound the plan states does not cut what is counted.
        p.spread = vec![Spread::AtMost(1)];
        let v = run(&p, &filter, &[donor_batch(&rows)], Mode::Cells).unwrap();
        assert_eq!(v, vec![vec![4, 3, 2, 1]]);
    }

    /// A batch of (age band, sample type, donor key) rows.
    fn aged_batch(rows: &[(&str, &str, i64)]) -> (DonorBatch, Arc<Schema>) {
        let text = || DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("age_band", text(), false),
            Field::new("sample_type", text(), false),
            Field::new("donor_key", DataType::Int64, false),
        ]));
        let (mut ages, mut types) = (
            StringDictionaryBuilder::<Int16Type>::new(),
            StringDictionaryBuilder::<Int16Type>::new(),
        );
        for (a, t, _) in rows {
            ages.append_value(a);
            types.append_value(t);
        }
        let who = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(ages.finish()),
                Arc::new(types.finish()),
                Arc::new(who),
            ],
        )
        .unwrap();
        (DonorBatch::new(batch).unwrap(), schema)
    }

    /// Along a one-value dimension a donor counts in one of its values
    /// only, drawn by the seed, with all its cells (and rows) of that
    /// value and none of the others; the other dimensions are not cut. So
    /// donor counts add up over that dimension's values.
    #[test]
    fn a_one_value_dimension_keeps_one_value_of_each_donor() {
        // Donor 1: stem cells twice and serum in the 50s, stem cells in the
        // 60s. Donor 2: stem cells in the 60s. Donor 3: serum in the 50s.
        let (batch, schema) = aged_batch(&[
            ("50-59", "stem", 1),
            ("60-69", "stem", 1),
            ("50-59", "serum", 1),
            ("50-59", "stem", 1),
            ("60-69", "stem", 2),
            ("50-59", "serum", 3),
        ]);
        let bands = vec!["50-59".to_owned(), "60-69".to_owned()];
        let types = vec!["serum".to_owned(), "stem".to_owned()];
        let mut p = Plan {
            dimensions: vec!["age_band".into(), "sample_type".into()],
            keys: vec![bands, types],
            filter: Filter::True,
            aggregates: vec![Aggregate::Donors, Aggregate::Samples],
            max_samples_per_donor: 10,
            spread: vec![Spread::AtMost(1), Spread::AtMost(2)],
            max_cells: None,
            seed: 0,
            sample_caps: None,
            one_value: vec![0],
        };
        let filter = CompiledFilter::new(&p.filter, &schema).unwrap();
        let batches = [batch];
        // Cells: (50s, serum), (50s, stem), (60s, serum), (60s, stem).
        let in_the_50s = vec![vec![2, 1, 0, 1], vec![2, 2, 0, 1]];
        let in_the_60s = vec![vec![1, 0, 0, 2], vec![1, 0, 0, 2]];
        let mut seen = [0, 0];
        for seed in 1..=64 {
            p.seed = seed;
            let v = run(&p, &filter, &batches, Mode::Bounded).unwrap();
            // Each donor in one age band: stem-cell donors by band add up
            // to the two who gave stem cells.
            assert_eq!(v[0][1] + v[0][3], 2, "seed {seed}: {v:?}");
            if v == in_the_50s {
                seen[0] += 1;
            } else {
                assert_eq!(v, in_the_60s, "seed {seed}");
                seen[1] += 1;
            }
            assert_eq!(run(&p, &filter, &batches, Mode::Bounded).unwrap(), v);
        }
        // The draw is the seed's: both bands are kept for some seeds (all
        // 64 seeds choosing one has chance 2⁻⁶³).
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
        // Without it donor 1 counts in both bands; the truth counts all.
        p.one_value.clear();
        p.spread[0] = Spread::AtMost(2);
        let v = run(&p, &filter, &batches, Mode::Bounded).unwrap();
        assert_eq!(v[0], vec![2, 1, 0, 2]);
        let truth = run(&p, &filter, &batches, Mode::Truth).unwrap();
        assert_eq!(truth, vec![vec![2, 2, 0, 2], vec![2, 1, 0, 2]]);
        // With sample caps too, and the general pass refuses it.
        p.one_value = vec![0];
        p.sample_caps = Some(crate::SampleCaps {
            by: None,
            caps: vec![1],
        });
        let v = run(&p, &filter, &batches, Mode::Bounded).unwrap();
        assert_eq!(v[0][1] + v[0][3], 2);
        assert_eq!(v[1].iter().sum::<i64>(), 3, "one sample per donor");
        p.sample_caps = None;
        assert!(run_with(&p, &filter, &batches, Mode::Bounded, false).is_err());
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

    /// Batches of 7 rows cut through donors' 30 rows: a thread's run of
    /// batches must not end inside a donor, or the donor's two parts would
    /// each be bounded as a whole donor (twice the cells, twice the caps).
    #[test]
    fn threads_split_the_batches_only_between_donors() {
        let batches = everyone_everywhere(&keys(), 60, 3, 7);
        let mut p = plan(keys(), 10, 11);
        p.max_cells = Some(2);
        p.sample_caps = Some(crate::SampleCaps {
            by: None,
            caps: vec![4],
        });
        let filter = CompiledFilter::new(&p.filter, &schema()).unwrap();
        let one = run(&p, &filter, &batches, Mode::Bounded).unwrap();
        assert_eq!(one[0].iter().sum::<i64>(), 60 * 2);
        for cores in [2, 3, 7] {
            assert_eq!(
                parallel::run_on(cores, &p, &filter, &batches, Mode::Bounded).unwrap(),
                one,
                "{cores} cores"
            );
        }
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
