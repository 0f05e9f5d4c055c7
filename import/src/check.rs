//! The import rules, applied batch by batch to text columns: every value is
//! checked against its column's kind and turned into its stored type; then the
//! rules that span columns and rows (unique ids, references, culture passages,
//! one primary diagnosis per sample) are checked on the typed values.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int32Array,
    Int32Builder, RecordBatch, StringArray, StringBuilder, new_null_array,
};
use bonebank_schemas::{Column, ColumnKind, Icd10, MaterialSubtype, SampleType, Table};
use chrono::{Datelike, NaiveDate};

use crate::problems::{Problem, Problems, excerpt};

/// The ids of a table, each with the row it was first seen in. Hashed with
/// aHash: ids come from the site's own export, and SipHash's protection
/// against crafted collisions would cost a third of the import's time.
pub type Ids = HashMap<Box<str>, u64, ahash::RandomState>;

/// The ids a reference column is checked against, and where they came from.
#[derive(Debug)]
pub struct Referenced<'a> {
    pub ids: &'a Ids,
    /// For messages, e.g. "donors.csv" or "the current donors table".
    pub source: String,
}

/// Checks one input file of one table.
#[derive(Debug)]
pub struct TableCheck<'a> {
    table: Table,
    file: String,
    /// For each stored column, its position in the input, if the input has it.
    positions: Vec<Option<usize>>,
    /// Data rows checked so far.
    rows: u64,
    keys: Ids,
    referenced: Option<Referenced<'a>>,
    /// Diagnoses: samples that already have a primary diagnosis.
    primaries: HashSet<Box<str>, ahash::RandomState>,
    /// Earliest and latest accepted dates, as days since 1970-01-01.
    date_range: (i32, i32),
}

impl<'a> TableCheck<'a> {
    /// Matches the input's header to the table's columns. Unknown, doubled and
    /// missing required columns are problems; a missing optional column is
    /// imported as empty.
    pub fn new(
        table: Table,
        file: &str,
        header: &[String],
        referenced: Option<Referenced<'a>>,
        today: NaiveDate,
        problems: &mut Problems,
    ) -> Self {
        let file_problem = |column: &str, message: String| Problem {
            file: file.to_owned(),
            row: None,
            column: Some(column.to_owned()),
            value: None,
            message,
        };
        let names: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
        for (i, h) in header.iter().enumerate() {
            if table.column(h).is_none() {
                // The header is the file's first line, whatever the file is:
                // a name that could not be a column's is not shown (a link
                // to /etc/shadow would otherwise print a password hash).
                let plausible = !h.is_empty()
                    && h.len() <= 64
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_- .".contains(&b));
                let shown = if plausible {
                    h.clone()
                } else {
                    format!("number {} of the header (its text is not shown)", i + 1)
                };
                problems.add(|| {
                    file_problem(
                        &shown,
                        format!(
                            "is not a column of the {table} table; its columns are: {}",
                            names.join(", ")
                        ),
                    )
                });
            } else if header[..i].contains(h) {
                problems.add(|| file_problem(h, "appears twice in the header".into()));
            }
        }
        let positions: Vec<Option<usize>> = table
            .columns()
            .iter()
            .map(|c| header.iter().position(|h| h == c.name))
            .collect();
        for (c, p) in table.columns().iter().zip(&positions) {
            if p.is_none() && c.required {
                problems.add(|| {
                    file_problem(
                        c.name,
                        format!("is required but missing from the header ({})", c.doc),
                    )
                });
            }
        }
        let epoch = |d: NaiveDate| d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE;
        let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
        Self {
            table,
            file: file.to_owned(),
            positions,
            rows: 0,
            keys: Ids::default(),
            referenced,
            primaries: HashSet::default(),
            date_range: (epoch(earliest), epoch(today)),
        }
    }

    /// Checks one batch of text columns. Returns the typed batch if this batch
    /// had no problem.
    pub fn check(&mut self, batch: &RecordBatch, problems: &mut Problems) -> Option<RecordBatch> {
        let before = problems.total();
        let n = batch.num_rows();
        let file = self.file.clone();
        let mut cx = Cx {
            file: &file,
            first_row: self.rows + 1,
            problems,
        };
        let columns: Vec<ArrayRef> = self
            .table
            .columns()
            .iter()
            .zip(&self.positions)
            .map(|(column, position)| match position {
                Some(i) => convert(
                    column,
                    batch.column(*i).as_string::<i32>(),
                    self.date_range,
                    &mut cx,
                ),
                None => new_null_array(&column.kind.data_type(), n),
            })
            .collect();
        self.check_rows(&columns, &mut cx);
        self.rows += n as u64;
        if problems.total() > before {
            return None;
        }
        Some(
            RecordBatch::try_new(self.table.arrow_schema(), columns)
                .expect("checked columns fit the schema"),
        )
    }

    /// The ids seen (the table's key), for checking tables that refer to it.
    pub fn into_ids(self) -> Ids {
        self.keys
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn column(&self, columns: &'a [ArrayRef], name: &str) -> &'a ArrayRef {
        let i = self
            .table
            .columns()
            .iter()
            .position(|c| c.name == name)
            .expect("known column");
        &columns[i]
    }

    fn check_rows(&mut self, columns: &[ArrayRef], cx: &mut Cx) {
        match self.table {
            Table::Donors => {
                let ids = self.column_str(columns, "donor_id");
                self.check_unique("donor_id", ids, None, cx);
            }
            Table::Samples => {
                let ids = self.column_str(columns, "sample_id");
                self.check_unique("sample_id", ids, None, cx);
                let donors = self.column_str(columns, "donor_id");
                self.check_references("donor_id", donors, cx);
                check_sample_material(
                    self.column_str(columns, "sample_type"),
                    self.column_str(columns, "material_subtype"),
                    self.column(columns, "passage_number").as_primitive(),
                    cx,
                );
            }
            Table::Diagnoses => {
                let samples = self.column_str(columns, "sample_id");
                let diagnoses = self.column_str(columns, "diagnosis");
                self.check_unique("sample_id", samples, Some(diagnoses), cx);
                self.check_references("sample_id", samples, cx);
                let primary = self.column(columns, "is_primary").as_boolean();
                for i in 0..samples.len() {
                    if samples.is_null(i) || !primary.is_valid(i) || !primary.value(i) {
                        continue;
                    }
                    if !self.primaries.insert(samples.value(i).into()) {
                        cx.add(i, "is_primary", "true", || format!(
                            "sample '{}' already has a primary diagnosis; a sample has at most one",
                            excerpt(samples.value(i))));
                    }
                }
            }
        }
    }

    fn column_str(&self, columns: &'a [ArrayRef], name: &str) -> &'a StringArray {
        self.column(columns, name).as_string::<i32>()
    }

    /// Ids (with `second`, a composite key) must not repeat within the table.
    fn check_unique(
        &mut self,
        name: &'static str,
        ids: &StringArray,
        second: Option<&StringArray>,
        cx: &mut Cx,
    ) {
        for i in 0..ids.len() {
            if ids.is_null(i) || second.is_some_and(|s| s.is_null(i)) {
                continue;
            }
            let row = cx.first_row + i as u64;
            let key: Box<str> = match second {
                None => ids.value(i).into(),
                Some(s) => format!("{}\u{1f}{}", ids.value(i), s.value(i)).into(),
            };
            if let Some(first) = self.keys.get(&key) {
                let first = *first;
                cx.add(i, name, ids.value(i), || match second {
                    None => {
                        format!("the same {name} is already in row {first}; ids must be unique")
                    }
                    Some(s) => format!(
                        "this sample already has diagnosis {} in row {first}",
                        s.value(i)
                    ),
                });
            } else {
                self.keys.insert(key, row);
            }
        }
    }

    fn check_references(&self, name: &'static str, values: &StringArray, cx: &mut Cx) {
        let Some(referenced) = &self.referenced else {
            return;
        };
        for i in 0..values.len() {
            if !values.is_null(i) && !referenced.ids.contains_key(values.value(i)) {
                cx.add(i, name, values.value(i), || {
                    format!(
                        "no such id in {}; every reference must exist",
                        referenced.source
                    )
                });
            }
        }
    }
}

/// Days from 0001-01-01 to 1970-01-01, to turn chrono dates into Arrow's Date32.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// What a batch's checks need to report a problem.
struct Cx<'p> {
    file: &'p str,
    first_row: u64,
    problems: &'p mut Problems,
}

impl Cx<'_> {
    fn add(&mut self, i: usize, column: &str, value: &str, message: impl FnOnce() -> String) {
        let (file, row) = (self.file, self.first_row + i as u64);
        self.problems.add(|| Problem {
            file: file.to_owned(),
            row: Some(row),
            column: Some(column.to_owned()),
            value: Some(excerpt(value)),
            message: message(),
        });
    }

    fn missing(&mut self, i: usize, column: &Column) {
        let (file, row) = (self.file, self.first_row + i as u64);
        self.problems.add(|| Problem {
            file: file.to_owned(),
            row: Some(row),
            column: Some(column.name.to_owned()),
            value: None,
            message: format!("a value is required ({})", column.doc),
        });
    }
}

/// Checks one text column against its kind and returns it typed.
fn convert(column: &Column, input: &StringArray, dates: (i32, i32), cx: &mut Cx) -> ArrayRef {
    let n = input.len();
    // The value of row `i`, or `None` for an empty cell (a problem if required).
    let mut cells = (0..n).map(|i| {
        (
            i,
            if input.is_null(i) {
                None
            } else {
                Some(input.value(i))
            },
        )
    });
    let mut present = |cx: &mut Cx| -> Option<(usize, Option<&str>)> {
        let (i, v) = cells.next()?;
        if v.is_none() && column.required {
            cx.missing(i, column);
        }
        Some((i, v))
    };
    let name = column.name;
    match column.kind {
        ColumnKind::Text { .. } => {
            // Taking off the apostrophe export puts before what a
            // spreadsheet would run.
            let mut out = StringBuilder::with_capacity(n, input.value_data().len());
            while let Some((i, v)) = present(cx) {
                let Some(v) = v.map(crate::spreadsheet::as_imported) else {
                    out.append_null();
                    continue;
                };
                if let Some(message) = text_problem(column.kind, v) {
                    cx.add(i, name, v, || message);
                }
                out.append_value(v);
            }
            Arc::new(out.finish())
        }
        ColumnKind::Id | ColumnKind::Reference { .. } | ColumnKind::Code { .. } => {
            while let Some((i, v)) = present(cx) {
                let Some(v) = v else { continue };
                if let Some(message) = text_problem(column.kind, v) {
                    cx.add(i, name, v, || message);
                }
            }
            Arc::new(input.clone())
        }
        ColumnKind::Icd10 => {
            let mut out = StringBuilder::with_capacity(n, n * 5);
            while let Some((i, v)) = present(cx) {
                match v.map(Icd10::parse) {
                    None => out.append_null(),
                    Some(Ok(code)) => out.append_value(code.as_str()),
                    Some(Err(e)) => {
                        cx.add(i, name, v.unwrap_or_default(), || {
                            format!("{e}; write codes like S72.1, S721 or DS721")
                        });
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        ColumnKind::Integer { min, max } => {
            let mut out = Int32Builder::with_capacity(n);
            while let Some((i, v)) = present(cx) {
                match v.map(|v| v.trim().parse::<i64>()) {
                    None => out.append_null(),
                    Some(Ok(x)) if (i64::from(min)..=i64::from(max)).contains(&x) => {
                        out.append_value(x as i32)
                    }
                    Some(parsed) => {
                        let what = if parsed.is_ok() {
                            "is out of range"
                        } else {
                            "is not a whole number"
                        };
                        cx.add(i, name, v.unwrap_or_default(), || {
                            format!("{what}; allowed: whole numbers from {min} to {max}")
                        });
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        ColumnKind::Decimal { min, max } => {
            let mut out = Float64Builder::with_capacity(n);
            while let Some((i, v)) = present(cx) {
                match v.map(parse_decimal) {
                    None => out.append_null(),
                    Some(Some(x)) if (min..=max).contains(&x) => out.append_value(x),
                    Some(_) => {
                        cx.add(i, name, v.unwrap_or_default(), || {
                            format!("allowed: a number from {min} to {max}, e.g. 24.5")
                        });
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        ColumnKind::Boolean => {
            let mut out = BooleanBuilder::with_capacity(n);
            while let Some((i, v)) = present(cx) {
                match v.map(parse_bool) {
                    None => out.append_null(),
                    Some(Some(b)) => out.append_value(b),
                    Some(None) => {
                        cx.add(i, name, v.unwrap_or_default(), || {
                            "allowed: true or false (or 1 and 0)".into()
                        });
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        ColumnKind::Date => {
            let mut out = Date32Builder::with_capacity(n);
            let (earliest, today) = dates;
            while let Some((i, v)) = present(cx) {
                let Some(text) = v else {
                    out.append_null();
                    continue;
                };
                match parse_date(text) {
                    Some(d) if d > today => {
                        cx.add(i, name, text, || {
                            "is in the future; a sample cannot be taken after today".into()
                        });
                        out.append_null();
                    }
                    Some(d) if d < earliest => {
                        cx.add(i, name, text, || {
                            "is before 1900-01-01; check the year".into()
                        });
                        out.append_null();
                    }
                    Some(d) => out.append_value(d),
                    None => {
                        cx.add(i, name, text, || {
                            "is not a date; write dates as YYYY-MM-DD, e.g. 2024-03-17".into()
                        });
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
    }
}

/// What is wrong with a text value of the given kind, if anything.
fn text_problem(kind: ColumnKind, v: &str) -> Option<String> {
    match kind {
        ColumnKind::Id | ColumnKind::Reference { .. } => {
            if v.trim() != v {
                Some("an id must not start or end with spaces".into())
            } else if v.len() > 64 || v.chars().any(char::is_control) {
                Some("an id is at most 64 characters, without control characters".into())
            } else {
                None
            }
        }
        ColumnKind::Text { max_len } => {
            if v.chars().any(|c| c.is_control() && c != '\t') {
                Some("has a control character (a NUL byte, a line break or the like); free text may hold tabs but no other control characters".into())
            } else if v.chars().count() > max_len {
                Some(format!("is longer than the {max_len} characters allowed"))
            } else {
                None
            }
        }
        ColumnKind::Code { value_set, codes } => {
            if codes.contains(&v) {
                return None;
            }
            let hint = codes
                .iter()
                .find(|c| c.eq_ignore_ascii_case(v.trim()))
                .map(|c| format!("did you mean '{c}'? "))
                .unwrap_or_default();
            Some(format!(
                "is not a {value_set} code; {hint}allowed: {}",
                codes.join(", ")
            ))
        }
        _ => None,
    }
}

/// Samples: the material must fit the sample type, and only culture-expanded
/// cells have a passage number.
fn check_sample_material(
    types: &StringArray,
    materials: &StringArray,
    passages: &Int32Array,
    cx: &mut Cx,
) {
    for i in 0..types.len() {
        let (Ok(t), Ok(m)) = (
            types.value(i).parse::<SampleType>(),
            materials.value(i).parse::<MaterialSubtype>(),
        ) else {
            continue; // already reported, or missing
        };
        if !m.sample_types().contains(&t) {
            let fits: Vec<&str> = m.sample_types().iter().map(|t| t.code()).collect();
            cx.add(i, "material_subtype", m.code(), || {
                format!(
                    "does not fit sample type {t}; {m} is recorded as: {}",
                    fits.join(", ")
                )
            });
        }
        if passages.is_valid(i) && !m.has_passages() {
            cx.add(i, "passage_number", &passages.value(i).to_string(), || {
                format!("only msc_culture samples have a passage number; leave it empty for {m}")
            });
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" => Some(true),
        "0" => Some(false),
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A decimal number; a comma is taken as the decimal separator when there is
/// no dot, as German and Danish spreadsheets write them.
fn parse_decimal(v: &str) -> Option<f64> {
    let v = v.trim();
    let x: f64 = if !v.contains('.') && v.contains(',') {
        v.replacen(',', ".", 1).parse().ok()?
    } else {
        v.parse().ok()?
    };
    x.is_finite().then_some(x)
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn parse_date(v: &str) -> Option<i32> {
    let b = v.trim().as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(&b[..4])? as i32, num(&b[5..7])?, num(&b[8..])?)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-03-17",
            "2024/03/17",
            "17.03.2024",
            "2024-3-17",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(parse_decimal("24,5"), Some(24.5));
        assert_eq!(parse_decimal("24.5"), Some(24.5));
        assert_eq!(parse_decimal("NaN"), None);
        assert_eq!(parse_decimal("1,000.5"), None);
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn code_problems_suggest_the_right_case() {
        let kind = Table::Donors.column("sex").unwrap().kind;
        assert_eq!(text_problem(kind, "Female"), None);
        let msg = text_problem(kind, "female").unwrap();
        assert!(msg.contains("did you mean 'Female'?"), "{msg}");
    }
}
