//! Export of a stored table to CSV, in exactly the layout import reads, so an
//! export imports back unchanged.

use std::path::Path;

use arrow::csv::WriterBuilder;
use bonebank_schemas::Table;

use crate::dataset::{DataDir, write_atomically};
use crate::{Error, Result};

/// Writes `table` of the current version to `out` as CSV; returns the rows written.
pub fn to_csv(dir: &DataDir, table: Table, out: &Path) -> Result<u64> {
    let version = dir
        .current()?
        .ok_or_else(|| Error::Usage(format!("{} holds no dataset yet", dir.path().display())))?;
    let Some(reader) = dir.read_table(&version, table, None)? else {
        return Err(Error::Usage(format!(
            "the current dataset has no {table} table"
        )));
    };
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut rows = 0;
    write_atomically(parent, out, |w| {
        let mut writer = WriterBuilder::new().with_header(true).build(w);
        for batch in reader {
            let batch = neutralised(table, &batch?)?;
            writer.write(&batch)?;
            rows += batch.num_rows() as u64;
        }
        Ok::<(), Error>(())
    })?;
    Ok(rows)
}

/// What a spreadsheet takes for the start of a formula (OWASP's list for
/// CSV injection), and the apostrophe that neutralises it.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Free text as export writes it: a cell a spreadsheet would run as a
/// formula (`=HYPERLINK(…)`, `+1`, `@SUM`) gets an apostrophe before it, as
/// OWASP recommends; so does one that already starts with an apostrophe,
/// so that import can take exactly one off again ([`as_imported`]).
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().next().is_some_and(needs_apostrophe) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// Whether a cell starting with `c` gets an apostrophe before it: the start
/// of a formula, or an apostrophe of its own.
fn needs_apostrophe(c: char) -> bool {
    FORMULA_STARTS.contains(&c) || c == '\''
}

/// Free text as import reads it: the apostrophe [`neutralise`] put before a
/// cell is taken off again, so an export imports back unchanged.
pub fn as_imported(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if rest.chars().next().is_some_and(needs_apostrophe) => rest,
        _ => text,
    }
}

/// The batch with every free-text column [`neutralise`]d.
fn neutralised(
    table: Table,
    batch: &arrow::array::RecordBatch,
) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{ArrayRef, AsArray, StringArray};
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let free_text = table
                .column(field.name())
                .is_some_and(|c| matches!(c.kind, bonebank_schemas::ColumnKind::Text { .. }));
            match column.as_string_opt::<i32>() {
                Some(text) if free_text => {
                    let out: StringArray = text.iter().map(|v| v.map(neutralise)).collect();
                    Ok(std::sync::Arc::new(out) as ArrayRef)
                }
                _ => Ok(column.clone()),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(arrow::array::RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_come_back_unchanged() {
        for (text, written) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+41 1", "'+41 1"),
            ("-80 freezer", "'-80 freezer"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tindented", "'\tindented"),
            ("'quoted", "''quoted"),
            ("'=already", "''=already"),
            ("rack 4, box 2", "rack 4, box 2"),
            ("", ""),
        ] {
            assert_eq!(neutralise(text), written, "{text:?}");
            assert_eq!(as_imported(written), text, "{written:?}");
        }
    }
}
