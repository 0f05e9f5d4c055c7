//! The DataFusion engine: the surface of the current dataset version as an
//! in-memory table, and one SQL plan per query that bounds each donor's
//! contribution inside the plan itself.

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
            let values = read_cells(plan, &batches)?;
            Ok(Exact {
                dataset_version: loaded.version.clone(),
                values,
            })
        })
    }
}

/// The SQL of a plan. Inner: the filtered rows aggregated per donor and
/// cell. Middle: each donor's cells numbered (`bb_cell`). Outer: only a
/// donor's first `max_groups_per_donor` cells count, and in each a donor adds
/// at most `max_samples_per_donor` rows (`LEAST(n, S)`), at most S to a count
/// of values, and a sum clamped to `[S·min(lo, 0), S·hi]`: at most what the
/// sensitivities assume.
pub fn plan_sql(plan: &Plan) -> String {
    let dims = plan.dimensions.join(", ");
    let s = plan.max_samples_per_donor;
    let mut per_donor = String::from("COUNT(*) AS n");
    for (i, a) in plan.aggregates.iter().enumerate() {
        match a {
            Aggregate::Sum { column, lo, hi } => write!(
                per_donor,
                ", SUM(CASE WHEN {column} < {lo} THEN {lo} WHEN {column} > {hi} THEN {hi} ELSE {column} END) AS v{i}"
            )
            .unwrap(),
            Aggregate::Count { column } => write!(per_donor, ", COUNT({column}) AS v{i}").unwrap(),
            Aggregate::Samples | Aggregate::Donors => {}
        }
    }
    let aggregates: Vec<String> = plan
        .aggregates
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Aggregate::Samples => format!("CAST(COALESCE(SUM(LEAST(n, {s})), 0) AS BIGINT) AS a{i}"),
            Aggregate::Donors => format!("CAST(COUNT(*) AS BIGINT) AS a{i}"),
            Aggregate::Sum { lo, hi, .. } => format!(
                "CAST(COALESCE(SUM(LEAST(GREATEST(COALESCE(v{i}, 0), {}), {})), 0) AS BIGINT) AS a{i}",
                lo.min(&0) * s,
                hi * s
            ),
            Aggregate::Count { .. } => format!("CAST(COALESCE(SUM(LEAST(v{i}, {s})), 0) AS BIGINT) AS a{i}"),
        })
        .collect();
    // Column names come from the checked surface; text is quoted with
    // doubled quotes.
    let filter = plan.filter.to_sql(true);
    if dims.is_empty() {
        return format!(
            "SELECT {} FROM (SELECT donor_key, {per_donor} FROM surface WHERE {filter} GROUP BY donor_key) g",
            aggregates.join(", ")
        );
    }
    let inner = format!(
        "SELECT {dims}, donor_key, {per_donor} FROM surface WHERE {filter} GROUP BY {dims}, donor_key"
    );
    let middle = format!(
        "SELECT *, ROW_NUMBER() OVER (PARTITION BY donor_key ORDER BY {dims}) AS bb_cell FROM ({inner}) g"
    );
    format!(
        "SELECT {dims}, {} FROM ({middle}) r WHERE bb_cell <= {} GROUP BY {dims}",
        aggregates.join(", "),
        plan.max_groups_per_donor
    )
}

/// Puts the engine's rows into the plan's cell order; cells without rows are 0
/// and rows whose key is not in the public value sets are dropped.
fn read_cells(plan: &Plan, batches: &[RecordBatch]) -> Result<Vec<Vec<i64>>> {
    let cells = plan.cells();
    let index: HashMap<&[String], usize> = cells
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_slice(), i))
        .collect();
    let mut values = vec![vec![0i64; cells.len()]; plan.aggregates.len()];
    let d = plan.dimensions.len();
    for b in batches {
        let keys: Vec<_> = (0..d)
            .map(|i| cast(b.column(i), &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        let keys: Vec<_> = keys.iter().map(|k| k.as_string::<i32>().clone()).collect();
        for row in 0..b.num_rows() {
            let key: Vec<String> = keys
                .iter()
                .map(|k| {
                    if k.is_null(row) {
                        "none".into()
                    } else {
                        k.value(row).to_owned()
                    }
                })
                .collect();
            let Some(&cell) = index.get(key.as_slice()) else {
                continue;
            };
            for (a, out) in values.iter_mut().enumerate() {
                let column = b.column(d + a).as_primitive::<Int64Type>();
                out[cell] = if column.is_null(row) {
                    0
                } else {
                    column.value(row)
                };
            }
        }
    }
    Ok(values)
}
