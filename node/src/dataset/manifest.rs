//! The manifest: which dataset version is current, which file holds each of
//! its tables, and the history of earlier versions.

use std::collections::BTreeMap;
use std::path::Path;

use bonebank_schemas::Table;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The manifest layout this code reads and writes.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The dataset version queries run against.
    pub current: Option<DatasetVersion>,
    /// Earlier versions, oldest first; their files are removed once replaced.
    pub history: Vec<VersionRecord>,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            format: FORMAT,
            current: None,
            history: Vec::new(),
        }
    }
}

/// One dataset version: an immutable set of table files. Releases of query
/// results are keyed on its id, so a new import means fresh answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    /// `<UTC time>-<content hash prefix>`, e.g. `20261122T104512Z-3f9a1c2b7d0e`.
    pub id: String,
    /// RFC 3339 time of the commit.
    pub created_at: String,
    /// What made this version, e.g. "import samples from export.csv".
    pub change: String,
    pub tables: BTreeMap<Table, TableFile>,
}

/// A table's file within a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// File name inside `tables/`.
    pub file: String,
    pub rows: u64,
    /// SHA-256 of the Parquet file, hex.
    pub sha256: String,
}

/// What the history keeps of a replaced version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub id: String,
    pub created_at: String,
    pub change: String,
    pub rows: BTreeMap<Table, u64>,
}

impl From<&DatasetVersion> for VersionRecord {
    fn from(v: &DatasetVersion) -> Self {
        Self {
            id: v.id.clone(),
            created_at: v.created_at.clone(),
            change: v.change.clone(),
            rows: v.tables.iter().map(|(t, f)| (*t, f.rows)).collect(),
        }
    }
}

impl DatasetVersion {
    /// A version id from the content (each table's hash and row count), the
    /// previous version and the time: equal ids mean the same data.
    pub(crate) fn new(
        previous: Option<&DatasetVersion>,
        tables: BTreeMap<Table, TableFile>,
        change: String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let created_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut hash = Sha256::new();
        hash.update(previous.map_or("", |p| p.id.as_str()));
        hash.update(&created_at);
        for (table, file) in &tables {
            hash.update(format!("\n{table} {} {}", file.rows, file.sha256));
        }
        let digest = hex::encode(hash.finalize());
        Self {
            id: format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &digest[..12]),
            created_at,
            change,
            tables,
        }
    }

    /// Rows in `table`, 0 if the version does not have it.
    pub fn rows(&self, table: Table) -> u64 {
        self.tables.get(&table).map_or(0, |f| f.rows)
    }
}

impl Manifest {
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let damaged = |message: String| Error::DamagedManifest {
            path: path.to_owned(),
            message,
        };
        let manifest: Self = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(damaged(format!(
                "format {} is not the format {FORMAT} this version of bonebank reads",
                manifest.format
            )));
        }
        Ok(manifest)
    }
}
