//! From a checked question to what the engine and the noise need: the plan
//! (dimensions with their public keys, the filter, the aggregates and the
//! contribution bounds), the key its release is remembered by, and each
//! aggregate vector's share of the loss and its noise.

use bonebank_query::{Checked, dimension_values};
use bonebank_schemas::Measure;
use bonebank_schemas::surface;
use sha2::{Digest, Sha256};

use super::QueryService;
use crate::Result;
use crate::engine::{Aggregate, Plan, Spread};
use crate::privacy;

impl QueryService {
    /// The plan for a checked query, each donor counted with at most
    /// `samples_bound` samples per cell (see [`QueryService::samples_bound`]).
    pub fn plan(&self, checked: &Checked, samples_bound: i64) -> Plan {
        let aggregates = checked
            .query
            .measures
            .iter()
            .flat_map(aggregates_of)
            .collect();
        Plan {
            dimensions: checked
                .dimensions
                .iter()
                .map(|d| d.name().to_owned())
                .collect(),
            keys: checked
                .dimensions
                .iter()
                .map(|d| dimension_values(*d, &self.site, &self.policy))
                .collect(),
            filter: checked.query.filter.clone(),
            aggregates,
            max_samples_per_donor: samples_bound,
            spread: checked.dimensions.iter().map(|d| self.spread(*d)).collect(),
            max_cells: None,
            seed: rand::random(),
            sample_caps: None,
            one_value: Vec::new(),
        }
    }

    /// How far one donor may spread along `dimension` under the policy.
    pub(super) fn spread(&self, dimension: bonebank_query::Dimension) -> Spread {
        if dimension.fixed_per_donor() {
            Spread::FixedPerDonor
        } else {
            Spread::AtMost(self.policy.groups_per_donor(dimension))
        }
    }

    /// The plan for a checked query over the current dataset version, with
    /// that version's sample bounds (measured now if they never were).
    pub async fn plan_now(&self, checked: &Checked) -> Result<Plan> {
        Ok(self.plan(checked, self.samples_bound(None, checked).await?))
    }

    /// Releases are keyed by everything that shapes the numbers: site, data,
    /// canonical query, the loss and its measure, and the contribution
    /// bounds.
    pub(super) fn release_key(
        &self,
        version: &str,
        checked: &Checked,
        units: i64,
        samples_bound: i64,
    ) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{version}\n{}\n{units} {:?}\n{} {} {:?}",
            self.site,
            checked.query.canonical_json(),
            self.policy.accounting,
            samples_bound,
            self.policy.max_groups_per_donor,
            self.policy.groups_per_donor
        ));
        hex::encode(h.finalize())
    }

    /// The noise of each aggregate vector, from its share of the loss:
    /// whole units per vector in proportion to [`need`], so the shares add
    /// up to exactly the loss asked for.
    pub(super) fn calibrate(&self, plan: &Plan, units: i64) -> Result<Vec<privacy::Calibration>> {
        let cells = plan.cells_per_donor();
        let shares = split(units, &plan.aggregates.iter().map(need).collect::<Vec<_>>());
        plan.aggregates
            .iter()
            .zip(shares)
            .map(|(aggregate, share)| {
                let sensitivity = privacy::Sensitivity::of_cells(
                    aggregate.per_cell(plan.max_samples_per_donor),
                    cells,
                );
                self.noise
                    .calibrate(self.policy.accounting, sensitivity, privacy::epsilon(share))
            })
            .collect()
    }
}

/// How much of a query's loss each aggregate vector needs, relative to the
/// others. The donor count is what a feasibility question turns on (the
/// network's precision targets are set in donors, and it is the only count
/// peers release), so it gets sixteen parts; a sample count, a sum, and
/// each of an average's two vectors get one. Under zCDP the noise of a
/// vector grows as 1/√share, so with donors and samples asked together the
/// donor count is noised only 3% more than if it were asked alone, and the
/// sample count 4.1 times as much.
pub fn need(aggregate: &Aggregate) -> i64 {
    match aggregate {
        Aggregate::Donors => 16,
        Aggregate::Samples | Aggregate::Sum { .. } | Aggregate::Count { .. } => 1,
    }
}

/// `units` split in proportion to `weights`, in whole units that add up to
/// exactly `units` (the remainder goes one unit each to the first vectors).
pub fn split(units: i64, weights: &[i64]) -> Vec<i64> {
    let total: i64 = weights.iter().sum::<i64>().max(1);
    let mut shares: Vec<i64> = weights
        .iter()
        .map(|w| (i128::from(units) * i128::from(*w) / i128::from(total)) as i64)
        .collect();
    let mut left = units - shares.iter().sum::<i64>();
    for s in shares.iter_mut() {
        if left == 0 {
            break;
        }
        *s += 1;
        left -= 1;
    }
    shares
}

fn aggregates_of(m: &Measure) -> Vec<Aggregate> {
    let sum = |column: &str| {
        let (lo, hi) = surface::bounds(column).expect("checked bounded column");
        Aggregate::Sum {
            column: column.to_owned(),
            lo,
            hi,
        }
    };
    match m {
        Measure::Samples => vec![Aggregate::Samples],
        Measure::Donors => vec![Aggregate::Donors],
        Measure::Sum { column } => vec![sum(column)],
        Measure::Avg { column } => vec![
            sum(column),
            Aggregate::Count {
                column: column.clone(),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_loss_is_split_by_need_into_exact_shares() {
        let donors = Aggregate::Donors;
        let samples = Aggregate::Samples;
        let shares = split(23_000_000, &[need(&samples), need(&donors)]);
        assert_eq!(shares.iter().sum::<i64>(), 23_000_000);
        assert_eq!(
            shares[1], 21_647_058,
            "donors get sixteen parts of seventeen"
        );
        assert_eq!(shares[0], 1_352_942);
        for units in [1, 7, 1_000_000_007] {
            for weights in [vec![1], vec![16, 1, 1], vec![1, 1, 1, 1, 1, 1, 1, 1]] {
                let s = split(units, &weights);
                assert_eq!(s.iter().sum::<i64>(), units, "{units} {weights:?}");
            }
        }
    }
}
