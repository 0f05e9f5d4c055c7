//! One atomic change of a data directory. Table files are written to staging
//! files inside `tables/`, fsynced, renamed to their content-addressed names,
//! and only then does a new manifest replace the old one by rename. Until that
//! rename the old version stays current; dropping a transaction without
//! committing removes everything it staged (and any directory it created).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use bonebank_schemas::Table;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::{DataDir, DatasetVersion, Manifest, TableFile, VersionRecord};
use crate::{Error, Result};

/// Rows per Parquet row group: small enough that a query engine can spread a
/// table over both cores, large enough to compress well.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Prefix of staging files; leftovers of a crash are removed at the next commit.
const STAGING_PREFIX: &str = ".staging-";

/// An exclusive, uncommitted change of a data directory.
#[derive(Debug)]
pub struct Transaction {
    dir: DataDir,
    base: Manifest,
    staged: BTreeMap<Table, StagedTable>,
    created_dirs: Vec<PathBuf>,
    lock: Option<File>,
}

/// A table being written to its staging file.
struct StagedTable {
    temp: NamedTempFile,
    writer: Option<ArrowWriter<HashingWriter<BufWriter<File>>>>,
    rows: u64,
}

impl std::fmt::Debug for StagedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedTable")
            .field("path", &self.temp.path())
            .field("rows", &self.rows)
            .finish()
    }
}

/// Passes writes through while hashing them, so a file's hash costs no second read.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Transaction {
    /// Takes the data directory's lock and reads its manifest. The directory is
    /// created if missing, and removed again if the transaction is dropped.
    pub fn begin(dir: &DataDir) -> Result<Self> {
        let mut created_dirs = Vec::new();
        for path in [dir.path().to_owned(), dir.tables_path()] {
            if !path.exists() {
                create_dir_recording(&path, &mut created_dirs)?;
            }
        }
        let mut tx = Self {
            dir: dir.clone(),
            base: Manifest::default(),
            staged: BTreeMap::new(),
            created_dirs,
            lock: None,
        };
        let lock = File::open(dir.path()).map_err(Error::io(dir.path()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Busy(dir.path().to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(dir.path())(e)),
        }
        tx.lock = Some(lock);
        // What an import killed before its commit left, before this one
        // stages anything of its own.
        remove_staging(dir);
        tx.base = dir.manifest()?;
        Ok(tx)
    }

    /// The version current when the transaction began.
    pub fn base(&self) -> Option<&DatasetVersion> {
        self.base.current.as_ref()
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// Starts (or restarts, discarding what was written) the new file of `table`.
    pub fn stage(&mut self, table: Table) -> Result<()> {
        let tables = self.dir.tables_path();
        let temp = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .suffix(".parquet")
            .tempfile_in(&tables)
            .map_err(Error::io(&tables))?;
        let file = temp.reopen().map_err(Error::io(temp.path()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let sink = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
        };
        let writer = ArrowWriter::try_new(sink, table.arrow_schema(), Some(props))?;
        self.staged.insert(
            table,
            StagedTable {
                temp,
                writer: Some(writer),
                rows: 0,
            },
        );
        Ok(())
    }

    /// Whether `table` is being replaced in this transaction.
    pub fn is_staged(&self, table: Table) -> bool {
        self.staged.contains_key(&table)
    }

    /// Appends rows to the staged file of `table`.
    pub fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()> {
        let staged = self
            .staged
            .get_mut(&table)
            .expect("table staged before writing");
        let writer = staged.writer.as_mut().expect("table not finished");
        writer.write(batch)?;
        staged.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes every staged file, moves each to its final name and makes the
    /// new version current. Returns the new version.
    pub fn commit(mut self, change: String) -> Result<DatasetVersion> {
        let tables_dir = self.dir.tables_path();
        let mut tables = self.base().map(|v| v.tables.clone()).unwrap_or_default();
        for (table, staged) in &mut self.staged {
            let sha256 = staged.finish()?;
            let file = format!("{table}-{}.parquet", &sha256[..16]);
            tables.insert(
                *table,
                TableFile {
                    file,
                    rows: staged.rows,
                    sha256,
                },
            );
        }
        for (table, staged) in std::mem::take(&mut self.staged) {
            let target = tables_dir.join(&tables[&table].file);
            staged
                .temp
                .persist(&target)
                .map_err(|e| Error::io(&target)(e.error))?;
        }
        sync_dir(&tables_dir)?;

        let version = DatasetVersion::new(tables, change, chrono::Utc::now());
        let mut manifest = self.base.clone();
        if let Some(old) = manifest.current.replace(version.clone()) {
            manifest.history.push(VersionRecord::from(&old));
        }
        let manifest_path = self.dir.manifest_path();
        write_atomically(self.dir.path(), &manifest_path, |w| {
            serde_json::to_writer_pretty(&mut *w, &manifest)
                .map_err(|e| Error::io(&manifest_path)(e.into()))?;
            w.write_all(b"\n").map_err(Error::io(&manifest_path))
        })?;
        self.created_dirs.clear();
        self.remove_unreferenced(&version);
        Ok(version)
    }

    /// Removes table files no longer in the current version, and staging files
    /// a crash left behind. Failure here costs only disk space, so it is logged.
    fn remove_unreferenced(&self, version: &DatasetVersion) {
        let keep: Vec<&str> = version.tables.values().map(|f| f.file.as_str()).collect();
        let tables = self.dir.tables_path();
        remove_files(&tables, |name| !keep.contains(&name));
        remove_files(self.dir.path(), |name| name.starts_with(STAGING_PREFIX));
    }
}

/// Removes the staging files and folders an import that was killed left
/// in `dir`. The caller holds the directory's lock, or no import runs.
fn remove_staging(dir: &DataDir) {
    let entries = [dir.path().to_owned(), dir.tables_path()]
        .into_iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(entry.path()),
            _ => fs::remove_file(entry.path()),
        };
        match removed {
            Ok(()) => {
                tracing::info!(file = %entry.path().display(), "removed what an interrupted import left")
            }
            Err(e) => {
                tracing::warn!(file = %entry.path().display(), error = %e, "could not remove what an interrupted import left")
            }
        }
    }
}

/// At a node's start: removes what an import killed before its commit left
/// in `dir`, unless an import holds the directory now.
pub fn remove_leftovers(dir: &DataDir) {
    let Ok(lock) = File::open(dir.path()) else {
        return;
    };
    if lock.try_lock().is_ok() {
        remove_staging(dir);
    }
}

/// Removes the plain files in `dir` whose names match `unwanted`.
fn remove_files(dir: &Path, unwanted: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file
            && unwanted(&entry.file_name().to_string_lossy())
            && let Err(e) = fs::remove_file(entry.path())
        {
            tracing::warn!(file = %entry.path().display(), error = %e, "could not remove an unused file");
        }
    }
}

impl StagedTable {
    /// Closes the Parquet file and fsyncs it; returns its SHA-256, hex.
    fn finish(&mut self) -> Result<String> {
        let writer = self.writer.take().expect("finished once");
        let mut sink = writer.into_inner()?;
        sink.flush().map_err(Error::io(self.temp.path()))?;
        let file = sink
            .inner
            .into_inner()
            .map_err(|e| Error::io(self.temp.path())(e.into_error()))?;
        file.sync_all().map_err(Error::io(self.temp.path()))?;
        Ok(hex::encode(sink.hash.finalize()))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // Staged temp files delete themselves; then undo created directories.
        self.staged.clear();
        for dir in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn create_dir_recording(path: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        create_dir_recording(parent, created)?;
    }
    fs::create_dir(path).map_err(Error::io(path))?;
    created.push(path.to_owned());
    Ok(())
}

/// Writes `target` through a temp file in `dir`: write, fsync, rename, fsync the
/// directory. Readers see the old file or the new one, never a mix.
/// The writer's own errors (`E`, e.g. a caller's) pass through as they are.
pub fn write_atomically<E: From<Error>>(
    dir: &Path,
    target: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<(), E>,
) -> Result<(), E> {
    let temp = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempfile_in(dir)
        .map_err(Error::io(dir))?;
    {
        let mut w = BufWriter::new(temp.as_file());
        write(&mut w)?;
        w.flush().map_err(Error::io(temp.path()))?;
    }
    temp.as_file().sync_all().map_err(Error::io(temp.path()))?;
    temp.persist(target)
        .map_err(|e| Error::io(target)(e.error))?;
    Ok(sync_dir(dir)?)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}
