//! Row builders for the three stored tables. Rows are collected column by
//! column and handed to a [`Sink`] as record batches of a bounded size.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, RecordBatch,
    StringBuilder,
};
use bonebank_schemas::{
    MaterialSubtype, SampleType, Sex, SmokingStatus, StorageTemperature, Table,
};

use crate::Result;

/// Where generated batches go: a data directory or CSV files.
pub trait Sink {
    fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()>;
}

/// Rows per generated batch.
const BATCH_ROWS: usize = 64 * 1024;

/// A donor as generated.
#[derive(Debug)]
pub struct Donor {
    pub sex: Sex,
    /// research, commercial, genetic, autologous, allogeneic
    pub consents: [bool; 5],
    pub withdrawn: bool,
    pub bmi: Option<f64>,
    pub smoking: Option<SmokingStatus>,
}

/// A sample as generated; its donor is the one being generated.
#[derive(Debug)]
pub struct Sample {
    pub sample_type: SampleType,
    pub material: MaterialSubtype,
    pub temperature: StorageTemperature,
    /// Days since 1970-01-01.
    pub date: i32,
    pub age: i32,
    pub passage: Option<i32>,
    pub aliquots: i32,
    pub location: String,
    pub comment: Option<&'static str>,
}

/// Builds the three tables, flushing full batches to the sink.
pub struct Rows<'s> {
    sink: &'s mut dyn Sink,
    id_prefix: String,
    pub donors: u64,
    pub samples: u64,
    pub diagnoses: u64,
    donor_id: String,
    d: DonorColumns,
    s: SampleColumns,
    x: DiagnosisColumns,
}

impl std::fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("donors", &self.donors)
            .field("samples", &self.samples)
            .finish()
    }
}

#[derive(Default)]
struct DonorColumns {
    id: StringBuilder,
    sex: StringBuilder,
    consents: [BooleanBuilder; 5],
    withdrawn: BooleanBuilder,
    bmi: Float64Builder,
    smoking: StringBuilder,
    len: usize,
}

#[derive(Default)]
struct SampleColumns {
    id: StringBuilder,
    donor: StringBuilder,
    sample_type: StringBuilder,
    material: StringBuilder,
    temperature: StringBuilder,
    date: Date32Builder,
    age: Int32Builder,
    passage: Int32Builder,
    aliquots: Int32Builder,
    location: StringBuilder,
    comment: StringBuilder,
    len: usize,
}

#[derive(Default)]
struct DiagnosisColumns {
    sample: StringBuilder,
    code: StringBuilder,
    primary: BooleanBuilder,
    len: usize,
}

/// Turns a counter into a pseudonym-looking number: multiplication by an odd
/// constant is a bijection modulo 2^36, so ids stay unique.
fn scramble(n: u64) -> u64 {
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66D) & ((1 << 36) - 1)
}

impl<'s> Rows<'s> {
    /// `id_prefix` starts every id, e.g. `LUE` gives `LUE-D0123456789`.
    pub fn new(sink: &'s mut dyn Sink, id_prefix: &str) -> Self {
        Self {
            sink,
            id_prefix: id_prefix.to_owned(),
            donors: 0,
            samples: 0,
            diagnoses: 0,
            donor_id: String::new(),
            d: DonorColumns::default(),
            s: SampleColumns::default(),
            x: DiagnosisColumns::default(),
        }
    }

    /// Starts a new donor; the samples that follow belong to it.
    pub fn donor(&mut self, donor: &Donor) -> Result<()> {
        self.donor_id = format!("{}-D{:09X}", self.id_prefix, scramble(self.donors));
        self.donors += 1;
        let d = &mut self.d;
        d.id.append_value(&self.donor_id);
        d.sex.append_value(donor.sex.code());
        for (builder, value) in d.consents.iter_mut().zip(donor.consents) {
            builder.append_value(value);
        }
        d.withdrawn.append_value(donor.withdrawn);
        d.bmi.append_option(donor.bmi);
        d.smoking.append_option(donor.smoking.map(|s| s.code()));
        d.len += 1;
        if d.len >= BATCH_ROWS {
            self.flush_donors()?;
        }
        Ok(())
    }

    /// Adds a sample of the current donor with its diagnoses (primary first).
    pub fn sample(&mut self, sample: &Sample, diagnoses: &[&str]) -> Result<()> {
        let id = format!("{}-S{:09X}", self.id_prefix, scramble(self.samples));
        self.samples += 1;
        let s = &mut self.s;
        s.id.append_value(&id);
        s.donor.append_value(&self.donor_id);
        s.sample_type.append_value(sample.sample_type.code());
        s.material.append_value(sample.material.code());
        s.temperature.append_value(sample.temperature.code());
        s.date.append_value(sample.date);
        s.age.append_value(sample.age);
        s.passage.append_option(sample.passage);
        s.aliquots.append_value(sample.aliquots);
        s.location.append_value(&sample.location);
        s.comment.append_option(sample.comment);
        s.len += 1;
        for (i, code) in diagnoses.iter().enumerate() {
            let x = &mut self.x;
            x.sample.append_value(&id);
            x.code.append_value(code);
            x.primary.append_value(i == 0);
            x.len += 1;
            self.diagnoses += 1;
        }
        if self.s.len >= BATCH_ROWS {
            self.flush_samples()?;
        }
        if self.x.len >= BATCH_ROWS {
            self.flush_diagnoses()?;
        }
        Ok(())
    }

    /// Writes what is left.
    pub fn finish(mut self) -> Result<()> {
        self.flush_donors()?;
        self.flush_samples()?;
        self.flush_diagnoses()
    }

    fn flush_donors(&mut self) -> Result<()> {
        let d = &mut self.d;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(d.id.finish()), Arc::new(d.sex.finish())];
        columns.extend(
            d.consents
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(d.withdrawn.finish()));
        columns.push(Arc::new(d.bmi.finish()));
        columns.push(Arc::new(d.smoking.finish()));
        d.len = 0;
        emit(self.sink, Table::Donors, columns)
    }

    fn flush_samples(&mut self) -> Result<()> {
        let s = &mut self.s;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(s.id.finish()),
            Arc::new(s.donor.finish()),
            Arc::new(s.sample_type.finish()),
            Arc::new(s.material.finish()),
            Arc::new(s.temperature.finish()),
            Arc::new(s.date.finish()),
            Arc::new(s.age.finish()),
            Arc::new(s.passage.finish()),
            Arc::new(s.aliquots.finish()),
            Arc::new(s.location.finish()),
            Arc::new(s.comment.finish()),
        ];
        s.len = 0;
        emit(self.sink, Table::Samples, columns)
    }

    fn flush_diagnoses(&mut self) -> Result<()> {
        let x = &mut self.x;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(x.sample.finish()),
            Arc::new(x.code.finish()),
            Arc::new(x.primary.finish()),
        ];
        x.len = 0;
        emit(self.sink, Table::Diagnoses, columns)
    }
}

fn emit(sink: &mut dyn Sink, table: Table, columns: Vec<ArrayRef>) -> Result<()> {
    if columns[0].is_empty() {
        return Ok(());
    }
    let batch = RecordBatch::try_new(table.arrow_schema(), columns)?;
    sink.write(table, &batch)
}
