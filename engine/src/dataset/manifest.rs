//! The manifest: which dataset version is current, which file holds each of
//! its tables, and the history of earlier versions.

use std::collections::BTreeMap;
use std::path::Path;

use bonebank_schemas::Table;
use serde::{Deserialize, Serialize};

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
    /// `<UTC time>-<48 random bits>`, e.g. `20261122T104512Z-3f9a1c2b7d0e`:
    /// unique, and independent of the data.
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
    /// A new version: its id is the time and 48 random bits, so it names
    /// the version without saying anything about its contents (a hash of
    /// them would let anyone holding all the data but one donor's test,
    /// offline, whether that donor is in it). The content hashes stay in
    /// the manifest, on the site's own disk.
    pub(crate) fn new(
        tables: BTreeMap<Table, TableFile>,
        change: String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            id: Self::new_id(now),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            change,
            tables,
        }
    }

    /// `<UTC time to the second>-<12 hex digits from the OS's random source>`.
    fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
        let bits: u64 = rand::random::<u64>() >> 16;
        format!("{}-{bits:012x}", now.format("%Y%m%dT%H%M%SZ"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(rows: u64, sha256: &str) -> BTreeMap<Table, TableFile> {
        BTreeMap::from([(
            Table::Samples,
            TableFile {
                file: format!("samples-{sha256}.parquet"),
                rows,
                sha256: sha256.into(),
            },
        )])
    }

    /// The published id must not be a function of the contents: the same
    /// tables at the same instant get different ids, and ids of different
    /// contents share nothing but the time.
    #[test]
    fn a_version_id_says_nothing_about_the_data() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T19:23:19.123Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let a = DatasetVersion::new(tables(10, "ab"), "import".into(), now);
        let b = DatasetVersion::new(tables(10, "ab"), "import".into(), now);
        assert_ne!(
            a.id, b.id,
            "equal contents and time must not give equal ids"
        );
        assert!(a.id.starts_with("20261206T192319Z-"), "{}", a.id);
        let suffix = &a.id["20261206T192319Z-".len()..];
        assert_eq!(suffix.len(), 12);
        assert!(suffix.bytes().all(|c| c.is_ascii_hexdigit()));
        // 48 random bits: 200 ids never repeat.
        let ids: std::collections::BTreeSet<String> = (0..200)
            .map(|_| DatasetVersion::new(tables(1, "00"), String::new(), now).id)
            .collect();
        assert_eq!(ids.len(), 200);
    }
}
