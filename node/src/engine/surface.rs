//! The `samples` relation as queries see it: one row per sample of a donor
//! who has not withdrawn consent, with the donor's attributes, the primary
//! diagnosis and the derived dimensions joined in, and ages top-coded at 90.
//! Built in memory once per dataset version, with codes dictionary-encoded.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int32Builder, Int64Builder,
    RecordBatch, StringArray, StringDictionaryBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Int16Type, Int32Type, Schema, SchemaRef};
use bonebank_schemas::surface::AGE_TOP_CODE;
use bonebank_schemas::{Icd10, SiteId, Table};
use chrono::Datelike;

use crate::dataset::DataDir;
use crate::{Error, Result};
use bonebank_query::AGE_BANDS;

/// Rows per surface batch.
const BATCH_ROWS: usize = 64 * 1024;

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8))
}

/// The schema of the in-memory surface table.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("site_id", dict(), false),
        Field::new("country", dict(), false),
        Field::new("sample_type", dict(), false),
        Field::new("material_subtype", dict(), false),
        Field::new("storage_temperature", dict(), false),
        Field::new("sex", dict(), false),
        Field::new("age_at_sampling", DataType::Int32, false),
        Field::new("age_band", dict(), false),
        Field::new("sampling_year", DataType::Int32, false),
        Field::new("diagnosis", dict(), true),
        Field::new("diagnosis_3char", dict(), false),
        Field::new("diagnosis_chapter", dict(), false),
        Field::new("passage_number", DataType::Int32, true),
        Field::new("aliquots_available", DataType::Int32, false),
    ];
    for c in bonebank_schemas::Consent::ALL_COLUMNS {
        fields.push(Field::new(*c, DataType::Boolean, false));
    }
    fields.push(Field::new("donor_key", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// The donor attributes the surface needs.
struct DonorRow {
    key: i64,
    sex: String,
    consents: [bool; 5],
}

/// Builds the surface of the current version of `dir`.
pub fn load(
    dir: &DataDir,
    site: &SiteId,
    categories: &[String],
) -> Result<(String, Vec<RecordBatch>)> {
    let version = dir.current()?.ok_or(Error::NoData)?;
    let donors = dir.read_all(&version, Table::Donors)?;
    let diagnoses = dir.read_all(&version, Table::Diagnoses)?;
    let samples = dir.read_all(&version, Table::Samples)?;
    Ok((
        version.id,
        build(site, categories, &donors, &samples, &diagnoses)?,
    ))
}

/// Builds the surface from stored-table batches.
pub fn build(
    site: &SiteId,
    categories: &[String],
    donors: &[RecordBatch],
    samples: &[RecordBatch],
    diagnoses: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let mut by_id: HashMap<String, DonorRow, ahash::RandomState> = HashMap::default();
    let mut keys = std::collections::HashSet::new();
    for b in donors {
        let ids = b
            .column_by_name("donor_id")
            .expect("stored schema")
            .as_string::<i32>();
        let sex = b
            .column_by_name("sex")
            .expect("stored schema")
            .as_string::<i32>();
        let withdrawn = b
            .column_by_name("consent_withdrawn")
            .expect("stored schema")
            .as_boolean();
        let consents: Vec<&BooleanArray> = bonebank_schemas::Consent::ALL_COLUMNS
            .iter()
            .map(|c| b.column_by_name(c).expect("stored schema").as_boolean())
            .collect();
        for i in 0..b.num_rows() {
            // Withdrawn donors are gone before any query can see them.
            if withdrawn.value(i) {
                continue;
            }
            let key = donor_key(ids.value(i), &mut keys);
            by_id.insert(
                ids.value(i).to_owned(),
                DonorRow {
                    key,
                    sex: sex.value(i).to_owned(),
                    consents: std::array::from_fn(|k| consents[k].value(i)),
                },
            );
        }
    }
    let mut primary: HashMap<String, Icd10, ahash::RandomState> = HashMap::default();
    for b in diagnoses {
        let ids = b
            .column_by_name("sample_id")
            .expect("stored schema")
            .as_string::<i32>();
        let codes = b
            .column_by_name("diagnosis")
            .expect("stored schema")
            .as_string::<i32>();
        let is_primary = b
            .column_by_name("is_primary")
            .expect("stored schema")
            .as_boolean();
        for i in 0..b.num_rows() {
            if is_primary.value(i) {
                let code = Icd10::parse(codes.value(i))
                    .map_err(|e| Error::Usage(format!("stored diagnosis: {e}")))?;
                primary.insert(ids.value(i).to_owned(), code);
            }
        }
    }
    let categories: std::collections::HashSet<&str> =
        categories.iter().map(String::as_str).collect();

    let mut out = Vec::new();
    let mut builder = Builder::default();
    for b in samples {
        let col = |name| b.column_by_name(name).expect("stored schema");
        let (sample_ids, donor_ids) = (
            col("sample_id").as_string::<i32>(),
            col("donor_id").as_string::<i32>(),
        );
        let texts: [&StringArray; 3] = [
            col("sample_type").as_string(),
            col("material_subtype").as_string(),
            col("storage_temperature").as_string(),
        ];
        let dates = col("sampling_date").as_primitive::<Date32Type>();
        let ages = col("age_at_sampling").as_primitive::<Int32Type>();
        let passages = col("passage_number").as_primitive::<Int32Type>();
        let aliquots = col("aliquots_available").as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let Some(donor) = by_id.get(donor_ids.value(i)) else {
                continue;
            };
            let age = ages.value(i).min(AGE_TOP_CODE);
            let year = dates.value_as_date(i).map_or(0, |d| d.year());
            let dx = primary.get(sample_ids.value(i));
            let category = match dx {
                None => "none",
                Some(c) if categories.contains(c.category()) => c.category(),
                Some(_) => "other",
            };
            builder.site.append_value(site.as_str());
            builder.country.append_value(site.country().code());
            builder.sample_type.append_value(texts[0].value(i));
            builder.material.append_value(texts[1].value(i));
            builder.temperature.append_value(texts[2].value(i));
            builder.sex.append_value(&donor.sex);
            builder.age.append_value(age);
            builder
                .age_band
                .append_value(AGE_BANDS[(age / 10).clamp(0, 9) as usize]);
            builder.year.append_value(year);
            builder.diagnosis.append_option(dx.map(Icd10::as_str));
            builder.category.append_value(category);
            builder
                .chapter
                .append_value(dx.map_or("none", Icd10::chapter));
            builder
                .passage
                .append_option(passages.is_valid(i).then(|| passages.value(i)));
            builder.aliquots.append_value(aliquots.value(i));
            for (b, v) in builder.consents.iter_mut().zip(donor.consents) {
                b.append_value(v);
            }
            builder.donor.append_value(donor.key);
            builder.len += 1;
            if builder.len == BATCH_ROWS {
                out.push(builder.finish()?);
            }
        }
    }
    if builder.len > 0 {
        out.push(builder.finish()?);
    }
    sorted_by_donor(out)
}

/// A donor's key on the surface: from a hash of the donor's id, so that it
/// does not change when other donors come or go (which cells a donor keeps
/// when over a bound is ranked on it); the next free number in the
/// unlikely case two ids share a hash.
fn donor_key(id: &str, taken: &mut std::collections::HashSet<i64>) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let mut key = i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    while !taken.insert(key) {
        key = key.wrapping_add(1);
    }
    key
}

/// The rows ordered by donor, so that plans can bound each donor's
/// contribution as the rows stream past instead of hashing every donor.
fn sorted_by_donor(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    if batches.is_empty() {
        return Ok(batches);
    }
    let all = arrow::compute::concat_batches(&schema(), &batches)?;
    drop(batches);
    let donor = all.column(all.num_columns() - 1);
    let order = arrow::compute::sort_to_indices(donor, None, None)?;
    let sorted = arrow::compute::take_record_batch(&all, &order)?;
    drop(all);
    let donors = sorted
        .column(sorted.num_columns() - 1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values();
    Ok(donor_cuts(donors, BATCH_ROWS)
        .windows(2)
        .map(|w| sorted.slice(w[0], w[1] - w[0]))
        .collect())
}

/// Where to cut rows sorted by donor into batches of about `size` rows
/// without splitting a donor: the starts of the batches, and the end. A
/// pass can then give each core a run of whole batches.
fn donor_cuts(donors: &[i64], size: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut at = size;
    while at < donors.len() {
        while at < donors.len() && donors[at] == donors[at - 1] {
            at += 1;
        }
        if at < donors.len() {
            cuts.push(at);
        }
        at += size;
    }
    cuts.push(donors.len());
    cuts
}

#[derive(Default)]
struct Builder {
    site: StringDictionaryBuilder<Int16Type>,
    country: StringDictionaryBuilder<Int16Type>,
    sample_type: StringDictionaryBuilder<Int16Type>,
    material: StringDictionaryBuilder<Int16Type>,
    temperature: StringDictionaryBuilder<Int16Type>,
    sex: StringDictionaryBuilder<Int16Type>,
    age: Int32Builder,
    age_band: StringDictionaryBuilder<Int16Type>,
    year: Int32Builder,
    diagnosis: StringDictionaryBuilder<Int16Type>,
    category: StringDictionaryBuilder<Int16Type>,
    chapter: StringDictionaryBuilder<Int16Type>,
    passage: Int32Builder,
    aliquots: Int32Builder,
    consents: [BooleanBuilder; 5],
    donor: Int64Builder,
    len: usize,
}

impl Builder {
    fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.site.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.sample_type.finish()),
            Arc::new(self.material.finish()),
            Arc::new(self.temperature.finish()),
            Arc::new(self.sex.finish()),
            Arc::new(self.age.finish()),
            Arc::new(self.age_band.finish()),
            Arc::new(self.year.finish()),
            Arc::new(self.diagnosis.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.chapter.finish()),
            Arc::new(self.passage.finish()),
            Arc::new(self.aliquots.finish()),
        ];
        columns.extend(
            self.consents
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.donor.finish()));
        self.len = 0;
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_split_a_donor() {
        let donors = [1, 1, 1, 2, 3, 3, 3, 3, 4, 5, 5];
        let cuts = donor_cuts(&donors, 2);
        assert_eq!(cuts, vec![0, 3, 8, 11]);
        for w in cuts.windows(2) {
            assert!(w[0] < w[1]);
            if w[0] > 0 {
                assert_ne!(
                    donors[w[0]],
                    donors[w[0] - 1],
                    "cut inside donor at {}",
                    w[0]
                );
            }
        }
        assert_eq!(donor_cuts(&[7; 5], 2), vec![0, 5], "one donor, one batch");
        assert_eq!(donor_cuts(&[], 2), vec![0, 0]);
    }
}
