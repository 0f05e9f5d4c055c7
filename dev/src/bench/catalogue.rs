//! `bonebank-dev bench catalogue`: what a catalogue costs to build at a
//! site of a given size, and how fast the coordinator answers from the
//! catalogues.
//!
//! **Build.** For each size, a synthetic DE-LUE site is generated, the
//! process's peak memory is reset (Linux's `clear_refs`), and a node's
//! query service measures the catalogue from cold: it loads the dataset
//! version into memory (timed on its own), then fits the sample bounds,
//! counts the workload's tables, and noises and reconciles them. The
//! peak resident memory is of the load and the catalogue together.
//!
//! **Estimates.** The three demo sites (small: an estimate's work does not
//! depend on a site's size, only on the catalogue's cells) behind a
//! coordinator on loopback with mutual TLS. Once the coordinator holds
//! every catalogue, 1 and 16 concurrent clients send catalogue-shaped
//! questions to `POST /v1/query` over HTTP with a bearer token; every site's
//! part must come from its catalogue. The latency is the whole request as
//! the client sees it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bonebank_node::dataset::DataDir;
use bonebank_node::engine::{Aggregate, Plan, SurfaceEngine};
use bonebank_node::generate::{self, Profile, Spec};
use bonebank_node::privacy::OpenDpNoise;
use bonebank_node::service::QueryService;
use bonebank_node::store::Store;
use bonebank_query::policy::Policy;
use bonebank_schemas::SiteId;

use super::network::{Ask, Series, catalogue_sql, series};
use super::node::peak_rss_kib;
use crate::local::{self, LocalNetwork};
use crate::{Error, Result};

/// One catalogue built.
#[derive(Debug, Clone)]
pub struct Build {
    pub samples: u64,
    pub donors: u64,
    /// Loading the dataset version into memory.
    pub load_seconds: f64,
    /// Measuring the catalogue over the loaded version.
    pub seconds: f64,
    pub peak_rss_mib: Option<u64>,
    pub tables: usize,
    pub cells: usize,
}

#[derive(Debug)]
pub struct CatalogueBench {
    pub builds: Vec<Build>,
    pub estimates: Vec<Series>,
}

/// Resets the process's peak resident memory to its current size.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Builds one catalogue over a site of `samples` samples.
async fn build(samples: u64, work: &std::path::Path) -> Result<Build> {
    let site = SiteId::parse(SiteId::LUEBECK).expect("demo site id");
    let dir = DataDir::new(work.join(format!("data-{samples}")));
    let spec = Spec {
        profile: Profile::for_site(&site, None)?,
        site: site.clone(),
        donors: samples,
        seed: 7,
        max_samples: Some(samples),
    };
    eprintln!("generating a DE-LUE site with {samples} samples …");
    let (d, s) = (dir.clone(), spec.clone());
    let (counts, _) = tokio::task::spawn_blocking(move || generate::into_data_dir(&s, &d))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let policy = Policy::default();
    let engine = Arc::new(SurfaceEngine::new(
        dir,
        site.clone(),
        policy.diagnosis_categories.clone(),
    ));
    let measured_peak = reset_peak_rss();
    // Loading the dataset version is timed on its own: a node loads it
    // once to answer anything.
    eprintln!("loading it …");
    let started = Instant::now();
    let total = Plan {
        dimensions: Vec::new(),
        keys: Vec::new(),
        filter: bonebank_schemas::Filter::True,
        aggregates: vec![Aggregate::Donors],
        max_samples_per_donor: 1,
        spread: Vec::new(),
        max_cells: None,
        seed: 0,
        sample_caps: None,
        one_value: Vec::new(),
    };
    engine.true_counts(&total).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let store = Store::open(&work.join(format!("state-{samples}.sqlite")))?;
    let service = QueryService::new(site, policy, engine, Arc::new(OpenDpNoise), store);
    eprintln!("measuring its catalogue …");
    let started = Instant::now();
    let catalogue = service
        .catalogue()
        .await?
        .ok_or_else(|| Error::Internal("no catalogue was measured".into()))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Build {
        samples: counts.samples,
        donors: counts.donors,
        load_seconds,
        seconds,
        peak_rss_mib: peak_rss_kib().filter(|_| measured_peak).map(|k| k / 1024),
        tables: catalogue.tables.len(),
        cells: catalogue.tables.iter().map(|t| t.donors.values.len()).sum(),
    })
}

/// Runs the benchmark: a build per size in `samples`, then `estimates`
/// questions per series of estimates.
pub fn run(samples: &[u64], estimates: usize) -> Result<CatalogueBench> {
    let estimates = estimates.clamp(16, 20_000);
    let work = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))?;
    runtime.block_on(async {
        let mut builds = Vec::new();
        for n in samples {
            builds.push(build(*n, work.path()).await?);
            // Each site's files go before the next is generated.
            let _ = std::fs::remove_dir_all(work.path().join(format!("data-{n}")));
        }
        let sites = local::demo_sites();
        let root = work.path().join("network");
        for (i, site) in sites.iter().enumerate() {
            eprintln!("generating {site} for the estimates …");
            local::generate_site_with(&root, site, 2_000, None, 7 + i as u64)?;
        }
        let net =
            LocalNetwork::start_unthrottled(&root, &sites, &super::network::policy(), 60_000)?;
        net.wait_for_catalogues(Duration::from_secs(120)).await?;
        let url = net.coordinator.url();
        let token = net.token(&super::network::bench_user());
        eprintln!("estimates from the catalogues, 1 and 16 clients …");
        series(&url, &token, "warm-up", 1, 0..16, Ask::Catalogue).await?;
        let mut out = Vec::new();
        for clients in [1, 16] {
            out.push(
                series(
                    &url,
                    &token,
                    "catalogue estimate (3 sites)",
                    clients,
                    0..estimates,
                    Ask::Catalogue,
                )
                .await?,
            );
        }
        Ok(CatalogueBench {
            builds,
            estimates: out,
        })
    })
}

impl fmt::Display for CatalogueBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "catalogue build at a DE-LUE site: the version loaded, then sample bounds, the tables, noise and fit"
        )?;
        for b in &self.builds {
            let rss = b
                .peak_rss_mib
                .map_or_else(|| "not measured".to_owned(), |m| format!("{m} MiB"));
            writeln!(
                f,
                "  {:>10} samples ({:>9} donors): load {:5.1} s, catalogue {:5.1} s, peak RSS {rss} (load and catalogue), {} tables, {} cells",
                b.samples, b.donors, b.load_seconds, b.seconds, b.tables, b.cells
            )?;
        }
        writeln!(
            f,
            "estimates at the coordinator over HTTPS, every site from its catalogue"
        )?;
        writeln!(f, "  query: {}", catalogue_sql(0))?;
        for s in &self.estimates {
            writeln!(f, "  {s}")?;
        }
        Ok(())
    }
}
