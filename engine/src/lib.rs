//! A site's data and the counting engine over it: the data directory with
//! its dataset versions ([`dataset`]), and exact, contribution-bounded
//! aggregates over the current version. This is the only place rows are
//! read; what leaves it are true per-cell aggregates, which the node's
//! privacy layer noises before anything else sees them. The node, the
//! evaluation and the benchmarks link it; it knows nothing of noise,
//! budgets or HTTP.

pub mod dataset;
mod error;
mod filter;
mod pass;
mod runner;
pub mod surface;

pub use error::{Error, Result};

/// The plan time an engine allows until told otherwise
/// ([`SurfaceEngine::with_plan_timeout`]); a node's `[limits]` set it.
pub const DEFAULT_PLAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

use bonebank_schemas::Filter;
use futures::future::BoxFuture;

pub use self::runner::SurfaceEngine;

/// Nanoseconds one step of a pass may take (see [`Plan::steps_per_row`]),
/// for the estimate a question is turned away by. The node benchmark's
/// flagship question (8 steps a row, 1M rows) takes 1.56 ms on 2 cores: 0.39
/// ns a step on one core. This is ten times that, so that the estimate is
/// above what a pass takes on a slower or busier machine too.
pub const NS_PER_STEP: f64 = 4.0;

/// One aggregate the engine computes per cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregate {
    /// Bounded rows: `COUNT(*)`.
    Samples,
    /// Distinct donors.
    Donors,
    /// Sum of a column, each value clamped to `[lo, hi]`.
    Sum { column: String, lo: i64, hi: i64 },
    /// Rows where a column has a value.
    Count { column: String },
}

impl Aggregate {
    /// How much one row can move this aggregate in one cell.
    pub fn per_row(&self) -> i64 {
        match self {
            Self::Samples | Self::Count { .. } => 1,
            Self::Donors => 0,
            Self::Sum { lo, hi, .. } => lo.abs().max(hi.abs()),
        }
    }

    /// The most one donor adds to one cell when each donor adds at most
    /// `max_samples` rows to a cell.
    pub fn per_cell(&self, max_samples: i64) -> i64 {
        match self {
            // A donor is counted at most once per cell.
            Self::Donors => 1,
            other => other.per_row() * max_samples,
        }
    }

    /// L1 sensitivity over all cells when each donor adds at most
    /// `max_samples` rows to a cell and touches at most `cells` cells: the
    /// most that removing one donor can change the vector of true values.
    pub fn sensitivity(&self, max_samples: i64, cells: i64) -> i64 {
        self.per_cell(max_samples) * cells
    }

    /// What one donor's rows in one cell add to this aggregate, bounded:
    /// `rows` rows, of which `value` is their sum (clamped per row) or count
    /// of values. At most [`Aggregate::per_cell`] in absolute value.
    pub fn bounded(&self, rows: i64, value: i64, max_samples: i64) -> i64 {
        match self {
            Self::Samples => rows.min(max_samples),
            Self::Donors => 1,
            Self::Sum { lo, hi, .. } => value.clamp(lo.min(&0) * max_samples, hi * max_samples),
            Self::Count { .. } => value.min(max_samples),
        }
    }
}

/// How many cells along one dimension of an answer a donor may add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Every sample of a donor has the same value: one cell, always.
    FixedPerDonor,
    /// A sample-level dimension: at most this many of its values.
    AtMost(i64),
}

/// What to compute: bounded aggregates over the rows matching `filter`,
/// grouped by the dimensions, for every key of their value sets.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Surface column names of the group-by dimensions.
    pub dimensions: Vec<String>,
    /// The public keys of each dimension, in order.
    pub keys: Vec<Vec<String>>,
    pub filter: Filter,
    pub aggregates: Vec<Aggregate>,
    /// At most this many rows of one donor count in one cell.
    pub max_samples_per_donor: i64,
    /// How far one donor may spread along each dimension, in order.
    pub spread: Vec<Spread>,
    /// At most this many cells in all count one donor, where fewer than
    /// the spreads allow together (the catalogue's tables, whose
    /// sample-level values go together).
    pub max_cells: Option<i64>,
    /// Chooses which cells a donor who is in more than
    /// [`Plan::cells_per_donor`] cells keeps: drawn at random for every
    /// release, so the choice depends neither on the data nor on key names.
    pub seed: u64,
    /// For the catalogue's counts: a cap on one donor's samples in all the
    /// plan's cells of a class together (besides `max_samples_per_donor`
    /// in each cell).
    pub sample_caps: Option<SampleCaps>,
    /// Dimensions (by their index in `dimensions`) along which one donor
    /// counts in one value only, drawn among the values its rows have by
    /// a hash keyed by `seed`, as its cells are. For the catalogue, along a
    /// dimension where the site's donors have one value each (at a
    /// fracture site, every sample of a donor shares one age band): donor
    /// counts then add up over that dimension's values. Only the counting
    /// pass applies it.
    pub one_value: Vec<usize>,
}

/// Caps on one donor's samples per class of cells: a cell's class is its
/// key along dimension `by` (the sample type), or, without `by`, all cells
/// are one class. A donor's rows count in order until its class's cap is
/// reached; later ones are left out. So one donor moves the samples vector
/// by at most √(Σ caps²) in L2 with `by` (the squares of a class's cells
/// add up to at most the square of their sum), and by at most `caps[0]`
/// without: the caps, not the cells a donor may be in, set the sample
/// counts' sensitivity. Only the counting pass applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleCaps {
    /// The index, in [`Plan::dimensions`], of the dimension whose key is a
    /// cell's class.
    pub by: Option<usize>,
    /// Per key of `by` (one value without it), at most this many of one
    /// donor's samples count.
    pub caps: Vec<i64>,
}

impl SampleCaps {
    /// The L2 and L1 distances one donor can move the samples vector by.
    pub fn sensitivity(&self) -> (f64, i64) {
        let l1: i64 = match self.by {
            Some(_) => self.caps.iter().sum(),
            None => self.caps.first().copied().unwrap_or(0),
        };
        let l2 = match self.by {
            // Rounded up: never below the true distance.
            Some(_) => (self.caps.iter().map(|c| (c * c) as f64).sum::<f64>())
                .sqrt()
                .next_up(),
            None => l1 as f64,
        };
        (l2, l1)
    }
}

impl Plan {
    /// Every cell's key, in the order results list them (the cartesian product
    /// of the dimensions' keys; one empty key without dimensions).
    pub fn cells(&self) -> Vec<Vec<String>> {
        self.keys.iter().fold(vec![Vec::new()], |acc, values| {
            acc.iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut key = prefix.clone();
                        key.push(v.clone());
                        key
                    })
                })
                .collect()
        })
    }

    /// Cells one donor can add to: one along each dimension fixed per
    /// donor, times the bound (or the number of keys, if fewer) along each
    /// sample-level dimension. What the sensitivities multiply.
    pub fn cells_per_donor(&self) -> i64 {
        self.cells_reachable()
            .min(self.max_cells.unwrap_or(i64::MAX))
            .max(1)
    }

    /// The most cells one donor can be in before `max_cells`: the product
    /// over the dimensions of the values a donor may have in each.
    pub fn cells_reachable(&self) -> i64 {
        self.keys
            .iter()
            .zip(&self.spread)
            .map(|(keys, spread)| match spread {
                Spread::FixedPerDonor => 1,
                Spread::AtMost(b) => (*b).min(keys.len() as i64).max(1),
            })
            .product()
    }

    /// The work a pass of this plan does per row, in steps, from its shape
    /// alone: reading the row, each condition of the filter, each
    /// dimension and each aggregate. What [`Plan::estimated_ms`] multiplies.
    pub fn steps_per_row(&self) -> u64 {
        fn conditions(f: &Filter) -> u64 {
            match f {
                Filter::True => 0,
                Filter::And(fs) | Filter::Or(fs) => fs.iter().map(conditions).sum(),
                Filter::Not(f) => conditions(f),
                Filter::In { .. }
                | Filter::Range { .. }
                | Filter::Prefix { .. }
                | Filter::IsNull { .. } => 1,
            }
        }
        1 + conditions(&self.filter) + self.dimensions.len() as u64 + self.aggregates.len() as u64
    }

    /// How long a pass over `rows` rows may take at most, on one core, from
    /// the plan's shape and the row count alone: the same for every value
    /// the filter names, and known before any row is read, so that whether
    /// a question is turned away says nothing about which rows match.
    pub fn estimated_ms(&self, rows: u64) -> f64 {
        (rows as f64) * (self.steps_per_row() as f64) * NS_PER_STEP / 1e6
    }

    /// Whether some donor could be in more cells than
    /// [`Plan::cells_per_donor`], so that the plan must choose which count.
    pub fn bound_binds(&self) -> bool {
        let reachable: i64 = self
            .keys
            .iter()
            .zip(&self.spread)
            .map(|(keys, spread)| match spread {
                Spread::FixedPerDonor => 1,
                Spread::AtMost(_) => keys.len() as i64,
            })
            .product();
        reachable > self.cells_per_donor()
    }
}

/// True aggregates, one vector per aggregate in the order of `Plan::cells`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exact {
    pub dataset_version: String,
    pub values: Vec<Vec<i64>>,
}

/// The engine seam: [`SurfaceEngine`] in production; tests can use it
/// directly to check sensitivity on exact values.
pub trait QueryEngine: Send + Sync + std::fmt::Debug {
    /// The current dataset version, if any data was imported.
    fn dataset_version(&self) -> Result<Option<String>>;
    /// Starts loading the data in the background and keeps it current, for
    /// an engine that serves questions (a command that only reads the
    /// state database does not need the data).
    fn watch(self: std::sync::Arc<Self>) {}
    /// Computes the plan's exact bounded aggregates.
    fn aggregate<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Exact>>;
    /// For the sample bounds: per sample type (in [`SampleType::ALL`]'s
    /// order), how many donors have at least `k` samples of it, for
    /// `k = 1..=ceiling` (`[t][k - 1]`), each donor's samples read up to
    /// `ceiling` in all; with the version it was read from. Exact, and
    /// never released as it is.
    ///
    /// [`SampleType::ALL`]: bonebank_schemas::SampleType
    fn samples_per_donor(&self, ceiling: usize) -> BoxFuture<'_, Result<(String, Vec<Vec<i64>>)>>;
    /// For the catalogue's cell bounds: how many donors are in at least `k`
    /// of the plan's cells, for `k = 1..=max_cells` (`[k - 1]`), with no
    /// bound on the cells or samples a donor counts in; with the version it
    /// was read from. Exact, and never released as it is.
    fn cells_per_donor<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<(String, Vec<i64>)>>;
}
