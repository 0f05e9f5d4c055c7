//! The audit log: every request with its outcome, every release (with ε and
//! dataset version), refusal, policy change and newly served dataset
//! version, appended to a hash-chained table in the node's state database.
//! Each entry holds the hash of the one before, so `bonebank-node audit
//! verify` finds the first entry that was changed, removed or put out of
//! order. The log holds queries and decisions, never counts or row values.

use std::io::Write;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::error::Broken;
use crate::{Error, Result};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
";

/// What the log says about one question (kind `request`): who asked, what,
/// under which rule, and what came of it. Never a count or a row value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Question {
    pub user: String,
    pub project: String,
    pub role: String,
    /// The loss asked for, then the loss the checked question spends.
    pub loss: Option<f64>,
    /// The checked question, as the site ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The SQL as sent, when it did not get as far as a checked question
    /// (first 2,000 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The policy rule that matched (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The steward whose approval ran the question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<String>,
    /// The release's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// `released`, `remembered`, `pending_approval`, `policy_refused`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// A refusal's message, as the caller saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The loss charged by this release (0 for a remembered one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charged: Option<f64>,
}

/// A steward's decision on a ticket (kind `decision`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub ticket: String,
    pub requester: String,
    /// `approve` or `reject`.
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An entry's detail as the log stores it.
pub fn detail(entry: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(entry).expect("audit entries are plain data")
}

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored and exported.
pub use bonebank_schemas::wire::AuditEntry as Entry;

/// Which entries a steward looks at: all filters given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// Who caused the entry.
    #[serde(default)]
    pub user: Option<String>,
    /// The project the entry's question was asked for.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Entries before this one (for the next page).
    #[serde(default)]
    pub before: Option<i64>,
}

/// The hash of an entry: SHA-256 over the previous hash and the entry's
/// fields, each on its own line, the detail exactly as stored.
pub fn hash(prev: &str, seq: i64, at: &str, kind: &str, actor: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), at, kind, actor, detail] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Appends an entry. Call it inside the transaction whose effect it records,
/// so that both happen or neither does.
pub fn append(
    conn: &Connection,
    kind: &str,
    actor: &str,
    detail: &serde_json::Value,
) -> Result<i64> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let detail = detail.to_string();
    let h = hash(&prev, seq, &at, kind, actor, &detail);
    conn.prepare_cached(
        "INSERT INTO audit (seq, at, kind, actor, detail, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq, at, kind, actor, detail, prev, h])?;
    Ok(seq)
}

/// The latest entry's `detail` of a kind, if any.
pub fn last_detail(conn: &Connection, kind: &str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT detail FROM audit WHERE kind = ?1 ORDER BY seq DESC LIMIT 1",
            [kind],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// A chain that checks out: how many entries, and the last hash (worth
/// writing down: removing entries from the end can only be seen against it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    pub entries: i64,
    pub head: String,
}

/// Walks the whole chain in order.
pub fn verify(conn: &Connection) -> Result<Result<Intact, Broken>> {
    let mut stmt = conn.prepare(IN_ORDER)?;
    let mut rows = stmt.query([])?;
    let mut chain = Chain::default();
    while let Some(r) = rows.next()? {
        if let Err(broken) = chain.next(&stored(r)?) {
            return Ok(Err(broken));
        }
    }
    Ok(Ok(chain.end()))
}

/// Every entry's stored columns, oldest first.
const IN_ORDER: &str = "SELECT seq, at, kind, actor, detail, prev, hash FROM audit ORDER BY seq";

/// An entry's row as stored.
fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        actor: r.get(3)?,
        detail: r.get(4)?,
        prev: r.get(5)?,
        hash: r.get(6)?,
    })
}

/// An entry as stored: the detail exactly as it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub detail: String,
    pub prev: String,
    pub hash: String,
}

/// A walk along the chain, entry by entry: each must be the next number,
/// match its hash, and follow the one before.
#[derive(Debug)]
struct Chain {
    expected: i64,
    prev: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            expected: 1,
            prev: GENESIS.to_owned(),
        }
    }
}

impl Chain {
    fn next(&mut self, e: &Stored) -> std::result::Result<(), Broken> {
        let seq = e.seq;
        if seq != self.expected {
            return Err(Broken {
                seq: self.expected,
                why: format!(
                    "entry {} is missing: the log goes from entry {} to entry {seq}",
                    self.expected,
                    self.expected - 1
                ),
            });
        }
        if hash(&e.prev, seq, &e.at, &e.kind, &e.actor, &e.detail) != e.hash {
            return Err(Broken {
                seq,
                why: "its contents do not match its hash: it was changed".into(),
            });
        }
        if e.prev != self.prev {
            return Err(Broken {
                seq,
                why: format!(
                    "it does not follow entry {}: entries were changed, removed or reordered",
                    seq - 1
                ),
            });
        }
        self.prev = e.hash.clone();
        self.expected += 1;
        Ok(())
    }

    fn end(self) -> Intact {
        Intact {
            entries: self.expected - 1,
            head: self.prev,
        }
    }
}

/// The columns of a CSV export, in order.
const CSV_COLUMNS: [&str; 7] = ["seq", "at", "kind", "actor", "detail", "prev", "hash"];

/// Checks an export (`audit export`, JSON lines or CSV) offline, without
/// the node: the same walk as [`verify`], over the exported entries; and,
/// given a head written down earlier, that it is one of them (entries
/// after it were not cut off).
pub fn verify_export(path: &std::path::Path, head: Option<&str>) -> Result<Result<Intact, Broken>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let mut chain = Chain::default();
    let mut seen_head = head.is_none();
    let bad =
        |line: usize, why: String| Error::Usage(format!("{} line {line}: {why}", path.display()));
    let csv = text.starts_with(&CSV_COLUMNS.join(","));
    if csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        for (i, row) in reader.deserialize::<Stored>().enumerate() {
            let stored = row.map_err(|e| bad(i + 2, e.to_string()))?;
            if let Err(broken) = chain.next(&stored) {
                return Ok(Err(broken));
            }
            seen_head |= head == Some(stored.hash.as_str());
        }
    } else {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry: Entry = serde_json::from_str(line).map_err(|e| bad(i + 1, e.to_string()))?;
            let stored = Stored {
                seq: entry.seq,
                at: entry.at,
                kind: entry.kind,
                actor: entry.actor,
                // Stored detail is compact JSON with sorted keys, as it reads back.
                detail: match entry.detail {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                },
                prev: entry.prev,
                hash: entry.hash,
            };
            if let Err(broken) = chain.next(&stored) {
                return Ok(Err(broken));
            }
            seen_head |= head == Some(stored.hash.as_str());
        }
    }
    let intact = chain.end();
    if !seen_head {
        return Ok(Err(Broken {
            seq: intact.entries + 1,
            why: format!(
                "the recorded head {} is not in the export: entries after it are missing",
                head.unwrap_or_default()
            ),
        }));
    }
    Ok(Ok(intact))
}

/// Writes every entry as CSV, the detail exactly as stored and hashed.
pub fn export_csv(conn: &Connection, out: &mut dyn Write) -> Result<i64> {
    let mut stmt = conn.prepare(IN_ORDER)?;
    let mut rows = stmt.query([])?;
    let mut writer = csv::Writer::from_writer(out);
    let mut n = 0;
    while let Some(r) = rows.next()? {
        writer
            .serialize(stored(r)?)
            .map_err(|e| Error::Engine(format!("audit export: {e}")))?;
        n += 1;
    }
    writer.flush().map_err(Error::io("audit export"))?;
    Ok(n)
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let detail: String = r.get(4)?;
    Ok(Entry {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        actor: r.get(3)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        prev: r.get(5)?,
        hash: r.get(6)?,
    })
}

/// Up to `limit` entries matching `filter`, newest first, and how many
/// entries the whole log holds.
pub fn page(conn: &Connection, filter: &Filter, limit: usize) -> Result<(Vec<Entry>, i64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT seq, at, kind, actor, detail, prev, hash FROM audit \
         WHERE (?1 IS NULL OR actor = ?1) \
           AND (?2 IS NULL OR json_extract(detail, '$.project') = ?2) \
           AND (?3 IS NULL OR kind = ?3) \
           AND (?4 IS NULL OR seq < ?4) \
         ORDER BY seq DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            filter.user,
            filter.project,
            filter.kind,
            filter.before,
            limit as i64
        ],
        entry,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Writes every entry as one JSON line; returns how many.
pub fn export(conn: &Connection, out: &mut dyn Write) -> Result<i64> {
    let mut stmt =
        conn.prepare("SELECT seq, at, kind, actor, detail, prev, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let line = serde_json::to_string(&entry(r)?).map_err(|e| Error::Engine(e.to_string()))?;
        writeln!(out, "{line}").map_err(Error::io("audit export"))?;
        n += 1;
    }
    Ok(n)
}
