//! Helpers for bonebank's end-to-end tests: reading a site's stored tables
//! back as plain Rust values so tests can check them with ordinary code.

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type};
use bonebank_node::dataset::DataDir;
use bonebank_schemas::Table;

/// One stored table, column by column; nulls are `None`.
#[derive(Debug, Default)]
pub struct Columns {
    text: HashMap<String, Vec<Option<String>>>,
    ints: HashMap<String, Vec<Option<i32>>>,
    flags: HashMap<String, Vec<Option<bool>>>,
    numbers: HashMap<String, Vec<Option<f64>>>,
    pub rows: usize,
}

impl Columns {
    /// Reads the current version's `table` from `dir`.
    pub fn load(dir: &DataDir, table: Table) -> Self {
        let batches = dir.load_table(table).expect("table readable");
        let mut out = Self::default();
        for batch in &batches {
            out.append(batch);
        }
        out
    }

    fn append(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().clone();
            if let Some(a) = column.as_string_opt::<i32>() {
                self.text
                    .entry(name)
                    .or_default()
                    .extend(a.iter().map(|v| v.map(str::to_owned)));
            } else if let Some(a) = column.as_primitive_opt::<Int32Type>() {
                self.ints.entry(name).or_default().extend(a.iter());
            } else if let Some(a) = column.as_primitive_opt::<Date32Type>() {
                self.ints.entry(name).or_default().extend(a.iter());
            } else if let Some(a) = column.as_boolean_opt() {
                self.flags.entry(name).or_default().extend(a.iter());
            } else if let Some(a) = column.as_primitive_opt::<Float64Type>() {
                self.numbers.entry(name).or_default().extend(a.iter());
            } else {
                panic!(
                    "no test accessor for column {name} of type {}",
                    column.data_type()
                );
            }
        }
    }

    /// A text column; panics if there is none of that name.
    pub fn text(&self, name: &str) -> &[Option<String>] {
        &self.text[name]
    }

    /// A decimal column.
    pub fn number(&self, name: &str) -> &[Option<f64>] {
        &self.numbers[name]
    }

    /// An integer or date (days since 1970) column.
    pub fn int(&self, name: &str) -> &[Option<i32>] {
        &self.ints[name]
    }

    pub fn flag(&self, name: &str) -> &[Option<bool>] {
        &self.flags[name]
    }
}
