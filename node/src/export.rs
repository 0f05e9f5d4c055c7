//! Export of a stored table to CSV, in exactly the layout import reads, so an
//! export imports back unchanged.

use std::path::Path;

use arrow::csv::WriterBuilder;
use bonebank_schemas::Table;

use bonebank_import::spreadsheet::neutralise;

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
