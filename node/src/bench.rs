//! Benchmarks on synthetic data, run from the command line so their figures
//! come from a release build on the machine at hand.

use std::fmt;
use std::time::{Duration, Instant};

use bonebank_schemas::{SiteId, Table};

use crate::dataset::DataDir;
use crate::generate::{self, Profile, Spec};
use crate::{Error, Result, import};

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
fn peak_rss_kib() -> Option<u64> {
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
