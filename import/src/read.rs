//! Reads an input file, CSV or Parquet, as batches of text columns named by the
//! file's header. Every value is checked and typed afterwards, by one set of
//! rules whatever the file format, so that every bad value can be reported
//! instead of stopping at the first one a parser trips over.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use indicatif::ProgressBar;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Error, Result, progress};

/// Rows per batch read from an input file.
const BATCH_ROWS: usize = 64 * 1024;

/// An input file opened for reading.
pub struct Input {
    /// The file name as shown in problems.
    pub name: String,
    /// Column names from the file's header, in file order.
    pub header: Vec<String>,
    batches: Box<dyn Iterator<Item = Result<RecordBatch>>>,
    pub progress: ProgressBar,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .field("header", &self.header)
            .finish()
    }
}

impl Iterator for Input {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }
}

/// The longest header line read: a line without an end within it is not a
/// header (reading on could exhaust memory, e.g. from `/dev/zero`).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Opens `path` if it is a regular file (links followed). A FIFO, a device,
/// a socket or a directory is refused by its kind before it is opened:
/// reading one could wait for ever (a FIFO) or never end (`/dev/zero`).
/// The opened file is looked at again, in case the path changed between.
pub fn open_regular(path: &Path, name: &str) -> Result<File> {
    let refuse = |meta: &std::fs::Metadata| -> Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let kind = if t.is_file() {
            return Ok(());
        } else if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        Err(Error::Usage(format!(
            "{name} is {kind}; import reads regular files only"
        )))
    };
    refuse(&std::fs::metadata(path).map_err(Error::io(path))?)?;
    let file = File::open(path).map_err(Error::io(path))?;
    refuse(&file.metadata().map_err(Error::io(path))?)?;
    Ok(file)
}

/// Opens `path` by its extension: `.csv`/`.tsv`/`.txt` or `.parquet`/`.pq`.
pub fn open(path: &Path) -> Result<Input> {
    let name = crate::problems::printable(&path.display().to_string());
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => open_csv(path, name),
        "parquet" | "pq" => open_parquet(path, name),
        _ => Err(Error::Usage(format!(
            "{name}: cannot tell the format from the name; use a .csv or .parquet file"
        ))),
    }
}

fn open_csv(path: &Path, name: String) -> Result<Input> {
    let mut file = open_regular(path, &name)?;
    let size = file.metadata().map_err(Error::io(path))?.len();
    let mut first = String::new();
    BufReader::new((&mut file).take(MAX_HEADER_BYTES))
        .read_line(&mut first)
        .map_err(|e| {
            Error::Usage(format!(
                "{name}: the header line is not readable text ({e}); save the file as UTF-8"
            ))
        })?;
    if first.len() as u64 >= MAX_HEADER_BYTES && !first.ends_with('\n') {
        return Err(Error::Usage(format!(
            "{name}: no header line in the first {} MiB; the first line must name the columns",
            MAX_HEADER_BYTES >> 20
        )));
    }
    let first = first.trim_start_matches('\u{feff}');
    if first.trim().is_empty() {
        return Err(Error::Usage(format!(
            "{name}: the file is empty; expected a header line with the column names"
        )));
    }
    let delimiter = sniff_delimiter(first);
    let header = split_header(first, delimiter);
    file.rewind().map_err(Error::io(path))?;

    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let progress = progress::bytes(size, &name);
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_delimiter(delimiter)
        .with_batch_size(BATCH_ROWS)
        .build(progress.wrap_read(BufReader::with_capacity(1 << 20, file)))?;
    let file_name = name.clone();
    let batches = reader.map(move |b| b.map_err(|e| Error::Usage(format!("{file_name}: {e}"))));
    Ok(Input {
        name,
        header,
        batches: Box::new(prefetch(batches)),
        progress,
    })
}

/// Parses on a second thread, a few batches ahead, so that parsing overlaps
/// with checking and writing. The thread ends when the file does, or when the
/// consumer stops reading (its channel closes).
fn prefetch(
    batches: impl Iterator<Item = Result<RecordBatch>> + Send + 'static,
) -> impl Iterator<Item = Result<RecordBatch>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        for batch in batches {
            if tx.send(batch).is_err() {
                break;
            }
        }
    });
    rx.into_iter()
}

/// Spreadsheets in Germany and Denmark save CSV with `;`; tab-separated files
/// exist too. The header line tells which one a file uses.
fn sniff_delimiter(header: &str) -> u8 {
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| header.bytes().filter(|b| b == d).count())
        .filter(|d| header.bytes().any(|b| b == *d))
        .unwrap_or(b',')
}

/// Column names from a header line; quotes around a name are removed.
fn split_header(line: &str, delimiter: u8) -> Vec<String> {
    line.trim_end_matches(['\r', '\n'])
        .split(delimiter as char)
        .map(|h| h.trim().trim_matches('"').to_owned())
        .collect()
}

fn open_parquet(path: &Path, name: String) -> Result<Input> {
    let file = open_regular(path, &name)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Usage(format!("{name}: not a readable Parquet file ({e})")))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let header = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let reader = builder.with_batch_size(BATCH_ROWS).build()?;
    let progress = progress::rows(rows, &name);
    let pb = progress.clone();
    let file_name = name.clone();
    let batches = reader.map(move |batch| {
        let batch = batch.map_err(|e| Error::Usage(format!("{file_name}: {e}")))?;
        pb.inc(batch.num_rows() as u64);
        as_text(&batch).map_err(|e| match e {
            Error::Usage(m) => Error::Usage(format!("{file_name}: {m}")),
            other => other,
        })
    });
    Ok(Input {
        name,
        header,
        batches: Box::new(batches),
        progress,
    })
}

/// Casts every column to text, so typed Parquet goes through the same checks
/// as CSV (dates become `YYYY-MM-DD`, booleans `true`/`false`).
fn as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    // Not arrow's safe cast, which turns text that is not UTF-8 into
    // nulls (and a required value into "a value is required"): such a file
    // is refused.
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(c, f)| {
            arrow::compute::cast_with_options(c, &DataType::Utf8, &strict).map_err(|e| {
                Error::Usage(format!(
                    "column {}: {e}; save text as UTF-8",
                    crate::problems::excerpt(f.name())
                ))
            })
        })
        .collect::<Result<_>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), DataType::Utf8, true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_follows_the_header() {
        assert_eq!(sniff_delimiter("a,b,c\n"), b',');
        assert_eq!(sniff_delimiter("a;b;c\n"), b';');
        assert_eq!(sniff_delimiter("a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter("single\n"), b',');
    }

    #[test]
    fn header_names_lose_quotes_and_line_ends() {
        assert_eq!(
            split_header("\"donor_id\",sex\r\n", b','),
            ["donor_id", "sex"]
        );
    }
}
