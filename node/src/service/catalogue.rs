//! The site's catalogue ([`bonebank_query::catalogue`]): once per dataset
//! version, and at most `versions_per_year` times in any 365 days, the node
//! counts donors and samples in every cell of the workload's tables, each
//! donor bounded per table, and releases them with OpenDP's discrete
//! Gaussian, charged once to the site. The catalogue is released data:
//! whatever is worked out from it later costs nothing.

use std::sync::Arc;

use bonebank_query::catalogue;
use bonebank_query::{Dimension, dimension_values};
use bonebank_schemas::Filter;
use bonebank_schemas::wire::{Accounting, Catalogue, CatalogueTable, Mechanism, NoisyCounts};

use super::bounds::{for_question, last_standing_out};
use super::{QueryService, blocking};
use crate::engine::{Aggregate, Plan, SampleCaps, Spread};
use crate::privacy::{self, Sensitivity};
use crate::store::NotYet;
use crate::{Error, Result};

/// A table of the workload as measured: its plan and the sensitivities of
/// its two vectors (donors, samples).
#[derive(Debug, Clone)]
pub struct Measurement {
    pub plan: Plan,
    pub donors: Sensitivity,
    pub samples: Sensitivity,
}

impl QueryService {
    /// The catalogue this site publishes: the current dataset version's,
    /// measured now if it never was and a catalogue may be measured; else
    /// the last one measured, which says which version it describes.
    /// `None` where there is none (pure accounting, `measure = false`, no
    /// data, or none allowed yet).
    pub async fn catalogue(&self) -> Result<Option<Arc<Catalogue>>> {
        let settings = self.policy.catalogue;
        if self.policy.accounting != Accounting::Zcdp || !settings.measure {
            return Ok(None);
        }
        if let Some(version) = self.engine.dataset_version()? {
            let cached = self.catalogue.lock().expect("lock").clone();
            if let Some(c) = cached.filter(|c| c.dataset_version == version) {
                return Ok(Some(c));
            }
            let _measuring = self.measuring_catalogue.lock().await;
            let (store, v) = (self.store.clone(), version.clone());
            let stored = blocking(move || store.catalogue(&v)).await?;
            let json = match stored {
                Some(json) => Some(json),
                None => self.measure_catalogue(&version).await?,
            };
            if let Some(json) = json {
                return self.keep(&json).map(Some);
            }
        }
        let store = self.store.clone();
        match blocking(move || store.latest_catalogue()).await? {
            Some(json) => self.keep(&json).map(Some),
            None => Ok(None),
        }
    }

    /// The stored catalogue as published: with the roles whose questions
    /// the site's policy filters now, and those it must not answer.
    fn keep(&self, json: &str) -> Result<Arc<Catalogue>> {
        let mut catalogue: Catalogue = serde_json::from_str(json)
            .map_err(|e| Error::Engine(format!("stored catalogue: {e}")))?;
        catalogue.role_filters = self.role_filters();
        catalogue.caller_rules = self.caller_rules();
        let catalogue = Arc::new(catalogue);
        *self.catalogue.lock().expect("lock") = Some(catalogue.clone());
        Ok(catalogue)
    }

    /// The plans of the workload's tables over `version`, with their
    /// sensitivities: samples per donor and cell from the version's sample
    /// bounds (or the policy's fixed bound), cells per donor as
    /// [`catalogue::cells_per_donor`] says from the policy's bounds (the
    /// catalogue measures its own: [`Self::measure_cells`],
    /// [`Measurement::with_cells`]).
    pub async fn catalogue_plans(&self, version: &str) -> Result<Vec<Measurement>> {
        let bounds = self.sample_bounds(version).await?;
        let ceiling = self.policy.zcdp.sample_bounds.ceiling;
        Ok(catalogue::workload()
            .into_iter()
            .map(|dimensions| {
                let by_type = dimensions.contains(&Dimension::SampleType);
                let samples_bound = bounds
                    .as_ref()
                    .map_or(self.policy.max_samples_per_donor, |b| {
                        for_question(b, &Filter::True, by_type, ceiling)
                    });
                let cells =
                    catalogue::cells_per_donor(&dimensions, |d| self.policy.groups_per_donor(d));
                let keys: Vec<Vec<String>> = dimensions
                    .iter()
                    .map(|d| dimension_values(*d, &self.site, &self.policy))
                    .collect();
                // With the measured bounds, a donor's samples are capped per
                // sample type (by the type's own bound) in all the table's
                // cells together, or in all at once (by their sum) where the
                // table has no sample type; see `SampleCaps`.
                let caps = bounds.as_ref().map(|b| {
                    let of =
                        |code: &str| b.per_type.get(code).copied().unwrap_or(0).clamp(1, ceiling);
                    match dimensions.iter().position(|d| *d == Dimension::SampleType) {
                        Some(at) => SampleCaps {
                            by: Some(at),
                            caps: keys[at].iter().map(|code| of(code)).collect(),
                        },
                        None => SampleCaps {
                            by: None,
                            caps: vec![samples_bound],
                        },
                    }
                });
                // No bound per dimension: the table's measured cells per
                // donor bound it (a repeat donor's years may be more than
                // the policy's bound on sampling_year).
                let spread = dimensions
                    .iter()
                    .zip(&keys)
                    .map(|(d, k)| {
                        if d.fixed_per_donor() {
                            Spread::FixedPerDonor
                        } else {
                            Spread::AtMost(k.len() as i64)
                        }
                    })
                    .collect();
                Measurement::of(Plan {
                    dimensions: dimensions.iter().map(|d| d.name().to_owned()).collect(),
                    keys,
                    filter: Filter::True,
                    aggregates: vec![Aggregate::Donors, Aggregate::Samples],
                    max_samples_per_donor: samples_bound,
                    spread,
                    max_cells: Some(cells),
                    seed: rand::random(),
                    sample_caps: caps,
                    one_value: Vec::new(),
                })
            })
            .collect())
    }

    /// How many cells of each table a donor counts in, measured over
    /// `version` for the tables `measurements` plans: per table, the donors
    /// in at least `k` cells for `k` up to [`cells_ceiling`] (once for
    /// tables that differ only in donor-level dimensions), all tables'
    /// counts released at once with the discrete Gaussian at ρ `loss`, and
    /// each table's bound read from them as the sample bounds are
    /// ([`last_standing_out`]), at least 1. With the units the release
    /// cost; `None` if the data changed meanwhile.
    pub async fn measure_cells(
        &self,
        version: &str,
        measurements: &[Measurement],
        loss: f64,
    ) -> Result<Option<(Vec<i64>, i64)>> {
        // Tables over the same sample-level dimensions (e.g. age band, and
        // sex × age band) put every donor in as many cells, a donor having
        // one sex: their counts are measured once, for the first of them.
        let mut groups: Vec<(Vec<&str>, Vec<i64>)> = Vec::new();
        let mut group_of: Vec<Option<usize>> = Vec::with_capacity(measurements.len());
        for m in measurements {
            let ceiling = cells_ceiling(&m.plan);
            if ceiling <= 1 {
                group_of.push(None);
                continue;
            }
            let key = catalogue::sample_level(&m.plan.dimensions, &[]);
            if let Some(g) = groups.iter().position(|(k, _)| *k == key) {
                group_of.push(Some(g));
                continue;
            }
            let mut plan = m.plan.clone();
            plan.max_cells = Some(ceiling);
            let (read, counts) = self.engine.cells_per_donor(&plan).await?;
            if read != version {
                return Ok(None);
            }
            group_of.push(Some(groups.len()));
            groups.push((key, counts));
        }
        let counts: Vec<Vec<i64>> = groups.into_iter().map(|(_, c)| c).collect();
        let noise = self.noise.clone();
        blocking(move || {
            // One donor adds one to at most a group's ceiling of its counts.
            let entries: i64 = counts.iter().map(|c| c.len() as i64).sum();
            if entries == 0 {
                return Ok(Some((vec![1; group_of.len()], 0)));
            }
            let sensitivity = Sensitivity {
                l1: entries,
                l2: (entries as f64).sqrt().next_up().next_up(),
            };
            let calibration = noise.calibrate(Accounting::Zcdp, sensitivity, loss)?;
            let flat: Vec<i64> = counts.iter().flatten().copied().collect();
            let noised = noise.release(&flat, &calibration)?;
            let mut at = 0;
            let per_group: Vec<i64> = counts
                .iter()
                .map(|c| {
                    let noisy = &noised.values[at..at + c.len()];
                    at += c.len();
                    last_standing_out(noisy, noised.scale).max(1)
                })
                .collect();
            let bounds = group_of
                .iter()
                .map(|g| g.map_or(1, |g| per_group[g]))
                .collect();
            Ok(Some((bounds, privacy::units_up(calibration.loss))))
        })
        .await
    }

    /// Measures and stores the catalogue of `version`; `None` if the data
    /// changed meanwhile or no catalogue is allowed yet.
    async fn measure_catalogue(&self, version: &str) -> Result<Option<String>> {
        let (store, policy) = (self.store.clone(), self.policy.clone());
        if let Err(NotYet::YearlyLimit { from }) =
            blocking(move || store.catalogue_allowed(&policy)).await?
        {
            tracing::info!(
                version,
                next_from = from,
                "no catalogue for this version yet: the year's catalogues are measured"
            );
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let settings = self.policy.catalogue;
        let wide = self.catalogue_plans(version).await?;
        // The tables of every donor spend the loss but the consented
        // tables' part, and their cell bounds a share of that.
        let every_loss = settings.loss - settings.consented_loss;
        let cells_loss = every_loss * CELLS_SHARE;
        let Some((cells, cell_units)) = self.measure_cells(version, &wide, cells_loss).await?
        else {
            return Ok(None);
        };
        let one_per_donor = one_per_donor(&wide, &cells);
        let mut measurements: Vec<Measurement> = wide
            .iter()
            .zip(&cells)
            .map(|(m, c)| m.with_cells(*c).with_one_value(&one_per_donor))
            .collect();
        let consented = if settings.consented_loss > 0.0 {
            consented_measurements(&measurements)
        } else {
            Vec::new()
        };
        let mut shares = split_for(&measurements, &one_per_donor, every_loss - cells_loss);
        shares.extend(split_for(
            &consented,
            &one_per_donor,
            settings.consented_loss,
        ));
        measurements.extend(consented);
        let mut exact = Vec::with_capacity(measurements.len());
        for m in &measurements {
            let counted = self.engine.aggregate(&m.plan).await?;
            if counted.dataset_version != version {
                return Ok(None);
            }
            exact.push(counted.values);
        }
        let (noise, site, owned) = (
            self.noise.clone(),
            self.site.to_string(),
            version.to_owned(),
        );
        let (store, policy) = (self.store.clone(), self.policy.clone());
        let delta = policy.zcdp.delta;
        let catalogue = blocking(move || {
            let version = owned;
            let (mut tables, table_units) =
                noised_tables(noise.as_ref(), &measurements, &exact, &shares)?;
            let units = table_units + cell_units;
            let report = catalogue::fit(&mut tables, &one_per_donor);
            tracing::info!(
                moved = report.moved,
                largest_move = report.largest_move,
                "reconciled the catalogue's tables"
            );
            let loss = privacy::epsilon(units);
            let catalogue = Catalogue {
                site,
                dataset_version: version.clone(),
                measured_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                loss,
                cell_bounds_loss: privacy::epsilon(cell_units),
                approx_dp: bonebank_schemas::wire::ApproxDp {
                    epsilon: privacy::zcdp_epsilon(loss, delta)?,
                    delta,
                },
                mechanism: Mechanism::DiscreteGaussian,
                coverage: privacy::COVERAGE,
                role_filters: Default::default(),
                caller_rules: Vec::new(),
                one_per_donor,
                tables,
            };
            let json =
                serde_json::to_string(&catalogue).map_err(|e| Error::Engine(e.to_string()))?;
            Ok(store.store_catalogue(&version, &json, units, &policy)?.ok())
        })
        .await?;
        if catalogue.is_some() {
            tracing::info!(
                version,
                ms = started.elapsed().as_millis() as u64,
                "measured the catalogue"
            );
        }
        Ok(catalogue)
    }
}

/// The consented tables ([`catalogue::consented_workload`]): each the table
/// of every donor over the same dimensions (in `measurements`), with its
/// bounds, counting only the donors with [`catalogue::CONSENT`]. The
/// bounds were measured over every donor, and those donors are among
/// them; a table's keyed draws are its own.
pub fn consented_measurements(measurements: &[Measurement]) -> Vec<Measurement> {
    catalogue::consented_workload()
        .iter()
        .filter_map(|dimensions| {
            let names: Vec<&str> = dimensions.iter().map(|d| d.name()).collect();
            measurements.iter().find(|m| {
                m.plan
                    .dimensions
                    .iter()
                    .map(String::as_str)
                    .eq(names.iter().copied())
            })
        })
        .map(|m| {
            let mut plan = m.plan.clone();
            plan.filter = catalogue::consented_filter();
            plan.seed = rand::random();
            Measurement::of(plan)
        })
        .collect()
}

/// `total` split over the two vectors of each of `measurements`, for the
/// fit ([`catalogue::split_for_fit`]).
fn split_for(measurements: &[Measurement], one_per_donor: &[String], total: f64) -> Vec<f64> {
    if measurements.is_empty() {
        return Vec::new();
    }
    let shape: Vec<(Vec<String>, Vec<usize>)> = measurements
        .iter()
        .map(|m| {
            (
                m.plan.dimensions.clone(),
                m.plan.keys.iter().map(Vec::len).collect(),
            )
        })
        .collect();
    let donors: Vec<f64> = measurements.iter().map(|m| m.donors.l2).collect();
    let samples: Vec<f64> = measurements.iter().map(|m| m.samples.l2).collect();
    catalogue::split_for_fit(&shape, one_per_donor, &donors, &samples, total)
}

/// The share of the loss of the tables of every donor spent on measuring
/// their cell bounds ([`QueryService::measure_cells`]); the tables share
/// the rest.
pub const CELLS_SHARE: f64 = 1.0 / 16.0;

/// A table's cell bound is measured up to this many times the policy's
/// ([`catalogue::cells_per_donor`]).
const CELLS_HEADROOM: i64 = 3;

/// The most cells of a table a donor's count of cells is measured to:
/// [`CELLS_HEADROOM`] times the policy's bound, and no more than the
/// table's cells a donor could be in; 1 where a donor is in one cell only
/// (no sample-level dimension), which needs no measuring.
pub fn cells_ceiling(plan: &Plan) -> i64 {
    plan.cells_reachable()
        .min(CELLS_HEADROOM * plan.cells_per_donor())
        .max(1)
}

impl Measurement {
    /// The table `plan` plans, with the sensitivities its bounds give: a
    /// donor's cells, and its samples per cell or per class of cells
    /// ([`SampleCaps`]), whichever is smaller.
    pub fn of(plan: Plan) -> Self {
        let samples_bound = plan.max_samples_per_donor;
        let cells = plan.cells_per_donor();
        let per_cells = Sensitivity::of_cells(Aggregate::Samples.per_cell(samples_bound), cells);
        // Both bounds hold; the smaller is the sensitivity.
        let samples = match &plan.sample_caps {
            Some(caps) => {
                let (l2, l1) = caps.sensitivity();
                Sensitivity {
                    l1: l1.min(per_cells.l1),
                    l2: l2.min(per_cells.l2),
                }
            }
            None => per_cells,
        };
        Self {
            donors: Sensitivity::of_cells(Aggregate::Donors.per_cell(samples_bound), cells),
            samples,
            plan,
        }
    }

    /// The same table with at most `cells` cells per donor (what
    /// [`QueryService::measure_cells`] measured), and the sensitivities
    /// that gives.
    pub fn with_cells(&self, cells: i64) -> Self {
        let mut plan = self.plan.clone();
        plan.max_cells = Some(cells.max(1));
        Self::of(plan)
    }

    /// The same table counting each donor in one value only along those
    /// of its dimensions named in `dimensions` ([`Plan::one_value`]), and
    /// the sensitivities that gives.
    pub fn with_one_value(&self, dimensions: &[String]) -> Self {
        let mut plan = self.plan.clone();
        plan.one_value = (0..plan.dimensions.len())
            .filter(|d| dimensions.contains(&plan.dimensions[*d]))
            .collect();
        for d in &plan.one_value {
            plan.spread[*d] = Spread::AtMost(1);
        }
        Self::of(plan)
    }
}

/// The dimensions along which the catalogue counts each donor in one value
/// only: those whose table of that sample-level dimension alone (such as
/// age band, and sex × age band) measured one cell per donor (`cells`, per
/// table of `measurements`). Read from the released measurement, so free.
/// Where a few donors do have several values, hidden in that measurement's
/// noise, each counts in one of them, drawn as its cells are: the same
/// small bias downwards as any cell bound the noise hides.
pub fn one_per_donor(measurements: &[Measurement], cells: &[i64]) -> Vec<String> {
    let mut dimensions: Vec<String> = Vec::new();
    for (m, c) in measurements.iter().zip(cells) {
        if let [only] = catalogue::sample_level(&m.plan.dimensions, &[])[..]
            && *c == 1
            && cells_ceiling(&m.plan) > 1
            && !dimensions.iter().any(|d| d == only)
        {
            dimensions.push(only.to_owned());
        }
    }
    dimensions
}

/// Each table's two vectors of exact bounded counts (`exact[t]`: donors,
/// samples) released with the discrete Gaussian calibrated to their
/// sensitivity and their share of the loss (`shares`, two per table); with
/// the units the privacy maps state, rounded up, in all.
pub fn noised_tables(
    noise: &dyn privacy::NoiseMechanism,
    measurements: &[Measurement],
    exact: &[Vec<Vec<i64>>],
    shares: &[f64],
) -> Result<(Vec<CatalogueTable>, i64)> {
    let mut tables = Vec::with_capacity(measurements.len());
    let mut units = 0i64;
    for ((m, values), share) in measurements.iter().zip(exact).zip(shares.chunks(2)) {
        let mut vectors = Vec::with_capacity(2);
        for ((sensitivity, values), rho) in [m.donors, m.samples].into_iter().zip(values).zip(share)
        {
            let calibration = noise.calibrate(Accounting::Zcdp, sensitivity, *rho)?;
            let released = noise.release(values, &calibration)?;
            units += privacy::units_up(calibration.loss);
            vectors.push(NoisyCounts {
                values: released.values.iter().map(|v| *v as f64).collect(),
                measured: released.values,
                variances: Vec::new(),
                sensitivity: calibration.sensitivity,
                scale: released.scale,
                loss: calibration.loss,
            });
        }
        let samples = vectors.pop().expect("two vectors");
        let donors = vectors.pop().expect("two vectors");
        tables.push(CatalogueTable {
            dimensions: m.plan.dimensions.clone(),
            keys: m.plan.keys.clone(),
            cells_per_donor: m.plan.cells_per_donor(),
            samples_per_donor: m.plan.max_samples_per_donor,
            consent: catalogue::consent_of(&m.plan.filter).map(str::to_owned),
            donors,
            samples,
        });
    }
    Ok((tables, units))
}

impl QueryService {
    /// Why there is no catalogue, in words for a researcher.
    pub fn why_no_catalogue(&self) -> Result<String> {
        let settings = self.policy.catalogue;
        Ok(if self.policy.accounting != Accounting::Zcdp {
            "this site accounts in pure ε, and publishes no catalogue".into()
        } else if !settings.measure {
            "this site publishes no catalogue (policy.catalogue.measure is off)".into()
        } else if self.engine.dataset_version()?.is_none() {
            "this site has not imported any data yet".into()
        } else {
            match self.store.catalogue_allowed(&self.policy)? {
                Err(NotYet::YearlyLimit { from }) => format!(
                    "this site has measured its {} catalogues of the year; the next may be measured from {}",
                    settings.versions_per_year,
                    chrono::DateTime::from_timestamp(from, 0)
                        .map_or_else(|| from.to_string(), |t| t.format("%Y-%m-%d").to_string())
                ),
                Ok(()) => {
                    "this site's catalogue could not be measured now; see the site's log".into()
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table of `cells` cells over sample type keys, with the given
    /// sensitivities.
    fn table(cells: usize, donors: Sensitivity, samples: Sensitivity) -> Measurement {
        Measurement {
            plan: Plan {
                dimensions: vec!["sample_type".into()],
                keys: vec![(0..cells).map(|i| i.to_string()).collect()],
                filter: Filter::True,
                aggregates: vec![Aggregate::Donors, Aggregate::Samples],
                max_samples_per_donor: 3,
                spread: vec![Spread::AtMost(2)],
                max_cells: Some(2),
                seed: 1,
                sample_caps: None,
                one_value: Vec::new(),
            },
            donors,
            samples,
        }
    }

    /// 20,000 draws per vector of OpenDP's discrete Gaussian: centred on the
    /// exact counts, with the variance and 95% coverage its stated scale
    /// says, each vector at its own scale.
    #[test]
    fn the_catalogues_noise_is_the_discrete_gaussian_it_states() {
        const N: usize = 20_000;
        let donors = Sensitivity::of_cells(1, 2);
        let samples = Sensitivity::of_cells(3, 2);
        let m = table(N, donors, samples);
        let exact = vec![vec![vec![5i64; N], vec![40i64; N]]];
        let (tables, units) =
            noised_tables(&privacy::OpenDpNoise, &[m], &exact, &[0.05, 0.02]).unwrap();
        assert!(units <= privacy::units(0.07) + 2, "{units}");
        let t = &tables[0];
        assert_eq!(t.cells_per_donor, 2);
        for (counts, truth, sensitivity, rho) in [
            (&t.donors, 5, donors, 0.05),
            (&t.samples, 40, samples, 0.02),
        ] {
            let (_, nominal) = privacy::nominal_scale(Accounting::Zcdp, sensitivity, rho);
            assert!((counts.scale - nominal).abs() < 1e-9 * nominal);
            assert!(counts.loss <= rho);
            let errors: Vec<f64> = counts.measured.iter().map(|v| (v - truth) as f64).collect();
            let mean = errors.iter().sum::<f64>() / N as f64;
            let variance = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / N as f64;
            let sigma = counts.scale;
            // The mean's standard error is σ/√N; the variance's about
            // σ²·√(2/N) (0.01 σ²): five of each.
            assert!(
                mean.abs() < 5.0 * sigma / (N as f64).sqrt(),
                "mean {mean}, σ {sigma}"
            );
            assert!(
                (variance / (sigma * sigma) - 1.0).abs() < 0.05,
                "variance {variance}, σ² {}",
                sigma * sigma
            );
            // The share within 1.96σ, against the discrete Gaussian's own
            // probability of |e| ≤ ⌊1.96σ⌋ (below 95% for a small σ, as
            // whole numbers fall short of the bound), within five standard
            // errors of N draws.
            let k = (1.96 * sigma).floor() as i64;
            let wide = (20.0 * sigma).ceil() as i64;
            let mass = |x: i64| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp();
            let all: f64 = (-wide..=wide).map(mass).sum();
            let p = (-k..=k).map(mass).sum::<f64>() / all;
            let within = errors.iter().filter(|e| e.abs() <= k as f64).count() as f64 / N as f64;
            let se = (p * (1.0 - p) / N as f64).sqrt();
            assert!(
                (within - p).abs() < 5.0 * se,
                "{within} within ±{k}, the discrete Gaussian's {p}"
            );
        }
    }
}
