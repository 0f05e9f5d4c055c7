//! The pass on several threads at once, each over a run of whole batches.

use super::donors::DonorBatch;
use super::{Mode, run};
use crate::filter::CompiledFilter;
use crate::{Error, Plan, Result};

/// Runs the pass on `cores` threads at once, each over a run of whole
/// batches, and adds up what they found. A donor's rows may go on from one
/// batch into the next, so a run ends only where the next batch begins
/// with another donor: each donor is bounded once, whole, by one thread.
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
        let donor_ends = batches
            .get(i + 1)
            .is_none_or(|next| next.keys.first() != b.keys.last());
        if donor_ends && rows * cores >= total * (runs.len() + 1) && runs.len() + 1 < cores {
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
