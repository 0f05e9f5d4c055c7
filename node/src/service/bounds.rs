//! The sample bound, fitted to the data. A sample count with a fixed bound
//! of S samples per donor and cell misses every sample past the S-th of a
//! donor, so at a site of repeat donors (a blood donor gives plasma at
//! each of some 16 donations) its interval misses the true count. Under
//! zCDP a node therefore measures, once per dataset version, how many
//! samples of each type its donors have: per sample type `t` and `k`, the
//! donors with at least `k` samples of `t`, released with discrete Gaussian
//! noise and charged to the site's account (no user's). Each type's bound
//! is the last `k` whose noisy count stands out of the noise, read upwards
//! until two neighbouring counts both sink into it, plus an eighth, and a question's bound is what one of its
//! cells can hold: the largest bound of the types it may count when it
//! groups by sample type, their sum when it does not. The bounds are post-processing of that one release,
//! public, and shown in `/v1/site`.

use std::collections::BTreeSet;
use std::sync::Arc;

use bonebank_query::Checked;
use bonebank_schemas::wire::{Accounting, SampleBoundsDescription};
use bonebank_schemas::{Filter, SampleType, Value, ValueSet};

use super::{QueryService, blocking};
use crate::privacy::{self, Sensitivity};
use crate::{Error, Result};

/// A noisy count above this many noise scales stands out of the noise. The
/// true counts fall as k grows (donors with at least k samples), so a
/// type's bound is read upwards from k = 1: it is the last count that
/// stands out before two neighbouring counts that both do not. One count
/// lost in the noise near the tail does not end it; noise past the true
/// tail (pure noise stands out with a chance of 0.6%) does not raise it,
/// however many levels on.
const STANDS_OUT: f64 = 2.5;

/// The first count (donors with at least one sample of a type) starts the
/// run: it must stand out above this many noise scales, which pure noise
/// reaches with a chance of 10⁻⁴, so a type a site does not hold gets a
/// bound above 0 about once in 500 measurements of all 19 types.
const STANDS_OUT_ALONE: f64 = 3.72;

/// Past the last count that stands out, fewer donors than the noise hides
/// still have more samples; an eighth more (rounded down) counts most of
/// them, so that what the bound leaves out is a small part of the noise.
const MARGIN: i64 = 8;

/// The bounds one dataset version's measurement gave, as `/v1/site` shows
/// them and the store keeps them.
pub type MeasuredBounds = SampleBoundsDescription;

/// The bounds from the noisy table: `noisy[t][k - 1]` estimates the donors
/// with at least `k` samples of type `t`.
pub fn from_noisy(
    dataset_version: String,
    noisy: &[Vec<i64>],
    scale: f64,
    loss: f64,
) -> MeasuredBounds {
    let per_type = SampleType::ALL
        .iter()
        .zip(noisy)
        .map(|(t, counts)| {
            let bound = last_standing_out(counts, scale);
            (t.code().to_owned(), bound)
        })
        .collect();
    MeasuredBounds {
        dataset_version,
        per_type,
        loss,
    }
}

/// The last `k` whose noisy count of donors with at least `k` (`counts[k -
/// 1]`) stands out of noise of standard deviation `scale`, read upwards
/// until two neighbouring counts both sink into it, plus an eighth (at most
/// `counts.len()`); 0 if even the first does not stand out alone.
pub fn last_standing_out(counts: &[i64], scale: f64) -> i64 {
    let threshold = STANDS_OUT * scale;
    let out = |k: usize| counts.get(k).is_some_and(|&c| c as f64 > threshold);
    let mut last = None;
    if counts
        .first()
        .is_some_and(|&c| c as f64 > STANDS_OUT_ALONE * scale)
    {
        last = Some(0);
        let mut k = 1;
        while k < counts.len() && (out(k) || out(k + 1)) {
            if out(k) {
                last = Some(k);
            }
            k += 1;
        }
    }
    last.map_or(0, |k| {
        let b = k as i64 + 1;
        (b + b / MARGIN).min(counts.len() as i64)
    })
}

/// The most samples of one donor one cell of a question with `filter` may
/// count: the largest bound of the types it admits when it groups by
/// sample type, their sum when it does not.
pub fn for_question(
    bounds: &MeasuredBounds,
    filter: &Filter,
    by_sample_type: bool,
    ceiling: i64,
) -> i64 {
    let types = admitted(filter);
    let admitted = bounds
        .per_type
        .iter()
        .filter(|(t, _)| types.as_ref().is_none_or(|set| set.contains(t.as_str())))
        .map(|(_, b)| *b);
    let bound = if by_sample_type {
        admitted.max().unwrap_or(0)
    } else {
        admitted.sum()
    };
    bound.clamp(1, ceiling)
}

/// The sample types a row that `filter` keeps may have: `None` for any.
/// Read only from conditions on `sample_type` that every kept row meets
/// (others may admit any type), so it is never narrower than the truth.
fn admitted(filter: &Filter) -> Option<BTreeSet<&'static str>> {
    let is_type = |c: &str| c == "sample_type";
    match filter {
        Filter::And(fs) => fs
            .iter()
            .filter_map(admitted)
            .reduce(|a, b| a.intersection(&b).copied().collect()),
        Filter::Or(fs) => {
            let mut all = BTreeSet::new();
            for f in fs {
                all.extend(admitted(f)?);
            }
            Some(all)
        }
        Filter::In { column, values } if is_type(column) => Some(codes_where(|code| {
            values
                .iter()
                .any(|v| matches!(v, Value::Text(x) if x == code))
        })),
        Filter::Prefix { column, prefix } if is_type(column) => {
            Some(codes_where(|code| code.starts_with(prefix.as_str())))
        }
        _ => None,
    }
}

/// The sample types' codes that `keep` keeps.
fn codes_where(keep: impl Fn(&str) -> bool) -> BTreeSet<&'static str> {
    SampleType::ALL
        .iter()
        .map(|t| t.code())
        .filter(|code| keep(code))
        .collect()
}

impl QueryService {
    /// The most samples of one donor one cell of `checked` counts over
    /// `version` (the current one if `None`), from that version's sample
    /// bounds: measured now if they never were (charged to the site), else
    /// as stored. The policy's fixed `max_samples_per_donor` where there
    /// are none: no data yet, the site does not measure them (pure
    /// accounting, or `measure = false`), its budget cannot pay for them,
    /// or the data changed meanwhile.
    pub(super) async fn samples_bound(
        &self,
        version: Option<&str>,
        checked: &Checked,
    ) -> Result<i64> {
        let current;
        let version = match version {
            Some(v) => Some(v),
            None => {
                current = self.engine.dataset_version()?;
                current.as_deref()
            }
        };
        let settings = self.policy.zcdp.sample_bounds;
        let bounds = match version {
            Some(v) => self.sample_bounds(v).await?,
            None => None,
        };
        Ok(match bounds {
            None => self.policy.max_samples_per_donor,
            Some(b) => for_question(
                &b,
                &checked.query.filter,
                checked.query.group_by.iter().any(|d| d == "sample_type"),
                settings.ceiling,
            ),
        })
    }

    /// The sample bounds of `version`, from memory, the store, or a new
    /// measurement; `None` where there are none (see [`Self::samples_bound`]).
    pub(super) async fn sample_bounds(&self, version: &str) -> Result<Option<Arc<MeasuredBounds>>> {
        let settings = self.policy.zcdp.sample_bounds;
        if self.policy.accounting != Accounting::Zcdp || !settings.measure {
            return Ok(None);
        }
        if let Some(b) = self.bounds.lock().expect("lock").as_ref()
            && b.dataset_version == version
        {
            return Ok(Some(b.clone()));
        }
        // One measurement at a time; whoever waited finds it stored.
        let _measuring = self.measuring.lock().await;
        let (store, v) = (self.store.clone(), version.to_owned());
        let stored = match blocking(move || store.sample_bounds(&v)).await? {
            Some(json) => Some(json),
            None => self.measure_bounds(version).await?,
        };
        let Some(json) = stored else {
            return Ok(None);
        };
        let bounds: Arc<MeasuredBounds> = Arc::new(
            serde_json::from_str(&json)
                .map_err(|e| Error::Engine(format!("stored sample bounds: {e}")))?,
        );
        *self.bounds.lock().expect("lock") = Some(bounds.clone());
        Ok(Some(bounds))
    }

    /// Measures and stores the bounds of `version`; `None` if the data
    /// changed before the measurement read it, or the site's budget is
    /// spent.
    async fn measure_bounds(&self, version: &str) -> Result<Option<String>> {
        let settings = self.policy.zcdp.sample_bounds;
        let ceiling = settings.ceiling;
        let (read, table) = self.engine.samples_per_donor(ceiling as usize).await?;
        if read != version {
            return Ok(None);
        }
        // One donor adds one to at most `ceiling` counts of the table.
        let sensitivity = Sensitivity {
            l1: ceiling,
            l2: (ceiling as f64).sqrt().next_up().next_up(),
        };
        let (noise, version) = (self.noise.clone(), version.to_owned());
        let (policy, store) = (self.policy.clone(), self.store.clone());
        blocking(move || {
            let calibration = noise.calibrate(Accounting::Zcdp, sensitivity, settings.loss)?;
            let flat: Vec<i64> = table.concat();
            let noised = noise.release(&flat, &calibration)?;
            let noisy: Vec<Vec<i64>> = noised
                .values
                .chunks(ceiling as usize)
                .map(<[i64]>::to_vec)
                .collect();
            let units = privacy::units_up(calibration.loss);
            let bounds = from_noisy(
                version.clone(),
                &noisy,
                calibration.scale,
                privacy::epsilon(units),
            );
            let json = serde_json::to_string(&bounds).map_err(|e| Error::Engine(e.to_string()))?;
            match store.store_sample_bounds(&version, &json, units, &policy)? {
                Ok(stored) => {
                    tracing::info!(version = %version, bounds = %stored, "measured the sample bounds");
                    Ok(Some(stored))
                }
                Err(account) => {
                    tracing::warn!(version = %version, ?account, "the site's budget cannot pay for the sample bounds; the fixed bound holds");
                    Ok(None)
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> Value {
        Value::Text(v.into())
    }

    fn bounds(pairs: &[(&str, i64)]) -> MeasuredBounds {
        MeasuredBounds {
            dataset_version: "v".into(),
            per_type: pairs.iter().map(|(t, b)| ((*t).to_owned(), *b)).collect(),
            loss: 0.5,
        }
    }

    #[test]
    fn a_types_bound_is_the_last_count_that_stands_out_of_the_noise() {
        let index = |code: &str| {
            SampleType::ALL
                .iter()
                .position(|t| t.code() == code)
                .unwrap()
        };
        let mut noisy = vec![vec![0i64; 8]; SampleType::ALL.len()];
        // Plasma: donors with at least 1..=8 samples; past 5 only noise.
        noisy[index("Plasma")] = vec![900, 700, 400, 200, 60, 20, -12, 40];
        noisy[index("Serum")] = vec![300, 0, 0, 0, 0, 0, 0, 0];
        noisy[index("Bone")] = vec![400, 300, 20, 100, 0, 0, 0, 0];
        // Noise past the tail, even two levels of it, does not raise a
        // bound: neither does a run of noise with nothing below it.
        noisy[index("DNA")] = vec![400, 300, 0, 0, 0, 90, 90, 0];
        noisy[index("Urine")] = vec![0, 0, 0, 90, 90, 90, 0, 0];
        // A first count must stand out more when alone.
        noisy[index("Saliva")] = vec![30, 0, 0, 0, 0, 0, 0, 0];
        let b = from_noisy("v".into(), &noisy, 10.0, 0.5);
        // 25 is the threshold: 60 stands out at k = 5, then 20 and -12 do
        // not, so 40 at k = 8 is noise. One count lost in the noise (30 at
        // k = 3 of Bone) does not end a run.
        assert_eq!(b.per_type["Plasma"], 5);
        assert_eq!(b.per_type["DNA"], 2);
        assert_eq!(b.per_type["Bone"], 4);
        assert_eq!(b.per_type["Serum"], 1);
        assert_eq!(b.per_type["Urine"], 0);
        assert_eq!(b.per_type["Saliva"], 0);
        // Past 8 an eighth more, at most the table's width.
        let mut wide = vec![vec![0i64; 64]; SampleType::ALL.len()];
        wide[index("Plasma")][..40].fill(500);
        wide[index("Serum")].fill(500);
        let b = from_noisy("v".into(), &wide, 10.0, 0.5);
        assert_eq!(b.per_type["Plasma"], 45);
        assert_eq!(b.per_type["Serum"], 64);
    }

    #[test]
    fn a_questions_bound_is_what_one_of_its_cells_can_hold() {
        let b = bounds(&[("Plasma", 40), ("Serum", 6), ("DNA", 1), ("Urine", 0)]);
        // Ungrouped, any type: a donor's cell holds all their types.
        assert_eq!(for_question(&b, &Filter::True, false, 64), 47);
        // Grouped by sample type: one type per cell.
        assert_eq!(for_question(&b, &Filter::True, true, 64), 40);
        let serum_or_dna = Filter::In {
            column: "sample_type".into(),
            values: vec![text("Serum"), text("DNA")],
        };
        assert_eq!(for_question(&b, &serum_or_dna, false, 64), 7);
        assert_eq!(for_question(&b, &serum_or_dna, true, 64), 6);
        // Another condition ANDed keeps the types; a NOT or an OR with an
        // unrestricted side admits them all.
        let and = Filter::And(vec![
            serum_or_dna.clone(),
            Filter::Range {
                column: "age_at_sampling".into(),
                min: Some(50),
                max: None,
            },
        ]);
        assert_eq!(for_question(&b, &and, false, 64), 7);
        assert_eq!(
            for_question(&b, &Filter::Not(Box::new(serum_or_dna.clone())), false, 64),
            47
        );
        let or = Filter::Or(vec![serum_or_dna.clone(), Filter::True]);
        assert_eq!(for_question(&b, &or, false, 64), 47);
        // The ceiling caps, and a type nobody has still counts one.
        assert_eq!(for_question(&b, &Filter::True, false, 20), 20);
        let urine = Filter::In {
            column: "sample_type".into(),
            values: vec![text("Urine")],
        };
        assert_eq!(for_question(&b, &urine, false, 64), 1);
        let prefix = Filter::Prefix {
            column: "sample_type".into(),
            prefix: "Se".into(),
        };
        assert_eq!(for_question(&b, &prefix, false, 64), 6);
    }
}
