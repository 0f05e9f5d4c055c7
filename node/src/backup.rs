//! A node's backup and restore. A backup holds the state database (the
//! ledger, the remembered releases, stewards' tickets, the catalogues and
//! the audit log), copied with SQLite's online backup while the node
//! answers, and the current dataset version: its manifest and Parquet
//! files, each checked against the checksum the manifest records. The audit
//! chain of the copy is verified before the backup is put in place, and
//! again before a restore, which also checks every file's checksum.
//!
//! ```text
//! BACKUP/backup.json           what it holds: site, dataset version, audit head
//! BACKUP/SHA256SUMS            every file's SHA-256 (`sha256sum -c` reads it)
//! BACKUP/state/node.sqlite
//! BACKUP/data/manifest.json
//! BACKUP/data/tables/<table>-<sha256 prefix>.parquet
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use bonebank_engine::dataset::{DataDir, Manifest};
use bonebank_service::backup::{self as frame, Writer};
use rusqlite::{Connection, OpenFlags};

use crate::audit::{self, Intact};
use crate::config::NodeConfig;
use crate::{Error, Result};

/// The layout of a node's backup (`backup.json`'s `format`).
const FORMAT: u32 = 1;
const KIND: &str = "bonebank-node";
const STATE: &str = "state/node.sqlite";
const MANIFEST: &str = "data/manifest.json";

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub dir: PathBuf,
    pub dataset_version: Option<String>,
    pub audit: Intact,
    /// Releases remembered in it (answered again as they are, for free).
    pub releases: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dataset version {}, {} remembered releases, audit log of {} entries intact (head {})",
            self.dataset_version.as_deref().unwrap_or("none"),
            self.releases,
            self.audit.entries,
            self.audit.head
        )
    }
}

/// Backs the node up to `to` (a new folder) while it runs.
pub fn backup(config: &NodeConfig, to: &Path) -> Result<Summary> {
    let writer = Writer::begin(to)?;
    writer.database(&config.state_db(), STATE)?;
    let (audit, releases) = check_state(&writer.path(STATE))?;

    let data = DataDir::new(&config.data_dir);
    let manifest = data.manifest()?;
    if let Some(version) = &manifest.current {
        for file in version.tables.values() {
            let source = config.data_dir.join("tables").join(&file.file);
            if !source.exists() {
                return Err(Error::Usage(format!(
                    "{} went away during the backup (an import replaced the dataset); run the backup again",
                    source.display()
                )));
            }
            let sum = writer.file(&source, &format!("data/tables/{}", file.file))?;
            if sum != file.sha256 {
                return Err(Error::Usage(format!(
                    "{} does not match the checksum the manifest records for it: the data directory is damaged, and no backup was written",
                    source.display()
                )));
            }
        }
    }
    write_json(&writer.path(MANIFEST), &manifest)?;
    let about = serde_json::json!({
        "format": FORMAT,
        "kind": KIND,
        "bonebank": env!("CARGO_PKG_VERSION"),
        "site_id": config.site_id.as_str(),
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "dataset_version": manifest.current.as_ref().map(|v| v.id.clone()),
        "state_version": crate::store::STATE_VERSION,
        "audit": {"entries": audit.entries, "head": audit.head},
        "releases": releases,
    });
    let dir = writer.finish(&about)?;
    Ok(Summary {
        dir,
        dataset_version: manifest.current.map(|v| v.id),
        audit,
        releases,
    })
}

/// Restores the node from a backup: refused unless every checksum and the
/// audit chain verify, the backup is of this site, and the node's own
/// state, if any, may be put aside (`replace`, with the node stopped).
pub fn restore(config: &NodeConfig, from: &Path, replace: bool) -> Result<Summary> {
    frame::verify(from)?;
    let about = frame::about(from)?;
    if about["kind"] != KIND || about["format"].as_u64() != Some(u64::from(FORMAT)) {
        return Err(Error::Usage(format!(
            "{} is not a backup of a bonebank node this version reads (kind {}, format {})",
            from.display(),
            about["kind"],
            about["format"]
        )));
    }
    if about["site_id"] != config.site_id.as_str() {
        return Err(Error::Usage(format!(
            "{} is a backup of {}, not of {}",
            from.display(),
            about["site_id"].as_str().unwrap_or("another site"),
            config.site_id
        )));
    }
    let (audit, releases) = check_state(&from.join(STATE))?;
    let manifest: Manifest = {
        let path = from.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
    };

    let target = config.state_db();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    if target.exists() {
        if !replace {
            return Err(Error::Usage(format!(
                "the node has state at {} already; stop the node and add --replace to put it aside (it is kept beside, as .replaced-<time>)",
                target.display()
            )));
        }
        let _held = in_use(config, &target)?;
        frame::put_aside(&target, &stamp)?;
    }
    frame::restore_file(&from.join(STATE), &target)?;

    if let Some(version) = &manifest.current {
        let tables = config.data_dir.join("tables");
        for file in version.tables.values() {
            let dest = tables.join(&file.file);
            if dest.exists() && frame::sha256(&dest)? == file.sha256 {
                continue;
            }
            frame::restore_file(&from.join(format!("data/tables/{}", file.file)), &dest)?;
        }
    }
    let current = config.data_dir.join("manifest.json");
    let same = DataDir::new(&config.data_dir)
        .manifest()
        .is_ok_and(|m| m.current == manifest.current);
    if !same {
        if current.exists() {
            let aside = config
                .data_dir
                .join(format!("manifest.json.replaced-{stamp}"));
            fs::rename(&current, &aside).map_err(Error::io(&aside))?;
        }
        frame::restore_file(&from.join(MANIFEST), &current)?;
    }
    Ok(Summary {
        dir: from.to_owned(),
        dataset_version: manifest.current.map(|v| v.id),
        audit,
        releases,
    })
}

/// A copied state database's audit chain (it must be intact) and how many
/// releases it remembers.
fn check_state(path: &Path) -> Result<(Intact, i64)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let intact = audit::verify(&conn)?.map_err(Error::AuditBroken)?;
    let releases: i64 = conn.query_row("SELECT COUNT(*) FROM releases", [], |r| r.get(0))?;
    Ok((intact, releases))
}

/// The lock a serving node holds on its state directory (`node.lock`),
/// for as long as the returned file is open.
pub fn hold(config: &NodeConfig) -> Result<fs::File> {
    Ok(frame::hold(&config.state_dir, "node.lock")?)
}

/// Refuses while a node serves from this state directory, or holds the
/// database in a write.
fn in_use(config: &NodeConfig, path: &Path) -> Result<fs::File> {
    let held = hold(config).map_err(|_| {
        Error::Usage(format!(
            "{} is in use: stop the node before restoring",
            path.display()
        ))
    })?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    match conn.execute_batch("BEGIN EXCLUSIVE; ROLLBACK;") {
        Ok(()) => Ok(held),
        Err(_) => Err(Error::Usage(format!(
            "{} is in use: stop the node before restoring",
            path.display()
        ))),
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Engine(e.to_string()))?;
    fs::write(path, format!("{text}\n")).map_err(Error::io(path))
}
