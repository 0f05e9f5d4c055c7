//! Backups of a service's state, taken while it runs: each SQLite database
//! through SQLite's online backup (a consistent copy, however busy the
//! service is), any other file copied as it is, a `backup.json` that says
//! what the backup holds, and a `SHA256SUMS` list of every file (the format
//! `sha256sum -c` reads, so a backup can be checked anywhere).
//!
//! A backup is written into a hidden folder beside its target and renamed
//! to the target only when everything is on disk: a backup stopped midway
//! (a crash, `kill -9`, a full disk) leaves no folder under the target's
//! name, and never touches an earlier backup or the service's own files.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The checksum list's name in a backup folder.
pub const SUMS: &str = "SHA256SUMS";
/// What the backup holds, as JSON.
pub const ABOUT: &str = "backup.json";

/// A backup being written: files go into a hidden folder beside `target`.
#[derive(Debug)]
pub struct Writer {
    partial: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Writer {
    /// Starts a backup to `target`, which must not exist yet: a backup
    /// never overwrites another (name each one, e.g. by its date).
    pub fn begin(target: &Path) -> Result<Self> {
        if target.exists() {
            return Err(Error::Usage(format!(
                "{} exists already; a backup goes to a new folder (e.g. one named by the date)",
                target.display()
            )));
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(Error::io(&parent))?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{} names no folder", target.display())))?
            .to_string_lossy()
            .into_owned();
        // What a backup to this target that was killed midway left.
        let leftover = format!(".{name}.partial-");
        for entry in fs::read_dir(&parent).map_err(Error::io(&parent))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&leftover) {
                fs::remove_dir_all(entry.path()).map_err(Error::io(entry.path()))?;
            }
        }
        let partial = parent.join(format!("{leftover}{}", std::process::id()));
        fs::create_dir(&partial).map_err(Error::io(&partial))?;
        Ok(Self {
            partial,
            target: target.to_owned(),
            done: false,
        })
    }

    /// Where a file of the backup is being written (its `name` is a path
    /// relative to the backup folder).
    pub fn path(&self, name: &str) -> PathBuf {
        self.partial.join(name)
    }

    /// Copies a SQLite database with SQLite's online backup: one read
    /// transaction, so the copy is the database at one moment, whatever the
    /// running service writes meanwhile.
    pub fn database(&self, source: &Path, name: &str) -> Result<()> {
        let fail =
            |e: rusqlite::Error| Error::Internal(format!("backing up {}: {e}", source.display()));
        if !source.exists() {
            return Err(Error::Usage(format!(
                "{} does not exist: is this the service's state directory?",
                source.display()
            )));
        }
        let from = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        from.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(fail)?;
        let dest = self.path(name);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        copy_database(&from, &dest).map_err(fail)?;
        sync(&dest)
    }

    /// Copies a file into the backup as `name`; returns its SHA-256.
    pub fn file(&self, source: &Path, name: &str) -> Result<String> {
        let dest = self.path(name);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let mut from = File::open(source).map_err(Error::io(source))?;
        let mut to = File::create(&dest).map_err(Error::io(&dest))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = from.read(&mut buf).map_err(Error::io(source))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            to.write_all(&buf[..n]).map_err(Error::io(&dest))?;
        }
        to.sync_all().map_err(Error::io(&dest))?;
        Ok(hex::encode(hash.finalize()))
    }

    /// Writes `backup.json` and the checksum list, and puts the backup in
    /// its place. Returns the backup's folder.
    pub fn finish(mut self, about: &serde_json::Value) -> Result<PathBuf> {
        let about_path = self.path(ABOUT);
        let text = serde_json::to_string_pretty(about)
            .map_err(|e| Error::Internal(format!("backup.json: {e}")))?;
        fs::write(&about_path, format!("{text}\n")).map_err(Error::io(&about_path))?;
        sync(&about_path)?;
        let mut lines = String::new();
        for name in files(&self.partial)? {
            lines.push_str(&format!("{}  {name}\n", sha256(&self.partial.join(&name))?));
        }
        let sums = self.path(SUMS);
        fs::write(&sums, lines).map_err(Error::io(&sums))?;
        sync(&sums)?;
        for dir in dirs(&self.partial)? {
            sync(&dir)?;
        }
        fs::rename(&self.partial, &self.target).map_err(Error::io(&self.target))?;
        if let Some(parent) = self.target.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync(parent)?;
        }
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for Writer {
    /// A backup that failed leaves nothing behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.partial);
        }
    }
}

/// The lock a serving service holds on its state directory (`lock`, a
/// file name in it) for as long as the returned file is open: a restore
/// refuses to run under it, and a second service from the same state
/// directory refuses to start.
pub fn hold(state_dir: &Path, lock: &str) -> Result<File> {
    fs::create_dir_all(state_dir).map_err(Error::io(state_dir))?;
    let path = state_dir.join(lock);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "a bonebank service is running from {} (it holds {}); stop it first",
            state_dir.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(&path)(e)),
    }
}

/// Puts a state database aside (with its write-ahead files) as
/// `<name>.replaced-<stamp>`, before a restore takes its place.
pub fn put_aside(db: &Path, stamp: &str) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let old = PathBuf::from(format!("{}{suffix}", db.display()));
        if old.exists() {
            let aside = PathBuf::from(format!("{}.replaced-{stamp}", old.display()));
            fs::rename(&old, &aside).map_err(Error::io(&aside))?;
        }
    }
    Ok(())
}

/// Copies an open SQLite database to `dest` with SQLite's online backup:
/// every page in one step, so one snapshot that the writers of the
/// database cannot restart; a writer holding a lock delays it a little
/// (bounded: about 30 s in all). The copy stands alone, without a
/// write-ahead log beside it.
pub fn copy_database(from: &Connection, dest: &Path) -> rusqlite::Result<()> {
    use rusqlite::backup::StepResult;
    let mut to = Connection::open(dest)?;
    {
        let backup = rusqlite::backup::Backup::new(from, &mut to)?;
        let mut waits = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if waits < 300 => {
                    waits += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked".into()),
                    ));
                }
            }
        }
    }
    to.execute_batch("PRAGMA journal_mode = DELETE;")
}

/// Checks a backup folder against its checksum list: every listed file is
/// there with its checksum, and nothing but the list itself is unlisted.
/// Returns the listed files.
pub fn verify(dir: &Path) -> Result<Vec<String>> {
    let sums = dir.join(SUMS);
    let list = File::open(&sums).map_err(|e| {
        Error::Usage(format!(
            "{} is not a bonebank backup: {}: {e}",
            dir.display(),
            sums.display()
        ))
    })?;
    let mut listed = Vec::new();
    for line in BufReader::new(list).lines() {
        let line = line.map_err(Error::io(&sums))?;
        let Some((sum, name)) = line.split_once("  ") else {
            return Err(Error::Usage(format!(
                "{}: the line {line:?} is not `<sha256>  <file>`",
                sums.display()
            )));
        };
        if name.split('/').any(|p| p == ".." || p.is_empty()) || name.starts_with('/') {
            return Err(Error::Usage(format!(
                "{}: {name:?} is outside the backup",
                sums.display()
            )));
        }
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::Usage(format!(
                "the backup {} lacks {name}, which its checksum list names",
                dir.display()
            )));
        }
        if sha256(&path)? != sum {
            return Err(Error::Usage(format!(
                "{name} in the backup {} does not match its checksum: the backup is damaged",
                dir.display()
            )));
        }
        listed.push(name.to_owned());
    }
    for name in files(dir)? {
        if name != SUMS && !listed.contains(&name) {
            return Err(Error::Usage(format!(
                "{name} in the backup {} is not in its checksum list",
                dir.display()
            )));
        }
    }
    if !listed.iter().any(|n| n == ABOUT) {
        return Err(Error::Usage(format!(
            "the backup {} has no {ABOUT}",
            dir.display()
        )));
    }
    Ok(listed)
}

/// What `backup.json` of a verified backup says.
pub fn about(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join(ABOUT);
    let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Puts a file of a backup in place of `target`, through a temporary file
/// beside it: a restore stopped midway leaves the old file or the new one.
pub fn restore_file(source: &Path, target: &Path) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let temp = dir.join(format!(
        ".{}.restoring-{}",
        target.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    fs::copy(source, &temp).map_err(Error::io(&temp))?;
    sync(&temp)?;
    fs::rename(&temp, target).map_err(Error::io(target))?;
    sync(dir)
}

/// The SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io(path))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(Error::io(path))?;
    Ok(hex::encode(hash.finalize()))
}

/// Every file below `root`, as sorted paths relative to it with `/`.
fn files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("below the root");
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `root` and every folder below it.
fn dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        for entry in fs::read_dir(&out[i]).map_err(Error::io(&out[i]))? {
            let path = entry.map_err(Error::io(&out[i]))?.path();
            if path.is_dir() {
                out.push(path);
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Flushes a file or folder to disk.
fn sync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_appears_whole_or_not_at_all_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.sqlite");
        let conn = crate::state::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        let plain = tmp.path().join("notes.txt");
        fs::write(&plain, "hello").unwrap();

        let target = tmp.path().join("backups/2026-12-07");
        {
            // Dropped before it finishes: nothing under the target's name,
            // and no hidden folder left either.
            let w = Writer::begin(&target).unwrap();
            w.database(&db, "state.sqlite").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(tmp.path().join("backups")).unwrap().count(), 0);

        let w = Writer::begin(&target).unwrap();
        w.database(&db, "state.sqlite").unwrap();
        w.file(&plain, "files/notes.txt").unwrap();
        let done = w.finish(&serde_json::json!({"format": 1})).unwrap();
        assert_eq!(done, target);
        let listed = verify(&target).unwrap();
        assert_eq!(listed, [ABOUT, "files/notes.txt", "state.sqlite"]);
        let copy = Connection::open(target.join("state.sqlite")).unwrap();
        let n: i64 = copy
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        drop(copy);
        // A second backup to the same folder is refused.
        assert!(Writer::begin(&target).is_err());

        // Damage of any kind is found and named.
        fs::write(target.join("files/notes.txt"), "hellO").unwrap();
        let e = verify(&target).unwrap_err().to_string();
        assert!(
            e.contains("files/notes.txt") && e.contains("checksum"),
            "{e}"
        );
        fs::write(target.join("files/notes.txt"), "hello").unwrap();
        fs::write(target.join("extra"), "x").unwrap();
        assert!(
            verify(&target)
                .unwrap_err()
                .to_string()
                .contains("not in its checksum list")
        );
        fs::remove_file(target.join("extra")).unwrap();
        fs::remove_file(target.join("state.sqlite")).unwrap();
        assert!(
            verify(&target)
                .unwrap_err()
                .to_string()
                .contains("lacks state.sqlite")
        );
    }
}
