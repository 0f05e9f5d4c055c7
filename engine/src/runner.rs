//! The engine over a site's data directory: the surface of the current
//! dataset version held in memory, loaded off the request path (at start,
//! and as soon as an import makes a new version), and each plan run as one
//! pass ([`super::pass`]) on a core of the engine's own, after DataFusion's
//! physical expressions have evaluated its filter ([`super::filter`]).

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bonebank_schemas::{SampleType, SiteId, ValueSet};
use futures::future::BoxFuture;

use super::filter::CompiledFilter;
use super::pass::{self, DonorBatch, Mode};
use super::{Aggregate, Exact, Plan, QueryEngine, surface};
use crate::dataset::{DataDir, DatasetVersion};
use crate::{Error, Result};

/// How often the engine looks for a dataset version made by an import.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Queries a site's data; loads each new version as it appears.
#[derive(Debug)]
pub struct SurfaceEngine {
    source: Source,
    site: SiteId,
    categories: Vec<String>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// Held while a version loads: one load at a time, and questions that
    /// need it wait here without holding a thread.
    loading: tokio::sync::Mutex<()>,
    cpu: CpuRuntime,
    /// A plan estimated to take longer is turned away before it reads a row.
    plan_timeout: Duration,
    /// The current version as last read, with the manifest's stamp then:
    /// the manifest is read again only when it was replaced.
    known: std::sync::Mutex<Option<(ManifestStamp, Option<DatasetVersion>)>>,
}

type ManifestStamp = Option<(std::time::SystemTime, u64)>;

/// Where plans and loads run: threads of the engine's own, never the HTTP
/// workers. At most one plan per core runs at a time; the rest wait their
/// turn instead of all slowing each other down.
#[derive(Debug)]
struct CpuRuntime(Option<tokio::runtime::Runtime>, Arc<tokio::sync::Semaphore>);

impl CpuRuntime {
    fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(threads + 1)
            .enable_time()
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

    /// Runs CPU-bound work on the engine's cores, in turn: it waits for one
    /// core, and gets every other core that is free right then (`work` is
    /// told how many), so that a question on an idle node uses the whole
    /// machine and a busy node runs one question per core.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(usize) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut turn = self
            .1
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Engine(format!("engine queue: {e}")))?;
        while let Ok(more) = self.1.clone().try_acquire_owned() {
            turn.merge(more);
        }
        let cores = turn.num_permits();
        self.handle()
            .spawn_blocking(move || {
                let _turn = turn;
                work(cores)
            })
            .await
            .map_err(|e| Error::Engine(format!("engine task: {e}")))?
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
    Batches,
}

/// One dataset version's surface, sorted by donor.
#[derive(Debug)]
struct Loaded {
    version: String,
    schema: SchemaRef,
    batches: Vec<DonorBatch>,
    /// Rows in all batches.
    rows: u64,
}

impl Loaded {
    fn new(version: String, batches: Vec<RecordBatch>) -> Result<Self> {
        let batches: Vec<DonorBatch> = batches
            .into_iter()
            .map(DonorBatch::new)
            .collect::<Result<_>>()?;
        Ok(Self {
            version,
            schema: pass::schema(&surface::schema()),
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            batches,
        })
    }
}

impl SurfaceEngine {
    pub fn new(dir: DataDir, site: SiteId, categories: Vec<String>) -> Self {
        Self::over(Source::Dir(dir), site, categories, None)
    }

    /// The same engine, turning away plans estimated to take longer than
    /// `timeout`.
    pub fn with_plan_timeout(mut self, timeout: Duration) -> Self {
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
        let loaded = Loaded::new(version.into(), surface)?;
        Ok(Self::over(Source::Batches, site, categories, Some(loaded)))
    }

    fn over(source: Source, site: SiteId, categories: Vec<String>, loaded: Option<Loaded>) -> Self {
        Self {
            source,
            site,
            categories,
            loaded: RwLock::new(loaded.map(Arc::new)),
            loading: tokio::sync::Mutex::new(()),
            cpu: CpuRuntime::new(),
            plan_timeout: crate::DEFAULT_PLAN_TIMEOUT,
            known: std::sync::Mutex::new(None),
        }
    }

    /// The data directory's current version, read again only when its
    /// manifest was replaced.
    fn current_version(&self, dir: &DataDir) -> Result<Option<DatasetVersion>> {
        let stamp = dir.manifest_stamp();
        if let Some((known, version)) = self.known.lock().expect("lock").as_ref()
            && *known == stamp
            && stamp.is_some()
        {
            return Ok(version.clone());
        }
        let version = dir.current()?;
        *self.known.lock().expect("lock") = Some((stamp, version.clone()));
        Ok(version)
    }

    /// The loaded surface for the current version, loading it (off this
    /// thread) if it changed.
    async fn current(&self) -> Result<Option<Arc<Loaded>>> {
        let Source::Dir(dir) = &self.source else {
            return Ok(self.loaded.read().expect("lock").clone());
        };
        let Some(version) = self.current_version(dir)? else {
            return Ok(None);
        };
        let up_to_date = || {
            self.loaded
                .read()
                .expect("lock")
                .as_ref()
                .filter(|l| l.version == version.id)
                .cloned()
        };
        if let Some(l) = up_to_date() {
            return Ok(Some(l));
        }
        let _loading = self.loading.lock().await;
        if let Some(l) = up_to_date() {
            return Ok(Some(l));
        }
        let started = Instant::now();
        let (dir, site, categories) = (dir.clone(), self.site.clone(), self.categories.clone());
        let loaded = self
            .cpu
            .handle()
            .spawn_blocking(move || {
                let (id, batches) = surface::load(&dir, &site, &categories)?;
                Loaded::new(id, batches)
            })
            .await
            .map_err(|e| Error::Engine(format!("loading task: {e}")))??;
        let loaded = Arc::new(loaded);
        tracing::info!(site = %self.site, version = %loaded.version, rows = loaded.rows, ms = started.elapsed().as_millis() as u64, "loaded dataset version");
        *self.loaded.write().expect("lock") = Some(loaded.clone());
        Ok(Some(loaded))
    }

    /// Runs one pass of `plan` over the current version. A plan whose
    /// estimate ([`Plan::estimated_ms`]) is past the limit is turned away
    /// before any row is read; a plan that starts runs to its end. A pass
    /// stopped by the clock would say which rows match: a filter that keeps
    /// a heavy donor's rows runs longer than one that keeps nobody's.
    async fn pass(&self, plan: &Plan, mode: Mode) -> Result<(String, Vec<Vec<i64>>)> {
        let loaded = self.current().await?.ok_or(Error::NoData)?;
        let limit_ms = self.plan_timeout.as_millis() as u64;
        let estimate = plan.estimated_ms(loaded.rows);
        if estimate > limit_ms as f64 {
            tracing::warn!(
                limit_ms,
                estimate,
                "a plan's estimate is past the limit; turned away"
            );
            return Err(Error::TooSlow(limit_ms));
        }
        let filter = CompiledFilter::new(&plan.filter, &loaded.schema)?;
        let plan = plan.clone();
        let version = loaded.version.clone();
        let values = self
            .cpu
            .run(move |cores| pass::run_on(cores, &plan, &filter, &loaded.batches, mode))
            .await?;
        Ok((version, values))
    }

    /// The true counts of a plan's `Samples` and `Donors` aggregates, with no
    /// contribution bound: every row and every donor of each cell. For
    /// evaluating accuracy against the truth (`bonebank-dev eval`); never
    /// released.
    pub async fn true_counts(&self, plan: &Plan) -> Result<Vec<Vec<i64>>> {
        let (_, truth) = self.pass(plan, Mode::Truth).await?;
        plan.aggregates
            .iter()
            .map(|a| match a {
                Aggregate::Samples => Ok(truth[0].clone()),
                Aggregate::Donors => Ok(truth[1].clone()),
                other => Err(Error::Engine(format!(
                    "true counts cover samples and donors, not {other:?}"
                ))),
            })
            .collect()
    }
}

impl QueryEngine for SurfaceEngine {
    fn dataset_version(&self) -> Result<Option<String>> {
        match &self.source {
            Source::Dir(dir) => Ok(self.current_version(dir)?.map(|v| v.id)),
            Source::Batches => Ok(self
                .loaded
                .read()
                .expect("lock")
                .as_ref()
                .map(|l| l.version.clone())),
        }
    }

    /// Loads the current version now, in the background, and from then on
    /// every new version as soon as an import makes it, so that no question
    /// waits for a load it could have been spared.
    fn watch(self: Arc<Self>) {
        if !matches!(self.source, Source::Dir(_)) {
            return;
        }
        let engine: Weak<Self> = Arc::downgrade(&self);
        self.cpu.handle().spawn(async move {
            loop {
                let Some(e) = engine.upgrade() else { return };
                if let Err(err) = e.current().await {
                    tracing::warn!(site = %e.site, error = %err, "could not load the dataset version");
                }
                drop(e);
                tokio::time::sleep(WATCH_EVERY).await;
            }
        });
    }

    fn samples_per_donor(&self, ceiling: usize) -> BoxFuture<'_, Result<(String, Vec<Vec<i64>>)>> {
        Box::pin(async move {
            let loaded = self.current().await?.ok_or(Error::NoData)?;
            let version = loaded.version.clone();
            let table = self
                .cpu
                .run(move |_| {
                    let types: Vec<&str> = SampleType::ALL.iter().map(|t| t.code()).collect();
                    pass::samples_per_donor(&loaded.batches, &types, ceiling)
                })
                .await?;
            Ok((version, table))
        })
    }

    fn cells_per_donor<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<(String, Vec<i64>)>> {
        Box::pin(async move {
            let (version, mut values) = self.pass(plan, Mode::Cells).await?;
            Ok((version, values.pop().unwrap_or_default()))
        })
    }

    fn aggregate<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Exact>> {
        Box::pin(async move {
            let (dataset_version, values) = self.pass(plan, Mode::Bounded).await?;
            Ok(Exact {
                dataset_version,
                values,
            })
        })
    }
}
