//! Import of a site's export into its data directory. Every row of every file
//! is checked; a file with any problem changes nothing. Checked rows stream
//! into staging files, so memory stays flat however large the export; the new
//! dataset version becomes current only when everything has passed.

mod check;
mod error;
pub mod fhir;
pub mod problems;
pub mod progress;
mod read;
pub mod spreadsheet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use bonebank_schemas::{Table, ValueSet};

use bonebank_engine::dataset::{DataDir, DatasetVersion, Transaction};
pub use check::Ids;
use check::{Referenced, TableCheck};
pub use error::{Error, Result};
pub use problems::{Problem, Problems};

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    pub version: DatasetVersion,
    /// Rows imported per table.
    pub rows: BTreeMap<Table, u64>,
    pub elapsed: Duration,
}

/// Imports one or more tables from files, as one new dataset version. Tables
/// are checked in dependency order (donors, samples, diagnoses) whatever order
/// they are given in, and checked against the current version's other tables.
pub fn import(dir: &DataDir, files: &[(Table, PathBuf)]) -> Result<ImportReport> {
    import_as(dir, files, |path| path.display().to_string())
}

/// As [`import`], naming each file in the version's change log by `named`
/// (an import that stages files of its own names what they came from).
pub(crate) fn import_as(
    dir: &DataDir,
    files: &[(Table, PathBuf)],
    named: impl Fn(&std::path::Path) -> String,
) -> Result<ImportReport> {
    let started = Instant::now();
    let mut requested: BTreeMap<Table, &Path> = BTreeMap::new();
    for (table, path) in files {
        if requested.insert(*table, path).is_some() {
            return Err(Error::Usage(format!(
                "the {table} table is given twice; give each table once"
            )));
        }
    }
    let today = chrono::Local::now().date_naive();
    let mut tx = Transaction::begin(dir)?;
    let base = tx.base().cloned();
    let mut problems = Problems::default();
    let mut ids: BTreeMap<Table, (Ids, String)> = BTreeMap::new();
    let mut rows = BTreeMap::new();

    for table in Table::ALL.iter().copied() {
        let Some(path) = requested.get(&table) else {
            continue;
        };
        if let Some(parent) = table.references()
            && let std::collections::btree_map::Entry::Vacant(slot) = ids.entry(parent)
        {
            slot.insert(current_ids(dir, base.as_ref(), parent)?);
        }
        let referenced = table.references().map(|parent| {
            let (set, source) = &ids[&parent];
            Referenced {
                ids: set,
                source: source.clone(),
            }
        });
        let mut input = read::open(path)?;
        let before = problems.total();
        let mut check = TableCheck::new(
            table,
            &input.name,
            &input.header,
            referenced,
            today,
            &mut problems,
        );
        let header_ok = problems.total() == before;
        // Once anything is wrong nothing will be written, but every row is
        // still checked so the operator sees all problems in one go.
        let write = problems.is_empty();
        if write {
            tx.stage(table)?;
        }
        for batch in input.by_ref().take_while(|_| header_ok) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    problems.add(|| Problem {
                        file: path.display().to_string(),
                        row: None,
                        column: None,
                        value: None,
                        message: format!("the file could not be read past this point: {e}"),
                    });
                    break;
                }
            };
            if let Some(typed) = check.check(&batch, &mut problems)
                && write
                && problems.is_empty()
            {
                tx.write(table, &typed)?;
            }
        }
        input.progress.finish_and_clear();
        rows.insert(table, check.rows());
        if is_referenced(table) {
            let source = format!("{} (the {table} being imported)", input.name);
            ids.insert(table, (check.into_ids(), source));
        }
    }

    // A replaced table must still hold every row the kept tables refer to.
    for child in Table::ALL.iter().copied() {
        let Some(parent) = child.references() else {
            continue;
        };
        if requested.contains_key(&parent)
            && !requested.contains_key(&child)
            && let Some(base) = &base
        {
            let (set, source) = &ids[&parent];
            check_kept_references(dir, base, child, set, source, &mut problems)?;
        }
    }

    if !problems.is_empty() {
        return Err(Error::Refused(problems));
    }
    let change = requested
        .iter()
        .map(|(table, path)| format!("{table} from {} ({} rows)", named(path), rows[table]))
        .collect::<Vec<_>>()
        .join(", ");
    let version = tx.commit(format!("import {change}"))?;
    Ok(ImportReport {
        version,
        rows,
        elapsed: started.elapsed(),
    })
}

fn is_referenced(table: Table) -> bool {
    Table::ALL.iter().any(|t| t.references() == Some(table))
}

/// The ids of `table` in the current version, with a description for messages.
fn current_ids(
    dir: &DataDir,
    base: Option<&DatasetVersion>,
    table: Table,
) -> Result<(Ids, String)> {
    let key = table.unique_key()[0];
    let mut ids = Ids::default();
    if let Some(reader) = base
        .map(|v| dir.read_table(v, table, Some(&[key])))
        .transpose()?
        .flatten()
    {
        let mut row = 0;
        for batch in reader {
            for id in batch?.column(0).as_string::<i32>().iter().flatten() {
                row += 1;
                ids.insert(id.into(), row);
            }
        }
    }
    let source = if ids.is_empty() {
        format!(
            "the {table} table, which is empty: import {table} first, or together with this file"
        )
    } else {
        format!("the current {table} table")
    };
    Ok((ids, source))
}

/// Checks that every row of the kept `child` table still finds its parent.
fn check_kept_references(
    dir: &DataDir,
    base: &DatasetVersion,
    child: Table,
    parent_ids: &Ids,
    parent_source: &str,
    problems: &mut Problems,
) -> Result<()> {
    let parent = child.references().expect("child has a parent");
    let column = parent.unique_key()[0];
    let Some(reader) = dir.read_table(base, child, Some(&[column]))? else {
        return Ok(());
    };
    let mut row = 0;
    for batch in reader {
        for id in batch?.column(0).as_string::<i32>().iter() {
            row += 1;
            let Some(id) = id else { continue };
            if !parent_ids.contains_key(id) {
                problems.add(|| Problem {
                    file: format!("the current {child} table"),
                    row: Some(row),
                    column: Some(column.to_owned()),
                    value: Some(crate::problems::excerpt(id)),
                    message: format!(
                        "refers to a row missing from {parent_source}; import {child} again together with {parent}"
                    ),
                });
            }
        }
    }
    Ok(())
}
