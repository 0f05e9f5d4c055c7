//! Synthetic site datasets that look like the real sites: fracture-surgery
//! collections in Lübeck and Odense, a clinical immunology biobank in Næstved.
//! The same site, donor count and seed always give identical files.

mod profiles;
mod rows;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::csv::Writer as CsvWriter;
use bonebank_schemas::{SiteId, Table, ValueSet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use profiles::{Draw, first_day_of};
pub use profiles::{FractureSite, ImmunologySite, LAST_DAY};
use rows::Rows;
pub use rows::Sink;

use crate::dataset::{DataDir, DatasetVersion, Transaction};
use crate::{Error, Result, progress};

/// The kind of collection a synthetic site holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKind {
    /// Bone marrow aspirates, RIA aspirates, cancellous bone, MSC cultures and
    /// blood from fracture surgery.
    Fracture,
    /// Blood donors and immunology patients: plasma, serum, buffy coat, DNA.
    Immunology,
}

/// A site's collection profile with its parameters.
#[derive(Debug, Clone, Copy)]
pub enum Profile {
    Fracture(FractureSite),
    Immunology(ImmunologySite),
}

impl Profile {
    /// The profile of a demo site, or of `kind` for any other site.
    pub fn for_site(site: &SiteId, kind: Option<ProfileKind>) -> Result<Self> {
        let profile = match (site.as_str(), kind) {
            (SiteId::LUEBECK, None | Some(ProfileKind::Fracture)) => Self::Fracture(FractureSite {
                first_day: first_day_of(2012),
                hip: 0.55,
                shaft: 0.20,
                ln_liquid: 0.10,
            }),
            (SiteId::ODENSE, None | Some(ProfileKind::Fracture)) => Self::Fracture(FractureSite {
                first_day: first_day_of(2015),
                hip: 0.60,
                shaft: 0.15,
                ln_liquid: 0.25,
            }),
            (SiteId::NAESTVED, None | Some(ProfileKind::Immunology)) => {
                Self::Immunology(ImmunologySite {
                    first_day: first_day_of(2008),
                    blood_donors: 0.80,
                })
            }
            (_, Some(ProfileKind::Fracture)) => Self::Fracture(FractureSite {
                first_day: first_day_of(2014),
                hip: 0.55,
                shaft: 0.20,
                ln_liquid: 0.15,
            }),
            (_, Some(ProfileKind::Immunology)) => Self::Immunology(ImmunologySite {
                first_day: first_day_of(2010),
                blood_donors: 0.80,
            }),
            (_, None) => {
                return Err(Error::Usage(format!(
                    "{site} has no synthetic profile of its own; choose one with --profile fracture or --profile immunology"
                )));
            }
        };
        Ok(profile)
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub site: SiteId,
    pub profile: Profile,
    pub donors: u64,
    pub seed: u64,
    /// Stop adding donors once this many samples exist (for benchmarks).
    pub max_samples: Option<u64>,
}

/// Counts of what was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub donors: u64,
    pub samples: u64,
    pub diagnoses: u64,
}

/// Generates the rows of `spec` into `sink`.
pub fn generate(spec: &Spec, sink: &mut dyn Sink) -> Result<Counts> {
    let seed: [u8; 32] = Sha256::digest(format!(
        "bonebank synthetic site {} seed {}",
        spec.site, spec.seed
    ))
    .into();
    let mut draw = Draw {
        rng: ChaCha8Rng::from_seed(seed),
    };
    let prefix = &spec.site.as_str()[3..];
    let mut rows = Rows::new(sink, prefix);
    let bar = progress::rows(spec.donors, &format!("generating {}", spec.site));
    for _ in 0..spec.donors {
        if spec.max_samples.is_some_and(|max| rows.samples >= max) {
            break;
        }
        match &spec.profile {
            Profile::Fracture(p) => p.donor(&mut draw, &mut rows)?,
            Profile::Immunology(p) => p.donor(&mut draw, &mut rows)?,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let counts = Counts {
        donors: rows.donors,
        samples: rows.samples,
        diagnoses: rows.diagnoses,
    };
    rows.finish()?;
    Ok(counts)
}

/// Generates into a new data directory as its first dataset version.
pub fn into_data_dir(spec: &Spec, dir: &DataDir) -> Result<(Counts, DatasetVersion)> {
    if dir.current()?.is_some() {
        return Err(Error::Usage(format!(
            "{} already holds a dataset; generate into a new directory",
            dir.path().display()
        )));
    }
    let mut tx = Transaction::begin(dir)?;
    for table in Table::ALL {
        tx.stage(*table)?;
    }
    let counts = generate(spec, &mut tx)?;
    let version = tx.commit(format!(
        "generate synthetic {} data: {} donors, seed {}",
        spec.site, counts.donors, spec.seed
    ))?;
    Ok((counts, version))
}

impl Sink for Transaction {
    fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()> {
        Ok(Transaction::write(self, table, batch)?)
    }
}

/// Writes `donors.csv`, `samples.csv` and `diagnoses.csv` into a directory,
/// as a site's export would look.
pub fn into_csv(spec: &Spec, out: &Path) -> Result<Counts> {
    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let mut sink = CsvSink::new(out)?;
    let counts = generate(spec, &mut sink)?;
    sink.persist()?;
    Ok(counts)
}

/// CSV files written through temp files, renamed into place when complete.
pub struct CsvSink {
    out: PathBuf,
    files: Vec<(Table, NamedTempFile, CsvWriter<BufWriter<File>>)>,
}

impl std::fmt::Debug for CsvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSink").field("out", &self.out).finish()
    }
}

impl CsvSink {
    pub fn new(out: &Path) -> Result<Self> {
        let files = Table::ALL
            .iter()
            .map(|table| {
                let temp = tempfile::Builder::new()
                    .prefix(".staging-")
                    .tempfile_in(out)
                    .map_err(Error::io(out))?;
                let file = temp.reopen().map_err(Error::io(temp.path()))?;
                Ok((
                    *table,
                    temp,
                    CsvWriter::new(BufWriter::with_capacity(1 << 20, file)),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            out: out.to_owned(),
            files,
        })
    }

    /// Flushes every file and moves it to `<table>.csv`.
    pub fn persist(self) -> Result<()> {
        for (table, temp, writer) in self.files {
            let target = self.out.join(format!("{table}.csv"));
            let file = writer
                .into_inner()
                .into_inner()
                .map_err(|e| Error::io(&target)(e.into_error()))?;
            file.sync_all().map_err(Error::io(&target))?;
            temp.persist(&target)
                .map_err(|e| Error::io(&target)(e.error))?;
        }
        Ok(())
    }
}

impl Sink for CsvSink {
    fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()> {
        let (_, _, writer) = self
            .files
            .iter_mut()
            .find(|(t, _, _)| *t == table)
            .expect("every table has a file");
        writer.write(batch)?;
        Ok(())
    }
}
