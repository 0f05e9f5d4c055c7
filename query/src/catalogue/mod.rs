//! What a site's catalogue measures and how it splits its loss. Node and
//! coordinator share this: the node measures these marginals, and the
//! coordinator answers from them.
//!
//! **The workload.** Feasibility questions ask for donors and samples under
//! a few criteria: sex, age, diagnosis, sample type (the BBMRI-ERIC
//! Directory's facts have exactly these four), and, for a chosen type,
//! material, storage temperature or sampling year. A distinct-donor count
//! does not add up over cells of a sample-level dimension (a donor with
//! serum and stem cells is one donor in both cells), so a donor question
//! is answered exactly only by a table over exactly its dimensions. The
//! catalogue therefore measures every subset of the four (sixteen tables,
//! the empty one being the site's total), sample type with material and
//! with storage temperature, the diagnosis chapter alone and by sex, the
//! Directory's facts in the Directory's own age ranges (which cut the
//! ten-year bands) with those ranges alone, for the Directory export
//! ([`directory`]), five-year age bands alone and by sex (for age ranges
//! such as 45 to 69), and sample type by sampling year: 25 tables, each
//! with donors and samples.
//!
//! **Cells per donor.** In each table a donor counts in a bounded number
//! of cells, chosen by a keyed random draw where it is in more. The policy
//! gives a starting bound ([`cells_per_donor`]: the widest sample-level
//! dimension's), but the node measures each table's own from the data,
//! up to three times that: a repeat blood donor gives plasma in a dozen
//! years or more, and a stem-cell donor's vials sit at two temperatures
//! beside six other sample types, while at a fracture site every donor's
//! samples share one age band. A bound that bites biases a table's counts
//! down (sampling year, with the policy's bound, covered Næstved's TRUE
//! plasma counts by year in 36% of cells); one wider than the donors need
//! only adds noise.
//!
//! **One value per donor.** Where a site's table of one sample-level
//! dimension alone measures one cell per donor (at a fracture site, every
//! donor's samples share one age band and one diagnosis), every table
//! counts each donor in one value of that dimension, drawn as its cells
//! are, and the catalogue names it in `one_per_donor`. Donor counts then
//! add up over its values, as over sex: donors aged 50 to 69 are the
//! donors of the 50s and of the 60s, and the tables whose other
//! dimensions agree are fitted together.
//!
//! **The split of the loss.** Answering a question from table *m* costs
//! the variance of its cells, σ²_m = Δ²_m / (2 ρ_m) per cell under zCDP.
//! Weighing each measure's variance by the precision a feasibility
//! question needs (±8 donors, ±40 samples: the targets' half-widths, so a
//! donor count's error counts 25 times a sample count's), the loss that
//! minimises the weighted sum Σ_m Δ²_m / (2 ρ_m t²_m) under Σ ρ_m = ρ is,
//! by a Lagrange multiplier, ρ_m ∝ Δ_m / t_m: each measurement gets a share
//! in proportion to its sensitivity over its target ([`split_loss`]). That
//! is the optimum for tables answered on their own. The published tables
//! are fitted together ([`fit`]), so a table's cells also gain from the
//! tables that share its components, and [`split_for_fit`] minimises the
//! same weighted sum of the fitted cells' variances instead
//! ([`consistent::optimal_split`]), starting from ρ ∝ Δ/t.

pub mod consistent;
pub mod directory;

use std::collections::{BTreeMap, BTreeSet};

use bonebank_schemas::wire::{
    Accounting, Catalogue, CatalogueTable, ComponentVariance, MeasureNoise, MeasurePreview,
    Mechanism, NoisyCounts, NoisyValue, Preview, QueryResult, ResultRow, Source,
};
use bonebank_schemas::{Consent, FeasibilityQuery, Filter, Measure, Value};

use crate::dimensions::Dimension;

/// Why the catalogue does not answer a question: a stable code (the app's
/// words are keyed by it: `measures`, `no_table`, `donors_over_cells`,
/// `cuts_band`, `years_beyond`, `category`, `condition`, and the
/// coordinator's `role_filter` and `steward`) and the reason in English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub code: &'static str,
    pub reason: String,
}

/// A [`Miss`] with `code` and `reason`.
pub fn miss(code: &'static str, reason: impl Into<String>) -> Miss {
    Miss {
        code,
        reason: reason.into(),
    }
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<Miss> for String {
    fn from(m: Miss) -> Self {
        m.reason
    }
}

/// The catalogue's tables, by their dimensions, in the order they are
/// measured and published.
pub fn workload() -> Vec<Vec<Dimension>> {
    use Dimension::{
        AgeBand5, AgeRange, DiagnosisCategory, DiagnosisChapter, MaterialSubtype, SampleType,
        SamplingYear, Sex, StorageTemperature,
    };
    let mut tables = the_directorys_four();
    tables.extend([
        vec![SampleType, MaterialSubtype],
        vec![SampleType, StorageTemperature],
        vec![DiagnosisChapter],
        vec![Sex, DiagnosisChapter],
        // The BBMRI-ERIC Directory's facts, in its own age ranges (which
        // cut the ten-year bands), and those ranges alone.
        vec![Sex, AgeRange, DiagnosisCategory, SampleType],
        vec![AgeRange],
        // Five-year age bands, for age ranges that cut the ten-year bands
        // (45 to 69), alone and by sex. In the Directory's four they
        // would answer the flagship's 45-to-69 variant at ±19 donors and
        // take from every other table's share; it is asked fresh.
        vec![AgeBand5],
        vec![Sex, AgeBand5],
        // Sampling year by sample type: a repeat blood donor is in a dozen
        // years or more, so this table needs the cell bounds the node
        // measures (see the module's words).
        vec![SampleType, SamplingYear],
    ]);
    tables
}

/// Every subset of the BBMRI-ERIC Directory's four dimensions (sex, age
/// band, diagnosis, sample type), fewest dimensions first, so the total
/// leads: sixteen tables.
fn the_directorys_four() -> Vec<Vec<Dimension>> {
    use Dimension::{AgeBand, DiagnosisCategory, SampleType, Sex};
    let mut tables = consistent::subsets(&[Sex, AgeBand, DiagnosisCategory, SampleType]);
    tables.sort_by_key(Vec::len);
    tables
}

/// The consent the catalogue's consented tables count donors of:
/// commercial use. A site adds `consent_commercial = true` to every
/// question of an industry partner, so a table of every donor answers
/// none of theirs.
pub const CONSENT: Consent = Consent::Commercial;

/// The tables the catalogue measures again over the donors with
/// [`CONSENT`] only, with `policy.catalogue.consented_loss`: every subset
/// of the Directory's four, which is what an industry partner scopes a
/// study by. They are fitted apart from the tables of every donor
/// ([`fit`]): a fit of the two would need the donors without that
/// consent, which no table counts.
pub fn consented_workload() -> Vec<Vec<Dimension>> {
    the_directorys_four()
}

/// The filter of the consented tables' donors: `consent_commercial = true`.
pub fn consented_filter() -> Filter {
    Filter::In {
        column: CONSENT.column().to_owned(),
        values: vec![Value::Bool(true)],
    }
}

/// The consent a condition asks for, if it is [`consented_filter`]: such a
/// question is answered from the consented tables, and a table measured
/// under it counts the donors with that consent.
pub fn consent_of(condition: &Filter) -> Option<&'static str> {
    (*condition == consented_filter()).then_some(CONSENT.code())
}

/// The half-width a feasibility question needs of a donor count.
pub const DONORS_TARGET: f64 = 8.0;
/// The half-width a feasibility question needs of a sample count.
pub const SAMPLES_TARGET: f64 = 40.0;

/// The cells of one table a donor may count in, as the policy's bounds
/// give them before the node measures its own: the bound of its widest
/// sample-level dimension (1 for a table of donor-level dimensions), not
/// their product. A donor's sample-level values go together (one surgery
/// gives one age and one diagnosis to several sample types), so the cells
/// a donor is in are about as many as the values of its widest dimension;
/// where they do not (a repeat donor's years, a stem-cell donor's
/// temperatures), the node's measured bound goes up to three times this.
pub fn cells_per_donor(dimensions: &[Dimension], bound: impl Fn(Dimension) -> i64) -> i64 {
    dimensions
        .iter()
        .filter(|d| !d.fixed_per_donor())
        .map(|d| bound(*d))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// `total` split over measurements with L2 sensitivities `sensitivities`
/// and target half-widths `targets`: ρ_i ∝ Δ_i / t_i (see the module's
/// words), adding up to `total`.
pub fn split_loss(total: f64, sensitivities: &[f64], targets: &[f64]) -> Vec<f64> {
    let weights: Vec<f64> = sensitivities
        .iter()
        .zip(targets)
        .map(|(d, t)| d.max(f64::MIN_POSITIVE) / t)
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| total * w / sum).collect()
}

/// The half-width a table's sample count is planned for: ±40, or, where
/// one donor may add more than five samples to a cell (the ratio of the
/// two targets), the donor target times what one donor may add
/// (`samples / donors`, the ratio of the two sensitivities). A site of
/// repeat blood donors (50 plasma samples each) cannot count samples to
/// ±40 at any loss it could defend; planning for it would starve its donor
/// counts, which feasibility needs most. So a sample count's error weighs
/// as the donors it stands for.
pub fn samples_target(donors: f64, samples: f64) -> f64 {
    let per_donor = samples / donors.max(f64::MIN_POSITIVE);
    SAMPLES_TARGET.max(DONORS_TARGET * per_donor)
}

/// The rounds [`split_for_fit`] takes.
const SPLIT_ROUNDS: usize = 200;

/// The catalogue's loss `total` split over its tables' vectors (per table
/// in order: donors, then samples), for the fit [`fit`] makes of them:
/// [`consistent::optimal_split`] over the workload of every table's cells
/// at their targets (±8 donors; samples at [`samples_target`]), with samples fitted over all
/// tables together and donors within the tables that differ only in
/// donor-level dimensions (and those counted one value per donor,
/// `one_per_donor`). `tables` gives each table's dimensions and their
/// numbers of keys.
pub fn split_for_fit(
    tables: &[(Vec<String>, Vec<usize>)],
    one_per_donor: &[String],
    donors: &[f64],
    samples: &[f64],
    total: f64,
) -> Vec<f64> {
    let shapes: Vec<(&[String], &[usize])> = tables
        .iter()
        .map(|(d, k)| (d.as_slice(), k.as_slice()))
        .collect();
    let lattice = Lattice::of(&shapes, one_per_donor);
    let mut planned = Vec::with_capacity(2 * tables.len());
    let mut targets = Vec::with_capacity(2 * tables.len());
    for (t, (d, s)) in donors.iter().zip(samples).enumerate() {
        let samples_target = samples_target(*d, *s);
        planned.push(consistent::Planned {
            attributes: lattice.attributes[t].clone(),
            sensitivity: *d,
            system: 1 + lattice.donor_group[t],
            target: DONORS_TARGET,
        });
        planned.push(consistent::Planned {
            attributes: lattice.attributes[t].clone(),
            sensitivity: *s,
            system: 0,
            target: samples_target,
        });
        targets.extend([DONORS_TARGET, samples_target]);
    }
    let sensitivities: Vec<f64> = planned.iter().map(|p| p.sensitivity).collect();
    let start = split_loss(total, &sensitivities, &targets);
    consistent::optimal_split(&lattice.sizes, &planned, start, SPLIT_ROUNDS)
}

/// A table's dimensions that a donor may count in several values of (all
/// but those fixed per donor, such as sex, and those the catalogue counts
/// one value of per donor, `one_per_donor`), in order. Tables with the
/// same ones put every donor in as many cells, and their donor counts add
/// up over the rest.
pub fn sample_level<'d>(dimensions: &'d [String], one_per_donor: &[String]) -> Vec<&'d str> {
    dimensions
        .iter()
        .filter(|d| !one_per_donor.contains(d))
        .map(String::as_str)
        .filter(|d| Dimension::from_name(d).is_none_or(|d| !d.fixed_per_donor()))
        .collect()
}

/// The catalogue's tables as the fit sees them: every dimension any table
/// has, numbered, with its number of keys; each table's dimensions by
/// number; and each table's group of tables whose donor counts add up
/// (those over the same sample-level dimensions).
struct Lattice {
    names: Vec<String>,
    sizes: Vec<usize>,
    attributes: Vec<Vec<usize>>,
    donor_group: Vec<usize>,
}

impl Lattice {
    /// From each table's dimensions and their numbers of keys, and the
    /// dimensions counted one value per donor.
    fn of(tables: &[(&[String], &[usize])], one_per_donor: &[String]) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for (dims, keys) in tables {
            for (d, k) in dims.iter().zip(*keys) {
                if !names.contains(d) {
                    names.push(d.clone());
                    sizes.push(*k);
                }
            }
        }
        let mut levels: Vec<BTreeSet<&str>> = Vec::new();
        let mut attributes = Vec::with_capacity(tables.len());
        let mut donor_group = Vec::with_capacity(tables.len());
        for (dims, _) in tables {
            attributes.push(
                dims.iter()
                    .map(|x| names.iter().position(|n| n == x).expect("named above"))
                    .collect(),
            );
            let level: BTreeSet<&str> = sample_level(dims, one_per_donor).into_iter().collect();
            let group = levels.iter().position(|g| *g == level).unwrap_or_else(|| {
                levels.push(level);
                levels.len() - 1
            });
            donor_group.push(group);
        }
        Self {
            names,
            sizes,
            attributes,
            donor_group,
        }
    }

    /// The tables of each donor group.
    fn donor_groups(&self) -> Vec<Vec<usize>> {
        let groups = self.donor_group.iter().max().map_or(0, |g| g + 1);
        (0..groups)
            .map(|g| {
                (0..self.donor_group.len())
                    .filter(|t| self.donor_group[*t] == g)
                    .collect()
            })
            .collect()
    }
}

/// What [`fit`]'s bounds did: the cells they moved, and the most one count
/// moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    pub moved: usize,
    pub largest_move: f64,
}

/// Replaces each table's `values` by the consistent estimate of the
/// measured counts ([`consistent::reconcile`]) and states its error model
/// in `variances`. Samples are fitted over all tables; donors over the
/// tables that differ only in donor-level dimensions and those counted
/// one value per donor, `one_per_donor` (a donor has one sex, so donors by
/// sex add up to the donors; a donor with serum and stem cells counts in
/// both).
pub fn fit(tables: &mut [CatalogueTable], one_per_donor: &[String]) -> FitReport {
    // The tables of every donor, and those of the donors with a consent,
    // are fitted apart (see [`consented_workload`]).
    let mut families: Vec<Option<String>> = tables.iter().map(|t| t.consent.clone()).collect();
    families.sort();
    families.dedup();
    let mut report = FitReport {
        moved: 0,
        largest_move: 0.0,
    };
    for family in families {
        let at: Vec<usize> = (0..tables.len())
            .filter(|i| tables[*i].consent == family)
            .collect();
        let mut own: Vec<CatalogueTable> = at.iter().map(|i| tables[*i].clone()).collect();
        let r = fit_family(&mut own, one_per_donor);
        report.moved += r.moved;
        report.largest_move = report.largest_move.max(r.largest_move);
        for (i, t) in at.into_iter().zip(own) {
            tables[i] = t;
        }
    }
    report
}

/// [`fit`] for tables that count the same donors.
fn fit_family(tables: &mut [CatalogueTable], one_per_donor: &[String]) -> FitReport {
    let keys: Vec<Vec<usize>> = tables
        .iter()
        .map(|t| t.keys.iter().map(Vec::len).collect())
        .collect();
    let shapes: Vec<(&[String], &[usize])> = tables
        .iter()
        .zip(&keys)
        .map(|(t, k)| (t.dimensions.as_slice(), k.as_slice()))
        .collect();
    let lattice = Lattice::of(&shapes, one_per_donor);
    let shape = |t: usize, counts: &NoisyCounts| consistent::Shape {
        attributes: lattice.attributes[t].clone(),
        variance: counts.scale * counts.scale,
    };
    let donor_shapes: Vec<_> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| shape(i, &t.donors))
        .collect();
    let sample_shapes: Vec<_> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| shape(i, &t.samples))
        .collect();
    let measured: Vec<consistent::Pair> = tables
        .iter()
        .map(|t| consistent::Pair {
            donors: t.donors.measured.iter().map(|v| *v as f64).collect(),
            samples: t.samples.measured.iter().map(|v| *v as f64).collect(),
            samples_per_donor: t.samples_per_donor as f64,
        })
        .collect();
    let r = consistent::reconcile(
        &lattice.sizes,
        &donor_shapes,
        &sample_shapes,
        &measured,
        &lattice.donor_groups(),
    );
    let state = |residuals: &[(Vec<usize>, f64)]| -> Vec<ComponentVariance> {
        residuals
            .iter()
            .map(|(a, v)| ComponentVariance {
                dimensions: a.iter().map(|i| lattice.names[*i].clone()).collect(),
                variance: *v,
            })
            .collect()
    };
    for (i, t) in tables.iter_mut().enumerate() {
        t.donors.values = r.donors[i].clone();
        t.samples.values = r.samples[i].clone();
        t.donors.variances = state(&r.donor_residuals[i]);
        t.samples.variances = state(&r.sample_residuals[i]);
    }
    FitReport {
        moved: r.moved,
        largest_move: r.largest_move,
    }
}

/// The variance of a count from `counts` of `table` over the cells where
/// its `i`th dimension takes `chosen[i]` of its values.
fn variance_of(table: &CatalogueTable, counts: &NoisyCounts, chosen: &[usize]) -> f64 {
    let sizes: Vec<usize> = table.keys.iter().map(Vec::len).collect();
    consistent::variance(&sizes, chosen, |positions| {
        let wanted: BTreeSet<&str> = positions
            .iter()
            .map(|p| table.dimensions[*p].as_str())
            .collect();
        counts
            .variances
            .iter()
            .find(|c| {
                c.dimensions.len() == wanted.len()
                    && c.dimensions.iter().all(|d| wanted.contains(d.as_str()))
            })
            // A table published without its error model: its own noise on
            // every cell summed, as if unreconciled.
            .map_or_else(
                || {
                    let folded: usize = (0..sizes.len())
                        .filter(|p| !positions.contains(p))
                        .map(|p| sizes[p])
                        .product();
                    counts.scale * counts.scale * folded as f64
                },
                |c| c.variance,
            )
    })
}

/// A count worked out from a catalogue: the sum of its cells' estimates,
/// and the half-width of its 95% interval from the estimate's error model
/// (taken as normal).
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub halfwidth: f64,
    /// The variance the error model gives the value.
    pub variance: f64,
    /// The catalogue cells it adds up.
    pub cells: usize,
}

/// One row of an answer from a catalogue: the breakdown's key and each
/// measure asked (in the question's order).
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateRow {
    pub key: Vec<String>,
    pub measures: Vec<Estimate>,
}

/// A question answered from a catalogue: the table it came from (its
/// dimensions, and the consent of its donors: a consented table has the
/// dimensions of a table of every donor) and the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueAnswer {
    pub table: Vec<String>,
    pub consent: Option<String>,
    pub rows: Vec<EstimateRow>,
}

/// The standard normal's 97.5% quantile: two-sided 95% intervals.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Answers `query` from `catalogue` as post-processing, or says why it
/// cannot be: the question's filter must be a conjunction of conditions
/// each on one of the catalogue's dimensions (`=`/`IN` on codes, an age
/// range on whole ten-year bands or, failing that, on whole age ranges of
/// the Directory's (65 or older) or on whole five-year bands (45 to 69), a
/// sampling-year range within the years, a
/// diagnosis prefix that is one of the listed categories), its measures
/// donors and samples, and the catalogue must hold a table over exactly the
/// dimensions it filters or breaks down by. A donor count over several
/// cells of a sample-level dimension (sample type IN (…), an age range of
/// several bands) would count a donor once per cell: such questions are
/// not answered from the catalogue, unless the catalogue counts each donor
/// in one value of that dimension (`one_per_donor`).
pub fn answer(catalogue: &Catalogue, query: &FeasibilityQuery) -> Result<CatalogueAnswer, Miss> {
    match answer_reading_ages(catalogue, query, Dimension::AgeBand) {
        // An age range that cuts a ten-year band may still be made of the
        // Directory's age ranges (65 or older: 65–79 and 80+), or of
        // five-year bands (45 to 69). Where no table of either fits, the
        // cut band is the reason.
        Err(cut) if cut.code == "cuts_band" => {
            let unread = |a: &Result<CatalogueAnswer, Miss>| matches!(a, Err(m) if ["cuts_band", "no_table"].contains(&m.code));
            let ranges = answer_reading_ages(catalogue, query, Dimension::AgeRange);
            if !unread(&ranges) {
                return ranges;
            }
            let has_fives = catalogue
                .tables
                .iter()
                .any(|t| t.dimensions.iter().any(|d| d == Dimension::AgeBand5.name()));
            // Why not, in the finest bands the catalogue has.
            match has_fives {
                true => answer_reading_ages(catalogue, query, Dimension::AgeBand5),
                false => Err(cut),
            }
        }
        other => other,
    }
}

/// [`answer`], reading an age range as ten-year bands (`AgeBand`), as
/// five-year bands (`AgeBand5`) or as the Directory's age ranges
/// (`AgeRange`).
fn answer_reading_ages(
    catalogue: &Catalogue,
    query: &FeasibilityQuery,
    ages: Dimension,
) -> Result<CatalogueAnswer, Miss> {
    for m in &query.measures {
        if !matches!(m, Measure::Donors | Measure::Samples) {
            return Err(miss(
                "measures",
                "the catalogue counts donors and samples only; sums and averages are answered fresh",
            ));
        }
    }
    let mut selected: BTreeMap<Dimension, BTreeSet<String>> = BTreeMap::new();
    let mut conditions: Vec<&Filter> = Vec::new();
    conjuncts(&query.filter, &mut conditions);
    // The donors counted: every donor, or those with the consent asked.
    let mut consent = None;
    for condition in conditions {
        if let Some(c) = consent_of(condition) {
            consent = Some(c);
            continue;
        }
        let (dimension, keys) = keys_of(condition, catalogue, ages)?;
        let slot = selected.entry(dimension).or_insert_with(|| keys.clone());
        *slot = slot.intersection(&keys).cloned().collect();
    }
    let mut group_by = Vec::new();
    for name in &query.group_by {
        let d = Dimension::from_name(name)
            .ok_or_else(|| miss("no_table", format!("the catalogue has no dimension {name}")))?;
        group_by.push(d);
    }
    let wanted: BTreeSet<&str> = selected.keys().chain(&group_by).map(|d| d.name()).collect();
    let table = catalogue
        .tables
        .iter()
        .filter(|t| t.consent.as_deref() == consent)
        .find(|t| {
            t.dimensions.len() == wanted.len()
                && t.dimensions.iter().all(|d| wanted.contains(d.as_str()))
        })
        .ok_or_else(|| {
            miss(
                "no_table",
                format!(
                    "the catalogue has no table{} over {}",
                    consent.map_or(String::new(), |c| format!(
                        " of the donors with {c} consent"
                    )),
                    if wanted.is_empty() {
                        "no dimension".to_owned()
                    } else {
                        wanted.iter().copied().collect::<Vec<_>>().join(" × ")
                    }
                ),
            )
        })?;
    let dimension_of =
        |name: &str| Dimension::from_name(name).expect("a catalogue's dimensions are dimensions");
    // Per table dimension: the keys a row of the answer adds up.
    let asks_donors = query.measures.iter().any(|m| matches!(m, Measure::Donors));
    let several_per_donor = sample_level(&table.dimensions, &catalogue.one_per_donor);
    for (name, keys) in table.dimensions.iter().zip(&table.keys) {
        let d = dimension_of(name);
        if group_by.contains(&d) {
            continue;
        }
        let chosen = selected.get(&d).map_or(keys.len(), BTreeSet::len);
        if asks_donors && several_per_donor.contains(&name.as_str()) && chosen > 1 {
            return Err(miss(
                "donors_over_cells",
                format!(
                    "a donor count over several values of {name} would count a donor once for each: it is answered fresh"
                ),
            ));
        }
    }
    // The rows: every key of the breakdown, in the table's key order.
    let strides: Vec<usize> = (0..table.keys.len())
        .map(|i| table.keys[i + 1..].iter().map(Vec::len).product())
        .collect();
    let breakdown: Vec<Vec<String>> = group_by.iter().fold(vec![Vec::new()], |acc, d| {
        let position = table
            .dimensions
            .iter()
            .position(|n| n == d.name())
            .expect("in the table");
        acc.iter()
            .flat_map(|prefix| {
                table.keys[position].iter().map(move |k| {
                    let mut key = prefix.clone();
                    key.push(k.clone());
                    key
                })
            })
            .collect()
    });
    // Every row adds up one value of each breakdown and the same values of
    // the rest, so every row has the same variance: worked out once.
    let chosen: Vec<usize> = table
        .dimensions
        .iter()
        .zip(&table.keys)
        .map(|(name, keys)| {
            let d = dimension_of(name);
            if group_by.contains(&d) {
                1
            } else {
                keys.iter()
                    .filter(|k| selected.get(&d).is_none_or(|s| s.contains(*k)))
                    .count()
            }
        })
        .collect();
    let variances: Vec<f64> = query
        .measures
        .iter()
        .map(|m| variance_of(table, counts_of(table, m), &chosen))
        .collect();
    let mut rows = Vec::with_capacity(breakdown.len());
    for key in breakdown {
        // The cells of this row: per table dimension, the key indices.
        let per_dimension: Vec<Vec<usize>> = table
            .dimensions
            .iter()
            .zip(&table.keys)
            .map(|(name, keys)| {
                let d = dimension_of(name);
                if let Some(g) = group_by.iter().position(|x| *x == d) {
                    // A key the filter leaves out holds nothing: the row
                    // is an exact zero, known from the question alone.
                    match selected.get(&d).is_none_or(|s| s.contains(&key[g])) {
                        true => vec![keys.iter().position(|k| *k == key[g]).expect("a key")],
                        false => Vec::new(),
                    }
                } else {
                    (0..keys.len())
                        .filter(|i| selected.get(&d).is_none_or(|s| s.contains(&keys[*i])))
                        .collect()
                }
            })
            .collect();
        let cells: Vec<usize> =
            per_dimension
                .iter()
                .zip(&strides)
                .fold(vec![0], |acc, (indices, stride)| {
                    acc.iter()
                        .flat_map(|base| indices.iter().map(move |i| base + i * stride))
                        .collect()
                });
        let measures = query
            .measures
            .iter()
            .zip(&variances)
            .map(|(m, &variance)| {
                let counts = counts_of(table, m);
                let variance = if cells.is_empty() { 0.0 } else { variance };
                Estimate {
                    value: cells.iter().map(|c| counts.values[*c]).sum(),
                    halfwidth: Z95 * variance.sqrt(),
                    variance,
                    cells: cells.len(),
                }
            })
            .collect();
        rows.push(EstimateRow { key, measures });
    }
    Ok(CatalogueAnswer {
        table: table.dimensions.clone(),
        consent: table.consent.clone(),
        rows,
    })
}

/// The vector of `table` a measure counts from.
fn counts_of<'t>(table: &'t CatalogueTable, measure: &Measure) -> &'t NoisyCounts {
    match measure {
        Measure::Donors => &table.donors,
        _ => &table.samples,
    }
}

/// The table `answer` came from, and each measure's noise in it: the
/// standard deviation the estimate's error model gives a row, charged
/// nothing.
fn noise_of<'c>(
    catalogue: &'c Catalogue,
    query: &FeasibilityQuery,
    answer: &CatalogueAnswer,
) -> (&'c CatalogueTable, Vec<MeasureNoise>) {
    let table = catalogue
        .tables
        .iter()
        .find(|t| t.dimensions == answer.table && t.consent == answer.consent)
        .expect("the answer's table is the catalogue's");
    // Every row sums the same number of values of each dimension, so the
    // first row's variance is every row's, but for the rows of keys the
    // filter leaves out, which are exact zeros.
    let first = answer
        .rows
        .iter()
        .find(|r| r.measures.iter().all(|e| e.cells > 0))
        .or(answer.rows.first());
    let measures = query
        .measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let counts = counts_of(table, m);
            MeasureNoise {
                measure: m.clone(),
                label: m.label(),
                mechanism: Mechanism::DiscreteGaussian,
                sensitivity: counts.sensitivity,
                scale: first.map_or(counts.scale, |r| r.measures[i].variance.sqrt()),
                loss: 0.0,
                rounded_to: 1,
            }
        })
        .collect();
    (table, measures)
}

/// `answer` to `query` as a site's result: the catalogue's dataset version,
/// charged nothing, each value's 95% interval from its measure's noise.
pub fn to_result(
    catalogue: &Catalogue,
    query: &FeasibilityQuery,
    answer: &CatalogueAnswer,
) -> QueryResult {
    let (table, measures) = noise_of(catalogue, query, answer);
    let donors = query.measures.iter().position(|m| *m == Measure::Donors);
    let samples = query.measures.iter().position(|m| *m == Measure::Samples);
    QueryResult {
        site_id: catalogue.site.clone(),
        dataset_version: catalogue.dataset_version.clone(),
        query: query.clone(),
        accounting: Accounting::Zcdp,
        charged: 0.0,
        loss: 0.0,
        approx_dp: None,
        remembered: false,
        measures,
        dimensions: query.group_by.clone(),
        rows: answer
            .rows
            .iter()
            .map(|r| ResultRow {
                key: r.key.clone(),
                values: {
                    let mut values: Vec<f64> = r.measures.iter().map(|e| e.value.round()).collect();
                    if let (Some(d), Some(s)) = (donors, samples) {
                        let (whole_d, whole_s) =
                            whole_counts(r.measures[d].value, r.measures[s].value);
                        values[d] = whole_d as f64;
                        values[s] =
                            (whole_s as f64).min(values[d] * table.samples_per_donor as f64);
                    }
                    r.measures
                        .iter()
                        .zip(values)
                        .map(|(e, v)| NoisyValue {
                            value: v,
                            interval: [v - e.halfwidth, v + e.halfwidth],
                        })
                        .collect()
                },
            })
            .collect(),
        source: Source::Catalogue,
        steward_note: None,
    }
}

/// A cell's estimated donors and samples in whole numbers: rounded, with
/// the donors no more than the samples, and a donor wherever there is a
/// sample.
pub fn whole_counts(donors: f64, samples: f64) -> (i64, i64) {
    let samples = samples.round() as i64;
    let mut donors = (donors.round() as i64).min(samples);
    if samples >= 1 && donors < 1 {
        donors = 1;
    }
    (donors, samples)
}

/// What answering `query` from the catalogue would give, as a site's
/// preview: nothing charged, each measure's noise as the estimate's error
/// model gives it.
pub fn to_preview(
    catalogue: &Catalogue,
    query: &FeasibilityQuery,
    answer: &CatalogueAnswer,
) -> Preview {
    let (table, measures) = noise_of(catalogue, query, answer);
    Preview {
        site_id: catalogue.site.clone(),
        accounting: Accounting::Zcdp,
        query: query.clone(),
        loss: 0.0,
        approx_dp: None,
        needs_approval: false,
        cells_per_donor: table.cells_per_donor,
        measures: measures
            .iter()
            .map(|m| MeasurePreview {
                measure: m.measure.clone(),
                label: m.label.clone(),
                mechanism: m.mechanism,
                sensitivity: m.sensitivity,
                scale: m.scale,
                loss: 0.0,
                halfwidth: Some(Z95 * m.scale),
            })
            .collect(),
    }
}

/// The conditions a filter ANDs together, however its ANDs nest.
fn conjuncts<'a>(filter: &'a Filter, out: &mut Vec<&'a Filter>) {
    match filter {
        Filter::True => {}
        Filter::And(all) => all.iter().for_each(|f| conjuncts(f, out)),
        other => out.push(other),
    }
}

/// The dimension one condition is on, and the keys of it that the
/// condition keeps; an error says why it cannot be read from the
/// catalogue.
fn keys_of(
    condition: &Filter,
    catalogue: &Catalogue,
    ages: Dimension,
) -> Result<(Dimension, BTreeSet<String>), Miss> {
    let keys_in = |d: Dimension| -> Vec<String> {
        catalogue
            .tables
            .iter()
            .find_map(|t| {
                t.dimensions
                    .iter()
                    .position(|n| n == d.name())
                    .map(|i| t.keys[i].clone())
            })
            .unwrap_or_default()
    };
    let code_dimension = |column: &str| {
        [
            Dimension::Sex,
            Dimension::SampleType,
            Dimension::MaterialSubtype,
            Dimension::StorageTemperature,
        ]
        .into_iter()
        .find(|d| d.name() == column)
    };
    // A dimension no table holds cannot be read at all.
    let column = match condition {
        Filter::In { column, .. }
        | Filter::Range { column, .. }
        | Filter::Prefix { column, .. } => Some(column.as_str()),
        _ => None,
    };
    let dimension = match column {
        Some("age_at_sampling") => Some(ages),
        Some("sampling_year") => Some(Dimension::SamplingYear),
        Some("diagnosis") => Some(Dimension::DiagnosisCategory),
        Some(c) => code_dimension(c),
        None => None,
    };
    if let Some(d) = dimension
        && keys_in(d).is_empty()
    {
        return Err(miss(
            "no_table",
            format!(
                "the catalogue has no table over {}; it is answered fresh",
                d.name()
            ),
        ));
    }
    match condition {
        Filter::In { column, values } if code_dimension(column).is_some() => {
            let d = code_dimension(column).expect("checked");
            let wanted: BTreeSet<String> = values
                .iter()
                .filter_map(|v| match v {
                    Value::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            Ok((
                d,
                keys_in(d)
                    .into_iter()
                    .filter(|k| wanted.contains(k))
                    .collect(),
            ))
        }
        Filter::Range { column, min, max }
            if column == "age_at_sampling" && ages == Dimension::AgeRange =>
        {
            let lo = min.unwrap_or(0).max(0);
            let ranges = crate::dimensions::AGE_RANGES;
            let starts = |age: i64| ranges.iter().any(|(_, from)| *from == age);
            let top = i64::from(bonebank_schemas::surface::AGE_TOP_CODE);
            if !(starts(lo) && max.is_none_or(|m| m >= top || starts(m + 1))) {
                return Err(miss(
                    "cuts_band",
                    "an age range that cuts a ten-year band, and is not made of the Directory's age ranges, is answered fresh",
                ));
            }
            let keys = ranges
                .iter()
                .filter(|(_, from)| *from >= lo && max.is_none_or(|m| *from <= m))
                .map(|(name, _)| (*name).to_owned())
                .collect();
            Ok((Dimension::AgeRange, keys))
        }
        Filter::Range { column, min, max } if column == "age_at_sampling" => {
            // Ten-year bands, or five-year ones; both end at the top code.
            let (width, bands): (i64, &[&str]) = match ages {
                Dimension::AgeBand5 => (5, &crate::dimensions::AGE_BANDS_5),
                _ => (10, &crate::dimensions::AGE_BANDS),
            };
            let top = i64::from(bonebank_schemas::surface::AGE_TOP_CODE);
            let lo = min.unwrap_or(0).max(0);
            let whole = lo % width == 0 && max.is_none_or(|m| m >= top || m % width == width - 1);
            if !whole || lo > top {
                return Err(miss(
                    "cuts_band",
                    match ages {
                        Dimension::AgeBand5 => {
                            "an age range that cuts a five-year band is answered fresh"
                        }
                        _ => "an age range that cuts a ten-year band is answered fresh",
                    },
                ));
            }
            let keys = bands
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    let start = width * *i as i64;
                    start >= lo && max.is_none_or(|m| start <= m)
                })
                .map(|(_, b)| (*b).to_owned())
                .collect();
            Ok((ages, keys))
        }
        Filter::Range { column, min, max } if column == "sampling_year" => {
            let years = keys_in(Dimension::SamplingYear);
            let first: i64 = years.first().and_then(|y| y.parse().ok()).unwrap_or(0);
            let last: i64 = years.last().and_then(|y| y.parse().ok()).unwrap_or(-1);
            if min.is_none_or(|m| m < first) || max.is_none_or(|m| m > last) {
                return Err(miss(
                    "years_beyond",
                    format!(
                        "the catalogue counts sampling years {first} to {last}; a range beyond them is answered fresh"
                    ),
                ));
            }
            Ok((
                Dimension::SamplingYear,
                years
                    .into_iter()
                    .filter(|y| {
                        y.parse::<i64>()
                            .is_ok_and(|y| min.is_none_or(|m| y >= m) && max.is_none_or(|m| y <= m))
                    })
                    .collect(),
            ))
        }
        Filter::Prefix { column, prefix } if column == "diagnosis" => {
            let categories = keys_in(Dimension::DiagnosisCategory);
            if prefix.len() == 3 && categories.iter().any(|c| c == prefix) {
                Ok((Dimension::DiagnosisCategory, [prefix.clone()].into()))
            } else {
                Err(miss(
                    "category",
                    format!(
                        "the catalogue counts the listed three-character ICD-10 categories; {prefix} is answered fresh"
                    ),
                ))
            }
        }
        other => Err(miss(
            "condition",
            format!(
                "the catalogue cannot read the condition {}; it is answered fresh",
                other.to_sql(false)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample count is planned at ±40 while one donor adds at most five
    /// samples to a cell, and at the donor target times what one donor
    /// adds past that; so a site of repeat donors splits its loss as a
    /// site of five samples per donor does, and its donor counts keep
    /// their share.
    #[test]
    fn a_sample_count_is_planned_in_the_donors_it_stands_for() {
        assert_eq!(samples_target(1.0, 3.0), SAMPLES_TARGET);
        assert_eq!(samples_target(2.0, 10.0), SAMPLES_TARGET);
        assert!((samples_target(2.0, 100.0) - 50.0 * DONORS_TARGET).abs() < 1e-9);
        let tables: Vec<(Vec<String>, Vec<usize>)> = vec![
            (vec![], vec![]),
            (vec!["sex".into()], vec![2]),
            (vec!["sample_type".into()], vec![19]),
            (vec!["sex".into(), "sample_type".into()], vec![2, 19]),
        ];
        let donors = [1.0, 1.0, 2.0, 2.0];
        let split = |per_donor: f64| {
            let samples: Vec<f64> = donors.iter().map(|d| d * per_donor).collect();
            split_for_fit(&tables, &[], &donors, &samples, 4.0)
        };
        let (five, ten, fifty) = (split(5.0), split(10.0), split(50.0));
        for ((a, b), c) in five.iter().zip(&ten).zip(&fifty) {
            assert!(
                (a - b).abs() < 1e-6 && (a - c).abs() < 1e-6,
                "{five:?} {ten:?} {fifty:?}"
            );
        }
        let donors_share: f64 = five.iter().step_by(2).sum();
        assert!(
            donors_share > 0.3 * 4.0,
            "donors keep their share: {five:?}"
        );
    }

    #[test]
    fn the_workload_holds_every_subset_of_the_directorys_four_and_the_pairs() {
        let w = workload();
        assert_eq!(w.len(), 25);
        // Five-year bands alone and by sex, for age ranges that cut the
        // ten-year bands.
        use Dimension::{AgeBand5, Sex};
        for t in [vec![AgeBand5], vec![Sex, AgeBand5]] {
            assert!(w.contains(&t), "{t:?} is missing");
        }
        assert!(w[0].is_empty(), "the total comes first");
        let four = [
            Dimension::Sex,
            Dimension::AgeBand,
            Dimension::DiagnosisCategory,
            Dimension::SampleType,
        ];
        for mask in 0u32..16 {
            let subset: Vec<Dimension> = four
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, d)| *d)
                .collect();
            assert!(
                w.iter()
                    .any(|t| t.len() == subset.len() && subset.iter().all(|d| t.contains(d))),
                "{subset:?} is missing"
            );
        }
        let distinct: std::collections::BTreeSet<_> = w.iter().map(|t| format!("{t:?}")).collect();
        assert_eq!(distinct.len(), w.len(), "no table twice");
    }

    #[test]
    fn a_tables_cells_per_donor_are_its_widest_sample_level_bound() {
        let bound = |d: Dimension| match d {
            Dimension::SampleType => 7,
            Dimension::AgeBand => 3,
            _ => 2,
        };
        assert_eq!(cells_per_donor(&[], bound), 1);
        assert_eq!(cells_per_donor(&[Dimension::Sex], bound), 1);
        assert_eq!(
            cells_per_donor(&[Dimension::Sex, Dimension::AgeBand], bound),
            3
        );
        assert_eq!(
            cells_per_donor(
                &[
                    Dimension::AgeBand,
                    Dimension::SampleType,
                    Dimension::DiagnosisCategory
                ],
                bound
            ),
            7
        );
    }

    #[test]
    fn the_loss_goes_by_sensitivity_over_target_and_adds_up() {
        let shares = split_loss(2.0, &[1.0, 2.0, 10.0], &[8.0, 8.0, 40.0]);
        assert!((shares.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        // Weights 1/8, 2/8, 10/40 = 0.125, 0.25, 0.25.
        assert!((shares[0] - 2.0 * 0.2).abs() < 1e-12, "{shares:?}");
        assert!((shares[1] - 2.0 * 0.4).abs() < 1e-12);
        assert!((shares[2] - 2.0 * 0.4).abs() < 1e-12);
        // The split minimises Σ Δ²/(ρ t²): moving loss either way costs.
        let cost = |r: &[f64]| -> f64 {
            [(1.0, 8.0), (2.0, 8.0), (10.0, 40.0)]
                .iter()
                .zip(r)
                .map(|((d, t), r): (&(f64, f64), &f64)| d * d / (r * t * t))
                .sum()
        };
        let best = cost(&shares);
        for (i, j) in [(0, 1), (1, 2), (2, 0)] {
            let mut moved = shares.clone();
            moved[i] += 0.01;
            moved[j] -= 0.01;
            assert!(cost(&moved) > best);
        }
    }

    use bonebank_schemas::wire::ApproxDp;

    /// A catalogue whose every cell's count is its index times 10 (donors)
    /// or 100 (samples), with σ 2 and 20.
    fn catalogue(tables: &[(&[&str], &[&[&str]])]) -> Catalogue {
        Catalogue {
            site: "DE-LUE".into(),
            dataset_version: "v".into(),
            measured_at: "2026-12-07T00:00:00Z".into(),
            loss: 2.0,
            cell_bounds_loss: 0.0,
            approx_dp: ApproxDp {
                epsilon: 1.0,
                delta: 1e-6,
            },
            mechanism: Mechanism::DiscreteGaussian,
            coverage: 0.95,
            role_filters: [(
                "industry".to_owned(),
                "consent_commercial = true".to_owned(),
            )]
            .into(),
            caller_rules: Vec::new(),
            one_per_donor: Vec::new(),
            tables: tables
                .iter()
                .map(|(dims, keys)| {
                    let cells: usize = keys.iter().map(|k| k.len()).product();
                    CatalogueTable {
                        dimensions: dims.iter().map(|d| (*d).to_owned()).collect(),
                        keys: keys
                            .iter()
                            .map(|k| k.iter().map(|v| (*v).to_owned()).collect())
                            .collect(),
                        cells_per_donor: 3,
                        samples_per_donor: 5,
                        consent: None,
                        donors: NoisyCounts {
                            values: (0..cells).map(|c| 10.0 * c as f64).collect(),
                            measured: (0..cells as i64).map(|c| 10 * c).collect(),
                            variances: Vec::new(),
                            sensitivity: 1.7,
                            scale: 2.0,
                            loss: 0.1,
                        },
                        samples: NoisyCounts {
                            values: (0..cells).map(|c| 100.0 * c as f64).collect(),
                            measured: (0..cells as i64).map(|c| 100 * c).collect(),
                            variances: Vec::new(),
                            sensitivity: 8.5,
                            scale: 20.0,
                            loss: 0.1,
                        },
                    }
                })
                .collect(),
        }
    }

    const SEXES: &[&str] = &["Female", "Male"];
    const TYPES: &[&str] = &["Serum", "StemCells", "Plasma"];

    fn example() -> Catalogue {
        let bands: Vec<&str> = crate::dimensions::AGE_BANDS.to_vec();
        let bands: &'static [&'static str] = Box::leak(bands.into_boxed_slice());
        catalogue(&[
            (&[], &[]),
            (&["sex"], &[SEXES]),
            (&["sample_type"], &[TYPES]),
            (&["sex", "sample_type"], &[SEXES, TYPES]),
            (&["age_band"], &[bands]),
        ])
    }

    fn ask(sql: &str) -> Result<CatalogueAnswer, String> {
        let q = crate::sql::parse(sql).unwrap();
        answer(&example(), &q).map_err(String::from)
    }

    #[test]
    fn a_question_within_a_table_adds_up_its_cells_with_their_noise() {
        let a = ask("SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Male'").unwrap();
        assert_eq!(a.table, ["sex"]);
        assert_eq!(a.rows[0].measures[0].value, 10.0);
        assert!((a.rows[0].measures[0].halfwidth - Z95 * 2.0).abs() < 1e-12);
        let a =
            ask("SELECT COUNT(*) FROM samples WHERE sample_type IN ('Serum', 'Plasma')").unwrap();
        // Serum is cell 0 (0 samples), Plasma cell 2.
        assert_eq!(a.rows[0].measures[0].value, 200.0);
        assert_eq!(a.rows[0].measures[0].cells, 2);
        assert!((a.rows[0].measures[0].halfwidth - Z95 * 20.0 * 2f64.sqrt()).abs() < 1e-9);
        // Filter on one dimension, broken down by another: the right cells
        // of the two-way table (Male is the second sex, so cells 3..6).
        let a = ask(
            "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Male' GROUP BY sample_type",
        )
        .unwrap();
        assert_eq!(a.table, ["sex", "sample_type"]);
        let got: Vec<(String, f64, f64)> = a
            .rows
            .iter()
            .map(|r| (r.key[0].clone(), r.measures[0].value, r.measures[1].value))
            .collect();
        assert_eq!(
            got,
            [
                ("Serum".to_owned(), 30.0, 300.0),
                ("StemCells".to_owned(), 40.0, 400.0),
                ("Plasma".to_owned(), 50.0, 500.0)
            ]
        );
        // No condition: the total.
        let a = ask("SELECT COUNT(DISTINCT donor_id) FROM samples").unwrap();
        assert!(a.table.is_empty());
    }

    #[test]
    fn a_donor_count_over_several_cells_of_a_sample_level_dimension_is_never_summed() {
        // A donor with serum and plasma is in both cells: summing them
        // would count that donor twice.
        let refused = ask(
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'Plasma')",
        )
        .unwrap_err();
        assert!(refused.contains("count a donor once for each"), "{refused}");
        let refused = ask(
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling BETWEEN 50 AND 69",
        )
        .unwrap_err();
        assert!(refused.contains("age_band"), "{refused}");
        // Each reason has its stable code, for the app's words.
        let code = |sql: &str| {
            answer(&example(), &crate::sql::parse(sql).unwrap())
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(
                "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'Plasma')"
            ),
            "donors_over_cells"
        );
        assert_eq!(
            code("SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69"),
            "cuts_band"
        );
        assert_eq!(
            code("SELECT SUM(aliquots_available) FROM samples"),
            "measures"
        );
        // Samples add up; and sex, one per donor, adds up for donors too.
        assert!(
            ask("SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 50 AND 69").is_ok()
        );
        let a = ask("SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex IN ('Female', 'Male')")
            .unwrap();
        assert_eq!(a.rows[0].measures[0].value, 10.0);
        assert_eq!(a.rows[0].measures[0].cells, 2);
    }

    /// Where the site counts each donor in one age band only (its donors
    /// have one), donor counts add up over bands as over sex; sample types
    /// still do not, and a catalogue that does not say so refuses both.
    #[test]
    fn donors_add_up_over_a_dimension_counted_one_value_per_donor() {
        let sql =
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling BETWEEN 50 AND 69";
        let q = crate::sql::parse(sql).unwrap();
        let mut c = example();
        assert_eq!(answer(&c, &q).unwrap_err().code, "donors_over_cells");
        c.one_per_donor = vec!["age_band".into()];
        let a = answer(&c, &q).unwrap();
        let bands = crate::dimensions::AGE_BANDS;
        let at = |b: &str| bands.iter().position(|x| *x == b).unwrap() as f64;
        // The 50s and 60s cells of the age-band table, 10 donors per index.
        assert_eq!(
            a.rows[0].measures[0].value,
            10.0 * (at("50-59") + at("60-69"))
        );
        assert_eq!(a.rows[0].measures[0].cells, 2);
        assert!((a.rows[0].measures[0].halfwidth - Z95 * 2.0 * 2f64.sqrt()).abs() < 1e-9);
        let types = crate::sql::parse(
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'Plasma')",
        )
        .unwrap();
        assert_eq!(answer(&c, &types).unwrap_err().code, "donors_over_cells");
    }

    /// A question that asks for commercial consent (as a site asks every
    /// question of an industry partner) is answered from the tables of
    /// the donors with it, and only from them; any other consent
    /// condition is not read. The two families are fitted apart.
    #[test]
    fn a_question_of_consented_donors_is_answered_from_their_tables_only() {
        let mut c = example();
        let every = c.tables.clone();
        // The consented tables of the total and of sex: their cells hold
        // 1000 more donors than the index says, so an answer shows which
        // table it came from.
        for t in every
            .iter()
            .filter(|t| t.dimensions.is_empty() || t.dimensions == ["sex"])
        {
            let mut t = t.clone();
            t.consent = Some("commercial".into());
            for v in &mut t.donors.values {
                *v += 1000.0;
            }
            for v in &mut t.donors.measured {
                *v += 1000;
            }
            // Its own bounds, as the node measures them per table.
            t.donors.sensitivity *= 2.0;
            t.cells_per_donor += 1;
            c.tables.push(t);
        }
        let ask = |sql: &str| answer(&c, &crate::sql::parse(sql).unwrap());
        let male = "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Male'";
        assert_eq!(ask(male).unwrap().rows[0].measures[0].value, 10.0);
        let consented = format!("{male} AND consent_commercial = true");
        let a = ask(&consented).unwrap();
        assert_eq!(a.rows[0].measures[0].value, 1010.0);
        assert_eq!(a.table, ["sex"]);
        // The preview and the result state the consented table's noise,
        // not that of the table of every donor over the same dimensions.
        let q = crate::sql::parse(&consented).unwrap();
        let of = |consent: Option<&str>| {
            c.tables
                .iter()
                .find(|t| t.dimensions == ["sex"] && t.consent.as_deref() == consent)
                .unwrap()
        };
        let preview = to_preview(&c, &q, &a);
        assert_eq!(
            preview.cells_per_donor,
            of(Some("commercial")).cells_per_donor
        );
        assert_ne!(preview.cells_per_donor, of(None).cells_per_donor);
        assert_eq!(
            preview.measures[0].sensitivity,
            of(Some("commercial")).donors.sensitivity
        );
        assert_eq!(
            to_result(&c, &q, &a).measures[0].sensitivity,
            of(Some("commercial")).donors.sensitivity
        );
        let total =
            ask("SELECT COUNT(DISTINCT donor_id) FROM samples WHERE consent_commercial = true")
                .unwrap();
        assert_eq!(total.rows[0].measures[0].value, 1000.0);
        // No consented table over sample type: never the table of every
        // donor instead.
        let e = ask("SELECT COUNT(*) FROM samples WHERE sample_type = 'Serum' AND consent_commercial = true")
            .unwrap_err();
        assert_eq!(e.code, "no_table");
        assert!(e.reason.contains("commercial consent"), "{}", e.reason);
        for other in [
            "SELECT COUNT(*) FROM samples WHERE consent_commercial = false",
            "SELECT COUNT(*) FROM samples WHERE consent_genetic = true",
            "SELECT COUNT(*) FROM samples WHERE consent_commercial = true AND consent_genetic = true",
        ] {
            assert_eq!(ask(other).unwrap_err().code, "condition", "{other}");
        }
        // Fitted together, each family comes out as it does fitted alone.
        let mut all = c.tables.clone();
        fit(&mut all, &[]);
        let (mut alone_every, mut alone_consented): (Vec<_>, Vec<_>) =
            c.tables.iter().cloned().partition(|t| t.consent.is_none());
        fit(&mut alone_every, &[]);
        fit(&mut alone_consented, &[]);
        let (fitted_every, fitted_consented): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|t| t.consent.is_none());
        assert_eq!(fitted_every, alone_every);
        assert_eq!(fitted_consented, alone_consented);
        assert!(fitted_consented[0].donors.values[0] > 900.0);
    }

    /// An age range that cuts a ten-year band but is made of the
    /// Directory's age ranges (65 or older: 65–79 and 80+) is read from
    /// the tables over those ranges; one made of neither is not read. Its
    /// donors add up over the ranges only where the catalogue counts one
    /// range per donor.
    #[test]
    fn an_age_range_of_the_directorys_ranges_is_read_from_their_tables() {
        let ranges: Vec<&str> = crate::dimensions::AGE_RANGES
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let ranges: &'static [&'static str] = Box::leak(ranges.into_boxed_slice());
        let bands: Vec<&str> = crate::dimensions::AGE_BANDS.to_vec();
        let bands: &'static [&'static str] = Box::leak(bands.into_boxed_slice());
        let mut c = catalogue(&[
            (&[], &[]),
            (&["sex"], &[SEXES]),
            (&["age_band"], &[bands]),
            (&["age_range"], &[ranges]),
        ]);
        let ask = |c: &Catalogue, sql: &str| answer(c, &crate::sql::parse(sql).unwrap());
        let samples = "SELECT COUNT(*) FROM samples WHERE age_at_sampling >= 65";
        let a = ask(&c, samples).unwrap();
        assert_eq!(a.table, ["age_range"]);
        // 65–79 and 80+ are the last two of eight ranges: cells 6 and 7.
        assert_eq!(a.rows[0].measures[0].value, 100.0 * (6.0 + 7.0));
        assert_eq!(a.rows[0].measures[0].cells, 2);
        let middle = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 64",
        )
        .unwrap();
        assert_eq!(middle.rows[0].measures[0].value, 500.0);
        // Whole ten-year bands are still read as bands.
        let fifties = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 50 AND 59",
        )
        .unwrap();
        assert_eq!(fifties.table, ["age_band"]);
        for cut in [
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling >= 55",
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 65 AND 70",
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 80 AND 84",
            "SELECT COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling >= 65",
        ] {
            assert_eq!(ask(&c, cut).unwrap_err().code, "cuts_band", "{cut}");
        }
        let donors = "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling >= 65";
        assert_eq!(ask(&c, donors).unwrap_err().code, "donors_over_cells");
        c.one_per_donor = vec!["age_range".into()];
        assert_eq!(ask(&c, donors).unwrap().rows[0].measures[0].value, 130.0);
    }

    /// An age range that cuts a ten-year band but is made of five-year
    /// bands (45 to 69) is read from the tables over five-year bands, after
    /// the Directory's ranges; one that cuts a five-year band is not read,
    /// and says so. Its donors add up over the bands only where the
    /// catalogue counts one band per donor.
    #[test]
    fn an_age_range_of_five_year_bands_is_read_from_their_tables() {
        let leak =
            |v: Vec<&'static str>| -> &'static [&'static str] { Box::leak(v.into_boxed_slice()) };
        let ranges = leak(
            crate::dimensions::AGE_RANGES
                .iter()
                .map(|(n, _)| *n)
                .collect(),
        );
        let bands = leak(crate::dimensions::AGE_BANDS.to_vec());
        let fives = leak(crate::dimensions::AGE_BANDS_5.to_vec());
        let mut c = catalogue(&[
            (&[], &[]),
            (&["sex"], &[SEXES]),
            (&["age_band"], &[bands]),
            (&["age_range"], &[ranges]),
            (&["age_band_5"], &[fives]),
            (&["sex", "age_band_5"], &[SEXES, fives]),
        ]);
        let ask = |c: &Catalogue, sql: &str| answer(c, &crate::sql::parse(sql).unwrap());
        let a = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69",
        )
        .unwrap();
        assert_eq!(a.table, ["age_band_5"]);
        // 45–49 … 65–69 are bands 9 to 13.
        assert_eq!(
            a.rows[0].measures[0].value,
            100.0 * (9 + 10 + 11 + 12 + 13) as f64
        );
        assert_eq!(a.rows[0].measures[0].cells, 5);
        // From 85 on: 85–89 and the top-coded 90+.
        let old = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling >= 85",
        )
        .unwrap();
        assert_eq!(old.rows[0].measures[0].value, 100.0 * (17 + 18) as f64);
        // Whole ten-year bands are still read as bands, and whole
        // Directory ranges as ranges.
        let fifties = "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 50 AND 59";
        assert_eq!(ask(&c, fifties).unwrap().table, ["age_band"]);
        let aged = "SELECT COUNT(*) FROM samples WHERE age_at_sampling >= 65";
        assert_eq!(ask(&c, aged).unwrap().table, ["age_range"]);
        let women = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 55 AND 69",
        )
        .unwrap();
        assert_eq!(women.table, ["sex", "age_band_5"]);
        // A range that cuts a five-year band says so.
        let cut = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 47 AND 69",
        )
        .unwrap_err();
        assert_eq!(cut.code, "cuts_band");
        assert!(cut.reason.contains("five-year"), "{}", cut.reason);
        // No five-year table over sample type: there is none to read.
        let typed = "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69 AND sample_type = 'Serum'";
        assert_eq!(ask(&c, typed).unwrap_err().code, "no_table");
        let donors =
            "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69";
        assert_eq!(ask(&c, donors).unwrap_err().code, "donors_over_cells");
        c.one_per_donor = vec!["age_band_5".into()];
        assert_eq!(ask(&c, donors).unwrap().rows[0].measures[0].value, 550.0);
        // A catalogue without five-year tables gives the ten-year reason.
        c.tables
            .retain(|t| !t.dimensions.contains(&"age_band_5".to_owned()));
        let cut = ask(
            &c,
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69",
        )
        .unwrap_err();
        assert_eq!(cut.code, "cuts_band");
        assert!(cut.reason.contains("ten-year"), "{}", cut.reason);
    }

    /// A breakdown by a dimension the question also filters lists every
    /// key, as a fresh answer does, and the keys the filter leaves out are
    /// exact zeros: the question alone says they hold nothing.
    #[test]
    fn a_breakdown_by_a_filtered_dimension_holds_nothing_outside_the_filter() {
        let a = ask(
            "SELECT sample_type, COUNT(*) FROM samples WHERE sample_type IN ('Serum', 'Plasma') GROUP BY sample_type",
        )
        .unwrap();
        assert_eq!(a.rows.len(), TYPES.len());
        for (row, kept) in a.rows.iter().zip(TYPES) {
            assert_eq!(row.key, [*kept]);
        }
        // Plasma is cell 2 of sample type: 200 samples, with its noise.
        let plasma = &a.rows[2].measures[0];
        assert_eq!((plasma.value, plasma.cells), (200.0, 1));
        assert!(plasma.halfwidth > 0.0);
        let stem = &a.rows[1].measures[0];
        assert_eq!((stem.value, stem.halfwidth, stem.cells), (0.0, 0.0, 0));
        // The noise stated is that of a row the filter keeps.
        let q = crate::sql::parse(
            "SELECT sample_type, COUNT(*) FROM samples WHERE sample_type IN ('StemCells', 'Plasma') GROUP BY sample_type",
        )
        .unwrap();
        let a = answer(&example(), &q).unwrap();
        assert_eq!(a.rows[0].measures[0].cells, 0, "Serum is left out");
        let preview = to_preview(&example(), &q, &a);
        assert!(preview.measures[0].scale > 0.0);
        let result = to_result(&example(), &q, &a);
        assert_eq!(result.rows[0].values[0].interval, [0.0, 0.0]);
        assert_eq!(result.rows[2].values[0].value, 200.0);
    }

    #[test]
    fn conditions_are_read_however_their_ands_nest() {
        let flat = crate::sql::parse(
            "SELECT COUNT(*) FROM samples WHERE sex = 'Male' AND sample_type = 'Serum'",
        )
        .unwrap();
        let mut nested = flat.clone();
        nested.filter = Filter::And(vec![Filter::And(vec![flat.filter.clone()])]);
        assert_eq!(answer(&example(), &nested), answer(&example(), &flat));
        assert_eq!(
            answer(&example(), &flat).unwrap().rows[0].measures[0].value,
            300.0
        );
    }

    #[test]
    fn what_the_catalogue_cannot_read_is_answered_fresh() {
        for sql in [
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 55 AND 69",
            "SELECT SUM(aliquots_available) FROM samples",
            "SELECT COUNT(*) FROM samples WHERE consent_commercial = true",
            "SELECT COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling >= 50",
            "SELECT COUNT(*) FROM samples WHERE sampling_year BETWEEN 2015 AND 2020",
            "SELECT COUNT(*) FROM samples WHERE sex = 'Female' OR sample_type = 'Serum'",
        ] {
            assert!(ask(sql).is_err(), "{sql}");
        }
    }
}
