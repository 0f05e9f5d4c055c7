//! The DataFusion engine: the surface of the current dataset version as an
//! in-memory table, one SQL plan per query that aggregates per donor and
//! cell, and the contribution bounding applied to what it returns.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use bonebank_schemas::SiteId;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::future::BoxFuture;

use super::{Aggregate, Exact, Plan, QueryEngine, surface};
use crate::dataset::DataDir;
use crate::{Error, Result};

/// Queries a site's data directory; reloads when a new version is imported.
#[derive(Debug)]
pub struct DataFusionEngine {
    source: Source,
    site: SiteId,
    categories: Vec<String>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    cpu: CpuRuntime,
    /// A plan still running after this is stopped.
    plan_timeout: std::time::Duration,
}

/// Where plans run: a multi-threaded runtime of the engine's own. HTTP
/// workers run on single-threaded runtimes, where DataFusion's partitions
/// would all share one core; here they get one core each.
/// At most one plan per core runs at a time; the rest wait their turn
/// instead of all slowing each other down.
#[derive(Debug)]
struct CpuRuntime(Option<tokio::runtime::Runtime>, Arc<tokio::sync::Semaphore>);

impl CpuRuntime {
    fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("bonebank-engine")
            .build()
            .expect("the engine's runtime starts");
        Self(
            Some(runtime),
            Arc::new(tokio::sync::Semaphore::new(threads)),
        )
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime until drop").handle()
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async contexts forbid.
        if let Some(r) = self.0.take() {
            r.shutdown_background();
        }
    }
}

#[derive(Debug)]
enum Source {
    Dir(DataDir),
    /// A fixed surface, for tests that compare exact values across datasets.
    Batches(String),
}

struct Loaded {
    version: String,
    ctx: SessionContext,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("version", &self.version)
            .finish()
    }
}

impl DataFusionEngine {
    pub fn new(dir: DataDir, site: SiteId, categories: Vec<String>) -> Self {
        Self {
            source: Source::Dir(dir),
            site,
            categories,
            loaded: RwLock::new(None),
            cpu: CpuRuntime::new(),
            plan_timeout: crate::limits::WorkLimits::default().plan_timeout(),
        }
    }

    /// The same engine, stopping plans that run longer than `timeout`.
    pub fn with_plan_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.plan_timeout = timeout;
        self
    }

    /// An engine over a surface built from stored-table batches.
    pub fn from_batches(
        site: SiteId,
        categories: Vec<String>,
        version: &str,
        surface: Vec<RecordBatch>,
    ) -> Result<Self> {
        let engine = Self {
            source: Source::Batches(version.into()),
            site,
            categories,
            loaded: RwLock::new(None),
            cpu: CpuRuntime::new(),
            plan_timeout: crate::limits::WorkLimits::default().plan_timeout(),
        };
        *engine.loaded.write().expect("lock") = Some(Arc::new(Loaded {
            version: version.into(),
            ctx: context(surface)?,
        }));
        Ok(engine)
    }

    /// The loaded surface for the current version, loading it if it changed.
    fn current(&self) -> Result<Option<Arc<Loaded>>> {
        let Source::Dir(dir) = &self.source else {
            return Ok(self.loaded.read().expect("lock").clone());
        };
        let Some(version) = dir.current()? else {
            return Ok(None);
        };
        if let Some(l) = self.loaded.read().expect("lock").as_ref()
            && l.version == version.id
        {
            return Ok(Some(l.clone()));
        }
        let started = std::time::Instant::now();
        let (id, batches) = surface::load(dir, &self.site, &self.categories)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let loaded = Arc::new(Loaded {
            version: id,
            ctx: context(batches)?,
        });
        tracing::info!(version = %loaded.version, rows, ms = started.elapsed().as_millis() as u64, "loaded dataset version");
        *self.loaded.write().expect("lock") = Some(loaded.clone());
        Ok(Some(loaded))
    }
}

/// A session with the surface registered as `surface`: rows sorted by
/// donor (DataFusion is told so), split into contiguous halves for both cores.
fn context(batches: Vec<RecordBatch>) -> Result<SessionContext> {
    let partitions = 2;
    let per_part = batches.len().div_ceil(partitions).max(1);
    let mut parts: Vec<Vec<RecordBatch>> = batches.chunks(per_part).map(<[_]>::to_vec).collect();
    parts.resize(partitions, Vec::new());
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let table = MemTable::try_new(surface::schema(), parts)
        .map_err(Error::from_df)?
        .with_sort_order(vec![vec![
            datafusion::prelude::col("donor_key").sort(true, false),
        ]]);
    ctx.register_table("surface", Arc::new(table))
        .map_err(Error::from_df)?;
    Ok(ctx)
}

impl QueryEngine for DataFusionEngine {
    fn dataset_version(&self) -> Result<Option<String>> {
        match &self.source {
            Source::Dir(dir) => Ok(dir.current()?.map(|v| v.id)),
            Source::Batches(v) => Ok(Some(v.clone())),
        }
    }

    fn aggregate<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Exact>> {
        Box::pin(async move {
            let loaded = self.current()?.ok_or(Error::NoData)?;
            let sql = plan_sql(plan);
            tracing::debug!(%sql, "running plan");
            let ctx = loaded.ctx.clone();
            let _turn = self
                .cpu
                .1
                .acquire()
                .await
                .map_err(|e| Error::Engine(format!("engine queue: {e}")))?;
            let mut task = self
                .cpu
                .handle()
                .spawn(async move { ctx.sql(&sql).await?.collect().await });
            // Past the limit the task is aborted: DataFusion's streams stop
            // at their next batch, and the core is free again.
            let batches = match tokio::time::timeout(self.plan_timeout, &mut task).await {
                Ok(joined) => joined
                    .map_err(|e| Error::Engine(format!("engine task: {e}")))?
                    .map_err(Error::from_df)?,
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        ms = self.plan_timeout.as_millis() as u64,
                        "a plan ran past the limit and was stopped"
                    );
                    return Err(Error::TooSlow(self.plan_timeout.as_millis() as u64));
                }
            };
            let values = bound_cells(plan, &batches)?;
            Ok(Exact {
                dataset_version: loaded.version.clone(),
                values,
            })
        })
    }
}

impl DataFusionEngine {
    /// The true counts of a plan's `Samples` and `Donors` aggregates, with no
    /// contribution bound: plain `COUNT(*)` and `COUNT(DISTINCT donor)` per
    /// cell over the surface. For evaluating accuracy against the truth
    /// (`bonebank-coordinator eval`); never released.
    pub async fn true_counts(&self, plan: &Plan) -> Result<Vec<Vec<i64>>> {
        let loaded = self.current()?.ok_or(Error::NoData)?;
        let dims = plan.dimensions.join(", ");
        let (select, group) = if dims.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{dims}, "), format!(" GROUP BY {dims}"))
        };
        let sql = format!(
            "SELECT {select}CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(COUNT(DISTINCT donor_key) AS BIGINT) AS d FROM surface WHERE {}{group}",
            plan.filter.to_sql(true)
        );
        let batches = loaded
            .ctx
            .sql(&sql)
            .await
            .map_err(Error::from_df)?
            .collect()
            .await
            .map_err(Error::from_df)?;
        let index = CellIndex::new(plan);
        let d = plan.dimensions.len();
        let mut out = vec![vec![0i64; index.cells]; plan.aggregates.len()];
        for b in &batches {
            let keys = CellIndex::keys(b, d)?;
            let (n, donors) = (
                b.column(d).as_primitive::<Int64Type>(),
                b.column(d + 1).as_primitive::<Int64Type>(),
            );
            for row in 0..b.num_rows() {
                let Some(cell) = index.cell(&keys, row) else {
                    continue;
                };
                for (a, values) in plan.aggregates.iter().zip(out.iter_mut()) {
                    values[cell] = match a {
                        Aggregate::Samples => n.value(row),
                        Aggregate::Donors => donors.value(row),
                        other => {
                            return Err(Error::Engine(format!(
                                "true counts cover samples and donors, not {other:?}"
                            )));
                        }
                    };
                }
            }
        }
        Ok(out)
    }
}

/// The SQL of a plan: the filtered rows aggregated per donor and cell (per
/// donor alone without dimensions): how many rows, and per aggregate the
/// sum of its column clamped per row or the count of its values. What one
/// donor may add is bounded afterwards, by [`bound_cells`].
pub fn plan_sql(plan: &Plan) -> String {
    let mut per_donor = String::from("CAST(COUNT(*) AS BIGINT) AS n");
    for (i, a) in plan.aggregates.iter().enumerate() {
        match a {
            Aggregate::Sum { column, lo, hi } => write!(
                per_donor,
                ", CAST(SUM(CASE WHEN {column} < {lo} THEN {lo} WHEN {column} > {hi} THEN {hi} ELSE {column} END) AS BIGINT) AS v{i}"
            )
            .unwrap(),
            Aggregate::Count { column } => {
                write!(per_donor, ", CAST(COUNT({column}) AS BIGINT) AS v{i}").unwrap()
            }
            Aggregate::Samples | Aggregate::Donors => {}
        }
    }
    // Column names come from the checked surface; text is quoted with
    // doubled quotes.
    let filter = plan.filter.to_sql(true);
    let group: String = plan.dimensions.iter().map(|d| format!("{d}, ")).collect();
    format!(
        "SELECT {group}donor_key, {per_donor} FROM surface WHERE {filter} GROUP BY {group}donor_key"
    )
}

/// Where a result row goes: the position of its key in `Plan::cells`
/// (first dimension most significant), or none for a key outside the public
/// value sets. A null key reads as `none`.
struct CellIndex<'a> {
    /// Per dimension, each public key's position.
    positions: Vec<HashMap<&'a str, usize>>,
    cells: usize,
}

impl<'a> CellIndex<'a> {
    fn new(plan: &'a Plan) -> Self {
        Self {
            positions: plan
                .keys
                .iter()
                .map(|keys| {
                    keys.iter()
                        .enumerate()
                        .map(|(i, k)| (k.as_str(), i))
                        .collect()
                })
                .collect(),
            cells: plan.keys.iter().map(Vec::len).product(),
        }
    }

    /// The first `d` columns of a batch (the dimensions) as text.
    fn keys(batch: &RecordBatch, d: usize) -> Result<Vec<arrow::array::StringArray>> {
        (0..d)
            .map(|i| {
                Ok(cast(batch.column(i), &DataType::Utf8)?
                    .as_string::<i32>()
                    .clone())
            })
            .collect()
    }

    fn cell(&self, keys: &[arrow::array::StringArray], row: usize) -> Option<usize> {
        let mut cell = 0;
        for (column, at) in keys.iter().zip(&self.positions) {
            let value = if column.is_null(row) {
                "none"
            } else {
                column.value(row)
            };
            cell = cell * at.len() + at.get(value)?;
        }
        Some(cell)
    }
}

/// Bounds each donor's contribution and sums per cell, in the order of
/// `Plan::cells`; cells without rows are 0 and rows whose key is not in the
/// public value sets are dropped. A donor in more than
/// [`Plan::cells_per_donor`] cells keeps that many, chosen uniformly at
/// random by ranking the donor's cells on a hash keyed by the plan's seed
/// (so neither key names nor their order decide); in each kept cell it adds
/// at most [`Aggregate::bounded`] of its rows.
pub fn bound_cells(plan: &Plan, batches: &[RecordBatch]) -> Result<Vec<Vec<i64>>> {
    let d = plan.dimensions.len();
    let aggregates = plan.aggregates.len();
    let index = CellIndex::new(plan);
    let rank = ahash::RandomState::with_seeds(
        plan.seed,
        plan.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
        plan.seed.rotate_left(31) ^ 0xbf58_476d_1ce4_e5b9,
        plan.seed.rotate_left(47) ^ 0x94d0_49bb_1331_11eb,
    );
    let s = plan.max_samples_per_donor;
    // One entry per donor and public cell: (donor, rank, cell); its bounded
    // values at `entry index · aggregates` in `values`.
    let mut entries: Vec<(i64, u64, usize)> = Vec::new();
    let mut values: Vec<i64> = Vec::new();
    for b in batches {
        let keys = CellIndex::keys(b, d)?;
        let donors = b.column(d).as_primitive::<Int64Type>();
        let rows = b.column(d + 1).as_primitive::<Int64Type>();
        let columns: Vec<Option<&arrow::array::Int64Array>> = (0..aggregates)
            .map(|i| {
                b.column_by_name(&format!("v{i}"))
                    .map(|c| c.as_primitive::<Int64Type>())
            })
            .collect();
        for row in 0..b.num_rows() {
            let Some(cell) = index.cell(&keys, row) else {
                continue;
            };
            let donor = donors.value(row);
            entries.push((donor, rank.hash_one((donor, cell)), cell));
            for (a, column) in plan.aggregates.iter().zip(&columns) {
                let value = column.map_or(0, |c| if c.is_null(row) { 0 } else { c.value(row) });
                values.push(a.bounded(rows.value(row), value, s));
            }
        }
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&e| (entries[e].0, entries[e].1));
    let limit = plan.cells_per_donor();
    let mut out = vec![vec![0i64; index.cells]; aggregates];
    let (mut donor, mut kept) = (None, 0);
    for e in order {
        let (who, _, cell) = entries[e];
        if donor != Some(who) {
            (donor, kept) = (Some(who), 0);
        }
        kept += 1;
        if kept > limit {
            continue;
        }
        for (a, out) in out.iter_mut().enumerate() {
            out[cell] += values[e * aggregates + a];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use bonebank_schemas::Filter;

    use super::*;
    use crate::engine::Spread;

    /// `donors` donors, each with `rows` rows in every one of `keys`.
    fn everyone_everywhere(keys: &[String], donors: i64, rows: i64) -> RecordBatch {
        let mut names = Vec::new();
        let mut who = Vec::new();
        for d in 0..donors {
            for k in keys {
                names.push(k.clone());
                who.push(d * 7919);
            }
        }
        let n = names.len();
        let schema = Schema::new(vec![
            Field::new("sample_type", DataType::Utf8, false),
            Field::new("donor_key", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int64Array::from(who)),
                Arc::new(Int64Array::from(vec![rows; n])),
            ],
        )
        .unwrap()
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

    #[test]
    fn donors_over_the_bound_keep_cells_chosen_without_regard_to_key_names() {
        // 1000 donors in all 10 cells, 3 kept each: every cell expects 300
        // donors (a sum of 1000 draws with p = 0.3, standard deviation 14.5).
        // Keeping the first three keys in any fixed order would give 1000,
        // 1000, 1000 and seven zeros.
        let batch = everyone_everywhere(&keys(), 1000, 5);
        for seed in [1, 2, 3] {
            let values = bound_cells(&plan(keys(), 3, seed), std::slice::from_ref(&batch)).unwrap();
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
        let batch = everyone_everywhere(&reversed, 1000, 1);
        let values = bound_cells(&plan(reversed, 3, 9), &[batch]).unwrap();
        assert!(
            values[0].iter().all(|&c| (c - 300).abs() < 73),
            "{:?}",
            values[0]
        );
    }

    #[test]
    fn the_choice_is_fixed_by_the_seed_and_changes_with_it() {
        let batch = everyone_everywhere(&keys(), 200, 1);
        let run = |seed| bound_cells(&plan(keys(), 2, seed), std::slice::from_ref(&batch)).unwrap();
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn donors_within_the_bound_keep_every_cell() {
        let batch = everyone_everywhere(&keys(), 50, 9);
        let values = bound_cells(&plan(keys(), 10, 1), &[batch]).unwrap();
        assert_eq!(values[0], vec![50; 10]);
        assert_eq!(
            values[1],
            vec![100; 10],
            "9 rows count as max_samples_per_donor 2"
        );
    }

    #[test]
    fn cells_per_donor_multiplies_only_sample_level_dimensions() {
        let mut p = plan(keys(), 4, 0);
        assert_eq!(p.cells_per_donor(), 4);
        assert!(p.bound_binds());
        p.spread = vec![Spread::AtMost(40)];
        assert_eq!(p.cells_per_donor(), 10, "no more cells than keys");
        assert!(!p.bound_binds());
        p.dimensions = vec!["sex".into(), "sample_type".into()];
        p.keys = vec![vec!["F".into(), "M".into(), "U".into()], keys()];
        p.spread = vec![Spread::FixedPerDonor, Spread::AtMost(3)];
        assert_eq!(p.cells_per_donor(), 3, "a donor has one sex");
        p.spread = vec![Spread::AtMost(2), Spread::AtMost(3)];
        assert_eq!(p.cells_per_donor(), 6);
        p.spread = vec![Spread::FixedPerDonor];
        p.keys = vec![vec!["F".into(), "M".into(), "U".into()]];
        assert_eq!(p.cells_per_donor(), 1);
        assert!(!p.bound_binds());
        assert_eq!(Aggregate::Donors.sensitivity(5, p.cells_per_donor()), 1);
        assert_eq!(Aggregate::Samples.sensitivity(5, p.cells_per_donor()), 5);
    }
}
