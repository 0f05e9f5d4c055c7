//! The `samples` relation as queries see it: one row per sample of a donor
//! who has not withdrawn consent, with the donor's attributes, the primary
//! diagnosis and the derived dimensions joined in, and ages top-coded at 90.
//! Built in memory once per dataset version, sorted by donor, with codes
//! dictionary-encoded and numbers in the narrowest type that holds them
//! (about 30 bytes a sample).
//!
//! The build streams the stored tables instead of holding them: donors and
//! primary diagnoses are joined in through sorted 64-bit hashes of their
//! ids, with every id whose hash another id shares looked up by its text
//! instead, so the join is exact. A 25-million-sample site loads within 2
//! GiB (see the README's benchmarks).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, DictionaryArray, Int8Array, Int16Builder,
    Int32Builder, Int64Builder, RecordBatch, StringArray, StringDictionaryBuilder,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema, SchemaRef,
};
use bonebank_schemas::surface::AGE_TOP_CODE;
use bonebank_schemas::{Icd10, SiteId, Table};
use chrono::Datelike;

use crate::dataset::DataDir;
use crate::{Error, Result};
use bonebank_query::dimensions;

/// Rows per surface batch (about; batches end where a donor ends).
const BATCH_ROWS: usize = 64 * 1024;

/// Codes of a small, fixed set (sample types, sexes, …).
fn small_codes() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
}

/// Codes of a large set (diagnoses and their categories).
fn codes() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8))
}

/// The schema of the in-memory surface table.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("site_id", small_codes(), false),
        Field::new("country", small_codes(), false),
        Field::new("sample_type", small_codes(), false),
        Field::new("material_subtype", small_codes(), false),
        Field::new("storage_temperature", small_codes(), false),
        Field::new("sex", small_codes(), false),
        Field::new("age_at_sampling", DataType::Int16, false),
        Field::new("age_band", small_codes(), false),
        Field::new("age_band_5", small_codes(), false),
        Field::new("age_range", small_codes(), false),
        Field::new("sampling_year", DataType::Int16, false),
        Field::new("diagnosis", codes(), true),
        Field::new("diagnosis_3char", codes(), false),
        Field::new("diagnosis_chapter", small_codes(), false),
        Field::new("passage_number", DataType::Int16, true),
        Field::new("aliquots_available", DataType::Int32, false),
    ];
    for c in bonebank_schemas::Consent::ALL_COLUMNS {
        fields.push(Field::new(*c, DataType::Boolean, false));
    }
    fields.push(Field::new("donor_key", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// A stored table's batches, read anew each time it is called (the build
/// reads the samples twice).
type Source<'a> =
    dyn Fn(&[&str]) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + 'a>> + 'a;

/// Builds the surface of the current version of `dir`, streaming its
/// tables.
pub fn load(
    dir: &DataDir,
    site: &SiteId,
    categories: &[String],
) -> Result<(String, Vec<RecordBatch>)> {
    let version = dir.current()?.ok_or(Error::NoData)?;
    let source = |table: Table| {
        let version = version.clone();
        move |columns: &[&str]| -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + '_>> {
            Ok(match dir.read_table(&version, table, Some(columns))? {
                Some(reader) => Box::new(reader.map(|b| b.map_err(Error::from))),
                None => Box::new(std::iter::empty()),
            })
        }
    };
    let surface = build_from(
        site,
        categories,
        &source(Table::Donors),
        &source(Table::Samples),
        &source(Table::Diagnoses),
    )?;
    Ok((version.id, surface))
}

/// Builds the surface from stored-table batches in memory.
pub fn build(
    site: &SiteId,
    categories: &[String],
    donors: &[RecordBatch],
    samples: &[RecordBatch],
    diagnoses: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let source = |batches: &[RecordBatch]| {
        let batches = batches.to_vec();
        move |_: &[&str]| -> Result<Box<dyn Iterator<Item = Result<RecordBatch>>>> {
            Ok(Box::new(batches.clone().into_iter().map(Ok)))
        }
    };
    build_from(
        site,
        categories,
        &source(donors),
        &source(samples),
        &source(diagnoses),
    )
}

fn build_from(
    site: &SiteId,
    categories: &[String],
    donors: &Source<'_>,
    samples: &Source<'_>,
    diagnoses: &Source<'_>,
) -> Result<Vec<RecordBatch>> {
    let donors = Donors::read(donors)?;
    let clashing_samples = clashing_hashes(samples, "sample_id")?;
    let primary = Primary::read(diagnoses, clashing_samples)?;
    let categories: HashSet<&str> = categories.iter().map(String::as_str).collect();
    let mut builder = Builder::new(site);
    let columns = [
        "sample_id",
        "donor_id",
        "sample_type",
        "material_subtype",
        "storage_temperature",
        "sampling_date",
        "age_at_sampling",
        "passage_number",
        "aliquots_available",
    ];
    for b in samples(&columns)? {
        let b = b?;
        let col = |name| {
            b.column_by_name(name)
                .ok_or_else(|| Error::Engine(format!("the stored samples have no {name}")))
        };
        let (sample_ids, donor_ids) = (
            col("sample_id")?.as_string::<i32>(),
            col("donor_id")?.as_string::<i32>(),
        );
        let texts = [
            col("sample_type")?.as_string::<i32>(),
            col("material_subtype")?.as_string::<i32>(),
            col("storage_temperature")?.as_string::<i32>(),
        ];
        let dates = col("sampling_date")?.as_primitive::<Date32Type>();
        let ages = col("age_at_sampling")?.as_primitive::<Int32Type>();
        let passages = col("passage_number")?.as_primitive::<Int32Type>();
        let aliquots = col("aliquots_available")?.as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let Some(donor) = donors.find(donor_ids.value(i)) else {
                continue;
            };
            // Withdrawn donors are gone before any query can see them.
            if donors.withdrawn[donor] {
                continue;
            }
            let age = ages.value(i).min(AGE_TOP_CODE);
            let year = dates.value_as_date(i).map_or(0, |d| d.year());
            let dx = primary.find(sample_ids.value(i));
            let category = match dx {
                None => "none",
                Some(c) if categories.contains(c.category()) => c.category(),
                Some(_) => "other",
            };
            builder.site.append(0);
            builder.country.append(0);
            builder.sample_type.append_value(texts[0].value(i));
            builder.material.append_value(texts[1].value(i));
            builder.temperature.append_value(texts[2].value(i));
            builder
                .sex
                .append_value(&donors.sexes[donors.sex[donor] as usize]);
            builder.age.append_value(narrow(age, "age_at_sampling")?);
            let age_years = i64::from(age);
            builder
                .age_band
                .append(dimensions::age_band_index(age_years));
            builder
                .age_band_5
                .append(dimensions::age_band_5_index(age_years));
            builder
                .age_range
                .append(dimensions::age_range_index(age_years));
            builder.year.append_value(narrow(year, "sampling_year")?);
            builder.diagnosis.append_option(dx.map(Icd10::as_str));
            builder.category.append_value(category);
            builder
                .chapter
                .append_value(dx.map_or("none", Icd10::chapter));
            builder.passage.append_option(match passages.is_valid(i) {
                true => Some(narrow(passages.value(i), "passage_number")?),
                false => None,
            });
            builder.aliquots.append_value(aliquots.value(i));
            for (k, c) in builder.consents.iter_mut().enumerate() {
                c.append_value(donors.consents[donor] & (1 << k) != 0);
            }
            builder.donor.append_value(donors.key[donor]);
        }
    }
    drop(primary);
    drop(donors);
    sorted_by_donor(builder.finish()?)
}

/// A whole number in the surface's 16 bits; the import's checks keep every
/// stored value within them.
fn narrow(value: i32, column: &str) -> Result<i16> {
    i16::try_from(value)
        .map_err(|_| Error::Engine(format!("{column} {value} does not fit the surface")))
}

/// Tables keyed by an id's hash: the hash is already spread, so the table
/// uses it as it is.
type ByHash<V> = HashMap<u64, V, std::hash::BuildHasherDefault<SpreadHash>>;
type HashesSet = HashSet<u64, std::hash::BuildHasherDefault<SpreadHash>>;

/// A hasher for keys that are hashes already.
#[derive(Debug, Default)]
struct SpreadHash(u64);

impl std::hash::Hasher for SpreadHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The 64-bit hash ids are joined by (fixed seeds: the same id always
/// hashes the same within a build).
fn id_hash(id: &str) -> u64 {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
    .hash_one(id)
}

/// The hashes of a column's ids that more than one id has.
fn clashing_hashes(source: &Source<'_>, column: &str) -> Result<HashesSet> {
    let mut hashes = Vec::new();
    for b in source(&[column])? {
        let b = b?;
        let ids = b
            .column_by_name(column)
            .ok_or_else(|| Error::Engine(format!("no column {column}")))?
            .as_string::<i32>();
        hashes.extend(ids.iter().flatten().map(id_hash));
    }
    hashes.sort_unstable();
    Ok(hashes
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect())
}

/// The donors: what the surface takes from each, found by id.
struct Donors {
    /// By the hash of the id.
    by_hash: ByHash<u32>,
    /// Ids whose hash another donor's id shares, found by their text.
    clashing: HashMap<String, u32>,
    clashing_hashes: HashesSet,
    key: Vec<i64>,
    /// Index into `sexes`.
    sex: Vec<u8>,
    sexes: Vec<String>,
    /// Bit k: the k-th of `Consent::ALL_COLUMNS`.
    consents: Vec<u8>,
    withdrawn: Vec<bool>,
}

impl Donors {
    fn read(source: &Source<'_>) -> Result<Self> {
        let clashing_hashes = clashing_hashes(source, "donor_id")?;
        let mut columns = vec!["donor_id", "sex", "consent_withdrawn"];
        columns.extend(bonebank_schemas::Consent::ALL_COLUMNS);
        let mut donors = Self {
            by_hash: ByHash::default(),
            clashing: HashMap::new(),
            clashing_hashes,
            key: Vec::new(),
            sex: Vec::new(),
            sexes: Vec::new(),
            consents: Vec::new(),
            withdrawn: Vec::new(),
        };
        let mut taken = HashSet::new();
        for b in source(&columns)? {
            let b = b?;
            let col = |name| {
                b.column_by_name(name)
                    .ok_or_else(|| Error::Engine(format!("the stored donors have no {name}")))
            };
            let ids = col("donor_id")?.as_string::<i32>();
            let sex = col("sex")?.as_string::<i32>();
            let withdrawn = col("consent_withdrawn")?.as_boolean();
            let consents = bonebank_schemas::Consent::ALL_COLUMNS
                .iter()
                .map(|c| Ok(col(c)?.as_boolean()))
                .collect::<Result<Vec<_>>>()?;
            for i in 0..b.num_rows() {
                let id = ids.value(i);
                let at = u32::try_from(donors.key.len())
                    .map_err(|_| Error::Engine("more than 4 billion donors".into()))?;
                let hash = id_hash(id);
                if donors.clashing_hashes.contains(&hash) {
                    donors.clashing.insert(id.to_owned(), at);
                } else {
                    donors.by_hash.insert(hash, at);
                }
                donors.key.push(donor_key(id, &mut taken));
                let s = sex.value(i);
                let code = match donors.sexes.iter().position(|x| x == s) {
                    Some(c) => c,
                    None => {
                        donors.sexes.push(s.to_owned());
                        donors.sexes.len() - 1
                    }
                };
                donors.sex.push(code as u8);
                donors.consents.push(
                    consents
                        .iter()
                        .enumerate()
                        .fold(0u8, |bits, (k, c)| bits | (u8::from(c.value(i)) << k)),
                );
                donors.withdrawn.push(withdrawn.value(i));
            }
        }
        Ok(donors)
    }

    fn find(&self, id: &str) -> Option<usize> {
        let hash = id_hash(id);
        if self.clashing_hashes.contains(&hash) {
            return self.clashing.get(id).map(|&d| d as usize);
        }
        self.by_hash.get(&hash).map(|&d| d as usize)
    }
}

/// Each sample's primary diagnosis, found by sample id.
struct Primary {
    /// Index into `codes`, by the hash of the sample id.
    by_hash: ByHash<u16>,
    /// Sample ids whose hash another sample's id shares, by their text.
    clashing: HashMap<String, u16>,
    clashing_hashes: HashesSet,
    codes: Vec<Icd10>,
}

impl Primary {
    /// `clashing_hashes`: the hashes more than one sample id has.
    fn read(source: &Source<'_>, clashing_hashes: HashesSet) -> Result<Self> {
        let mut primary = Self {
            by_hash: ByHash::default(),
            clashing: HashMap::new(),
            clashing_hashes,
            codes: Vec::new(),
        };
        let mut known: HashMap<String, u16> = HashMap::new();
        for b in source(&["sample_id", "diagnosis", "is_primary"])? {
            let b = b?;
            let col = |name| {
                b.column_by_name(name)
                    .ok_or_else(|| Error::Engine(format!("the stored diagnoses have no {name}")))
            };
            let ids = col("sample_id")?.as_string::<i32>();
            let text = col("diagnosis")?.as_string::<i32>();
            let is_primary = col("is_primary")?.as_boolean();
            for i in 0..b.num_rows() {
                if !is_primary.value(i) {
                    continue;
                }
                let code = match known.get(text.value(i)) {
                    Some(&c) => c,
                    None => {
                        let parsed = Icd10::parse(text.value(i))
                            .map_err(|e| Error::Usage(format!("stored diagnosis: {e}")))?;
                        let c = u16::try_from(primary.codes.len()).map_err(|_| {
                            Error::Engine("more than 65,536 distinct diagnoses".into())
                        })?;
                        primary.codes.push(parsed);
                        known.insert(text.value(i).to_owned(), c);
                        c
                    }
                };
                let id = ids.value(i);
                let hash = id_hash(id);
                if primary.clashing_hashes.contains(&hash) {
                    primary.clashing.insert(id.to_owned(), code);
                } else {
                    primary.by_hash.insert(hash, code);
                }
            }
        }
        Ok(primary)
    }

    fn find(&self, sample_id: &str) -> Option<&Icd10> {
        let hash = id_hash(sample_id);
        let code = if self.clashing_hashes.contains(&hash) {
            *self.clashing.get(sample_id)?
        } else {
            *self.by_hash.get(&hash)?
        };
        self.codes.get(code as usize)
    }
}

/// A donor's key on the surface: from a hash of the donor's id, so that it
/// does not change when other donors come or go (which cells a donor keeps
/// when over a bound is ranked on it); the next free number in the
/// unlikely case two ids share a hash.
fn donor_key(id: &str, taken: &mut HashSet<i64>) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let mut key = i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    while !taken.insert(key) {
        key = key.wrapping_add(1);
    }
    key
}

/// The rows ordered by donor, so that a plan bounds each donor's
/// contribution as the rows stream past, in batches that never split a
/// donor. Sorted a column at a time, so that at most one column is held
/// twice.
fn sorted_by_donor(all: RecordBatch) -> Result<Vec<RecordBatch>> {
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let donor_at = all.num_columns() - 1;
    let order = arrow::compute::sort_to_indices(all.column(donor_at), None, None)?;
    let (schema, mut columns, _) = all.into_parts();
    for c in columns.iter_mut() {
        let sorted = arrow::compute::take(c.as_ref(), &order, None)?;
        *c = sorted;
    }
    drop(order);
    let sorted = RecordBatch::try_new(schema, columns)?;
    let donors = sorted.column(donor_at).as_primitive::<Int64Type>().values();
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

/// Codes of a fixed, public set (the site, the age bands and ranges),
/// appended by their place in the set: no lookup per row, and every
/// batch's dictionary is the whole set in order.
struct Fixed {
    values: ArrayRef,
    keys: Vec<i8>,
}

impl Fixed {
    fn of<S: AsRef<str>>(values: &[S]) -> Self {
        assert!(values.len() <= i8::MAX as usize, "a small set of codes");
        Self {
            values: Arc::new(StringArray::from_iter_values(values)),
            keys: Vec::new(),
        }
    }

    fn append(&mut self, index: usize) {
        debug_assert!(index < self.values.len());
        self.keys.push(index as i8);
    }

    fn finish(&mut self) -> Result<DictionaryArray<Int8Type>> {
        let keys = Int8Array::from(std::mem::take(&mut self.keys));
        Ok(DictionaryArray::try_new(keys, self.values.clone())?)
    }
}

struct Builder {
    site: Fixed,
    country: Fixed,
    sample_type: StringDictionaryBuilder<Int8Type>,
    material: StringDictionaryBuilder<Int8Type>,
    temperature: StringDictionaryBuilder<Int8Type>,
    sex: StringDictionaryBuilder<Int8Type>,
    age: Int16Builder,
    age_band: Fixed,
    age_band_5: Fixed,
    age_range: Fixed,
    year: Int16Builder,
    diagnosis: StringDictionaryBuilder<Int16Type>,
    category: StringDictionaryBuilder<Int16Type>,
    chapter: StringDictionaryBuilder<Int8Type>,
    passage: Int16Builder,
    aliquots: Int32Builder,
    consents: [BooleanBuilder; 5],
    donor: Int64Builder,
}

impl Builder {
    fn new(site: &SiteId) -> Self {
        let ranges: Vec<&str> = dimensions::AGE_RANGES.iter().map(|(n, _)| *n).collect();
        Self {
            site: Fixed::of(&[site.as_str()]),
            country: Fixed::of(&[site.country().code()]),
            sample_type: Default::default(),
            material: Default::default(),
            temperature: Default::default(),
            sex: Default::default(),
            age: Default::default(),
            age_band: Fixed::of(&dimensions::AGE_BANDS),
            age_band_5: Fixed::of(&dimensions::AGE_BANDS_5),
            age_range: Fixed::of(&ranges),
            year: Default::default(),
            diagnosis: Default::default(),
            category: Default::default(),
            chapter: Default::default(),
            passage: Default::default(),
            aliquots: Default::default(),
            consents: Default::default(),
            donor: Default::default(),
        }
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.site.finish()?),
            Arc::new(self.country.finish()?),
            Arc::new(self.sample_type.finish()),
            Arc::new(self.material.finish()),
            Arc::new(self.temperature.finish()),
            Arc::new(self.sex.finish()),
            Arc::new(self.age.finish()),
            Arc::new(self.age_band.finish()?),
            Arc::new(self.age_band_5.finish()?),
            Arc::new(self.age_range.finish()?),
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

    #[test]
    fn ids_whose_hashes_clash_are_still_found_by_their_text() {
        // Pretend two donors' ids clash: they are found by text, exactly.
        let donors = Donors {
            by_hash: [(id_hash("b"), 1)].into_iter().collect(),
            clashing: [("a".to_owned(), 0), ("c".to_owned(), 2)]
                .into_iter()
                .collect(),
            clashing_hashes: [id_hash("a"), id_hash("c")].into_iter().collect(),
            key: vec![10, 11, 12],
            sex: vec![0; 3],
            sexes: vec!["Female".into()],
            consents: vec![0; 3],
            withdrawn: vec![false; 3],
        };
        assert_eq!(donors.find("a"), Some(0));
        assert_eq!(donors.find("b"), Some(1));
        assert_eq!(donors.find("c"), Some(2));
        assert_eq!(donors.find("d"), None);
        let clashes = {
            let all = vec![
                RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
                    vec![Arc::new(arrow::array::StringArray::from(vec![
                        "x", "y", "x", "z",
                    ]))],
                )
                .unwrap(),
            ];
            let source =
                move |_: &[&str]| -> Result<Box<dyn Iterator<Item = Result<RecordBatch>>>> {
                    Ok(Box::new(all.clone().into_iter().map(Ok)))
                };
            clashing_hashes(&source, "id").unwrap()
        };
        assert_eq!(
            clashes,
            [id_hash("x")].into_iter().collect::<HashesSet>(),
            "an id twice: its hash clashes"
        );
    }
}
