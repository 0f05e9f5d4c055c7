//! A site's data directory: a manifest naming the current dataset version and
//! the Parquet file of each table. Every change is a [`Transaction`] that
//! stages new table files beside the old ones and switches the manifest with
//! one atomic rename, so a crash or a full disk never leaves a half-written
//! dataset behind.
//!
//! ```text
//! DATA_DIR/manifest.json
//! DATA_DIR/tables/donors-<sha256 prefix>.parquet
//! DATA_DIR/tables/samples-<sha256 prefix>.parquet
//! ```

mod manifest;
mod transaction;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use bonebank_schemas::Table;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

pub use manifest::{DatasetVersion, Manifest, TableFile, VersionRecord};
pub use transaction::write_atomically;
pub use transaction::{Transaction, remove_leftovers};

use crate::{Error, Result};

const MANIFEST: &str = "manifest.json";
const TABLES: &str = "tables";

/// A site's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn manifest_path(&self) -> PathBuf {
        self.path.join(MANIFEST)
    }

    fn tables_path(&self) -> PathBuf {
        self.path.join(TABLES)
    }

    /// The manifest; an empty one if nothing was ever imported.
    pub fn manifest(&self) -> Result<Manifest> {
        Manifest::read(&self.manifest_path())
    }

    /// When the manifest was last replaced and its size: a new version
    /// (always a new manifest, put in place by rename) changes it. `None`
    /// before the first import.
    pub fn manifest_stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        let meta = std::fs::metadata(self.manifest_path()).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// The current dataset version, if any import has happened.
    pub fn current(&self) -> Result<Option<DatasetVersion>> {
        Ok(self.manifest()?.current)
    }

    /// The Parquet file of `table` in `version`, if the version has that table.
    pub fn table_path(&self, version: &DatasetVersion, table: Table) -> Option<PathBuf> {
        version
            .tables
            .get(&table)
            .map(|f| self.tables_path().join(&f.file))
    }

    /// Reads `table` of `version`, only the named columns (all if `None`).
    pub fn read_table(
        &self,
        version: &DatasetVersion,
        table: Table,
        columns: Option<&[&str]>,
    ) -> Result<Option<ParquetRecordBatchReader>> {
        let Some(path) = self.table_path(version, table) else {
            return Ok(None);
        };
        let file = File::open(&path).map_err(Error::io(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64 * 1024);
        let builder = match columns {
            Some(names) => {
                let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
                builder.with_projection(mask)
            }
            None => builder,
        };
        Ok(Some(builder.build()?))
    }

    /// Reads a whole table of `version` into memory; empty if the version
    /// does not have it.
    pub fn read_all(&self, version: &DatasetVersion, table: Table) -> Result<Vec<RecordBatch>> {
        match self.read_table(version, table, None)? {
            Some(reader) => Ok(reader.collect::<Result<Vec<_>, _>>()?),
            None => Ok(Vec::new()),
        }
    }

    /// Reads a whole table of the current version into memory.
    pub fn load_table(&self, table: Table) -> Result<Vec<RecordBatch>> {
        match self.current()? {
            Some(version) => self.read_all(&version, table),
            None => Ok(Vec::new()),
        }
    }
}
