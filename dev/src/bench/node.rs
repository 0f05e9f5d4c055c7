//! Benchmarks on synthetic data, run from the command line so their figures
//! come from a release build on the machine at hand.

use std::fmt;
use std::time::{Duration, Instant};

use bonebank_schemas::{SiteId, Table};

use crate::{Error, Result};
use bonebank_node::dataset::DataDir;
use bonebank_node::generate::{self, Profile, Spec};
use bonebank_node::import;

/// Timings of the import benchmark.
#[derive(Debug)]
pub struct ImportBench {
    pub rows: u64,
    pub file_bytes: u64,
    pub runs: Vec<Duration>,
    pub peak_rss_kib: Option<u64>,
}

/// Writes a synthetic DE-LUE export with about `samples` samples to a temp dir,
/// then imports its samples file `runs` times into fresh data directories
/// (donors imported first, untimed) and times each import, validation included.
pub fn import(samples: u64, runs: usize) -> Result<ImportBench> {
    let work = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let site = SiteId::parse(SiteId::LUEBECK).expect("demo site id");
    let spec = Spec {
        profile: Profile::for_site(&site, None)?,
        site,
        donors: samples,
        seed: 7,
        max_samples: Some(samples),
    };
    let export = work.path().join("export");
    eprintln!("writing a synthetic export with {samples} samples …");
    let counts = generate::into_csv(&spec, &export)?;
    let samples_csv = export.join("samples.csv");
    let file_bytes = std::fs::metadata(&samples_csv)
        .map_err(Error::io(&samples_csv))?
        .len();

    let mut timings = Vec::new();
    for run in 0..runs.max(1) {
        let dir = DataDir::new(work.path().join(format!("run-{run}")));
        import::import(&dir, &[(Table::Donors, export.join("donors.csv"))])?;
        let started = Instant::now();
        let report = import::import(&dir, &[(Table::Samples, samples_csv.clone())])?;
        let took = started.elapsed();
        assert_eq!(report.rows[&Table::Samples], counts.samples);
        eprintln!("run {}: {:.3} s", run + 1, took.as_secs_f64());
        timings.push(took);
        std::fs::remove_dir_all(dir.path()).map_err(Error::io(dir.path()))?;
    }
    Ok(ImportBench {
        rows: counts.samples,
        file_bytes,
        runs: timings,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// The process's peak resident memory, from Linux's /proc.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl fmt::Display for ImportBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.runs.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2].as_secs_f64();
        writeln!(
            f,
            "import of samples.csv: {} rows, {:.1} MB, validation on, {} runs",
            self.rows,
            self.file_bytes as f64 / 1e6,
            self.runs.len()
        )?;
        for (i, t) in self.runs.iter().enumerate() {
            writeln!(
                f,
                "  run {}: {:.3} s  {:>9.0} rows/s",
                i + 1,
                t.as_secs_f64(),
                self.rows as f64 / t.as_secs_f64()
            )?;
        }
        write!(
            f,
            "median: {median:.3} s, {:.0} rows/s, {:.1} MB/s",
            self.rows as f64 / median,
            self.file_bytes as f64 / 1e6 / median
        )?;
        if let Some(kib) = self.peak_rss_kib {
            write!(f, "\npeak RSS of the benchmark process: {} MiB", kib / 1024)?;
        }
        Ok(())
    }
}

/// Latency figures of one series of requests, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            count: ms.len(),
            p50: at(0.5),
            p99: at(0.99),
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:6.2} ms  p99 {:6.2} ms  mean {:6.2} ms  ({} requests)",
            self.p50, self.p99, self.mean, self.count
        )
    }
}

/// Timings of the query benchmark.
#[derive(Debug)]
pub struct QueryBench {
    pub samples: u64,
    pub load_ms: f64,
    pub fresh: Latency,
    pub remembered: Latency,
    /// The node's engine in process on the same questions: filter, one
    /// bounded pass; no HTTP, checks, noise or ledger.
    pub engine: Latency,
    /// DuckDB's figures on the same surface, as its script prints them.
    pub duckdb: std::result::Result<String, String>,
    /// Peak RSS up to the node's stop: generating the data, the node
    /// loading and serving it, and the client.
    pub served_peak_rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

/// The benchmark's query: donor and sample counts, three filters, grouped by
/// sample type; `i` varies the age range so that every request is a new
/// question (400 distinct ones).
pub fn bench_sql(i: usize) -> String {
    let (low, high) = bench_ages(i);
    format!(
        "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
         WHERE sex = 'Female' AND age_at_sampling BETWEEN {low} AND {high} AND diagnosis LIKE 'S72%' GROUP BY sample_type"
    )
}

/// The age range of the `i`-th question.
fn bench_ages(i: usize) -> (usize, usize) {
    (40 + i % 20, 70 + (i / 20) % 20)
}

/// Generates a DE-LUE site with about `samples` samples, serves it over
/// HTTPS with mutual TLS, OpenDP noise and the SQLite ledger, and times
/// `requests` fresh questions and as many remembered ones, one at a time;
/// then the node's engine alone on the same questions, in process; then
/// DuckDB on the same pre-joined surface, in process: the plain question,
/// and the same bounded plan.
pub fn query(samples: u64, requests: usize) -> Result<QueryBench> {
    use crate::devidp::{DEMO_AUDIENCE, DevProvider, DevUser};
    use bonebank_node::config::NodeConfig;
    use bonebank_query::policy::{Budgets, Policy};

    let work = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let site = SiteId::parse(SiteId::LUEBECK).expect("demo site id");
    let spec = Spec {
        profile: Profile::for_site(&site, None)?,
        site: site.clone(),
        donors: samples,
        seed: 7,
        max_samples: Some(samples),
    };
    let dir = DataDir::new(work.path().join("data"));
    eprintln!("generating a DE-LUE site with {samples} samples …");
    let (counts, _) = generate::into_data_dir(&spec, &dir)?;
    let requests = requests.clamp(1, 400);
    // Mutual TLS as between a coordinator and a node: a development PKI.
    let pki = crate::pki::PkiDir::new(work.path().join("pki"));
    pki.init(std::slice::from_ref(&site))?;
    let tls = bonebank_service::tls::NodeTls {
        certificate: pki.node_cert(&site),
        key: pki.node_key(&site),
        client_ca: pki.ca_cert(),
        allowed_clients: vec![crate::pki::COORDINATOR_NAME.into()],
        coordinator_grant_key: pki.grant_public_key(),
    };
    let client_tls = bonebank_service::tls::client_config(
        &pki.ca_cert(),
        &pki.coordinator_cert(),
        &pki.coordinator_key(),
    )?;
    let user = DevUser::new(
        "bench",
        bonebank_schemas::Role::Researcher,
        Some("bench"),
        &[],
    );
    let policy = Policy::default().with_budgets(Budgets {
        site: 1e4,
        project: 1e4,
        user: 1e4,
    });
    let make_config = |idp: &DevProvider| NodeConfig {
        site_id: site.clone(),
        data_dir: dir.path().to_owned(),
        state_dir: work.path().join("state"),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        oidc: idp.settings(),
        tls: Some(tls.clone()),
        policy: policy.clone(),
        // One client asks everything: no per-user fair share.
        limits: bonebank_node::limits::WorkLimits::unthrottled(),
        steward_pages: None,
        outbound: None,
        notify: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))?;
    let (load_ms, fresh, remembered, engine, served_peak_rss_kib) = runtime.block_on(async {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let idp = DevProvider::start(
            loopback,
            DEMO_AUDIENCE,
            vec![user.clone()],
            Duration::from_secs(3600),
        )?;
        let token = idp.token_for(&user);
        let config = make_config(&idp);
        let state = bonebank_node::server::state(&config)?;
        let service = state.service.clone();
        let node = bonebank_node::server::start(&config, state)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let url = format!("{}/v1/query", node.url());
        let ask = |sql: String| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "sql": sql, "loss": 0.023 }))
                    .send()
                    .await
                    .map_err(|e| Error::Internal(format!("benchmark request: {e}")))?;
                if !resp.status().is_success() {
                    return Err(Error::Internal(format!(
                        "benchmark request failed: {}",
                        resp.text().await.unwrap_or_default()
                    )));
                }
                resp.bytes()
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok::<f64, Error>(started.elapsed().as_secs_f64() * 1000.0)
            }
        };
        // The node loads the dataset version as it starts; the first
        // question waits for that.
        let load_ms = ask("SELECT COUNT(*) FROM samples".into()).await?;
        let mut fresh = Vec::new();
        for i in 0..requests {
            fresh.push(ask(bench_sql(i)).await?);
        }
        let mut remembered = Vec::new();
        for i in 0..requests {
            remembered.push(ask(bench_sql(i)).await?);
        }
        node.stop().await;
        let served_peak = peak_rss_kib();
        // The engine alone, on the same questions and the same data.
        let engine = bonebank_node::engine::SurfaceEngine::new(
            dir.clone(),
            site.clone(),
            policy.diagnosis_categories.clone(),
        );
        let caller = bonebank_node::service::Caller {
            user: "bench".into(),
            project: "bench".into(),
            role: bonebank_schemas::Role::Researcher,
            sites: Vec::new(),
            email: None,
        };
        let mut alone = Vec::new();
        for i in 0..requests {
            let request = bonebank_schemas::wire::QueryRequest {
                sql: Some(bench_sql(i)),
                query: None,
                loss: None,
                purpose: None,
            };
            let query = bonebank_node::service::QueryService::parse(&request)?;
            let plan = service
                .plan_now(&service.check(&caller, &query, None)?)
                .await?;
            let started = Instant::now();
            bonebank_node::engine::QueryEngine::aggregate(&engine, &plan).await?;
            alone.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok::<_, Error>((
            load_ms,
            Latency::of(fresh),
            Latency::of(remembered),
            Latency::of(alone.split_off(1)),
            served_peak,
        ))
    })?;
    // DuckDB gets the very surface the node queries, as Parquet.
    let surface = work.path().join("surface.parquet");
    write_surface(&dir, &site, &policy.diagnosis_categories, &surface)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/duckdb_query.py");
    let duckdb = std::process::Command::new("python3")
        .args([
            script,
            &surface.display().to_string(),
            &requests.to_string(),
            &policy.max_samples_per_donor.to_string(),
            &policy
                .groups_per_donor
                .get("sample_type")
                .copied()
                .unwrap_or(policy.max_groups_per_donor)
                .to_string(),
        ])
        .output()
        .map_err(|e| format!("python3 could not run: {e}"))
        .and_then(|out| {
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
            } else {
                Err(format!(
                    "DuckDB baseline failed (pip install duckdb): {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ))
            }
        });
    Ok(QueryBench {
        samples: counts.samples,
        load_ms,
        fresh,
        remembered,
        engine,
        duckdb,
        served_peak_rss_kib,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Writes the node's query surface of `dir`'s current version (the rows
/// the engine reads: donors, diagnoses and derived dimensions joined in)
/// to a Parquet file.
fn write_surface(
    dir: &DataDir,
    site: &SiteId,
    categories: &[String],
    path: &std::path::Path,
) -> Result<()> {
    let (_, batches) = bonebank_node::engine::surface::load(dir, site, categories)?;
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, bonebank_node::engine::surface::schema(), None)
            .map_err(|e| Error::Internal(e.to_string()))?;
    for b in &batches {
        writer
            .write(b)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    writer.close().map_err(|e| Error::Internal(e.to_string()))?;
    Ok(())
}

impl fmt::Display for QueryBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "node query over HTTPS with mutual TLS, DE-LUE with {} samples, one client, sequential requests",
            self.samples
        )?;
        writeln!(f, "  query: {}", bench_sql(0))?;
        writeln!(
            f,
            "  first query (loads the dataset version): {:.1} ms",
            self.load_ms
        )?;
        writeln!(f, "  fresh queries (noise + ledger):  {}", self.fresh)?;
        writeln!(f, "  remembered repeats:              {}", self.remembered)?;
        writeln!(f, "  engine alone, in process:        {}", self.engine)?;
        match &self.duckdb {
            Ok(lines) => write!(f, "{lines}")?,
            Err(e) => write!(f, "  DuckDB baseline not run: {e}")?,
        }
        if let Some(kib) = self.served_peak_rss_kib {
            write!(
                f,
                "\npeak RSS while the node loaded and served (node, client and the data generator): {} MiB",
                kib / 1024
            )?;
        }
        if let Some(kib) = self.peak_rss_kib {
            write!(
                f,
                "\npeak RSS of the benchmark process, all steps: {} MiB",
                kib / 1024
            )?;
        }
        Ok(())
    }
}
