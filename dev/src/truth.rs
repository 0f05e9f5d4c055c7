//! TRUE counts for the accuracy evaluation, worked out from the stored
//! tables with none of the engine's code: the tables are read row by row
//! into plain maps, joined by their ids as text, and each question's filter
//! is interpreted here, directly from its JSON form. The engine builds a
//! dictionary-encoded surface joined through hashes, compiles the filter to
//! DataFusion expressions and counts in one pass; a fault in any of those
//! shows as a disagreement with these counts, which the evaluation reports
//! instead of hiding it.

use std::collections::{BTreeSet, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Int32Type};
use bonebank_node::dataset::DataDir;
use bonebank_schemas::query::{Filter, Measure, Value};
use bonebank_schemas::surface::AGE_TOP_CODE;
use bonebank_schemas::{FeasibilityQuery, Icd10, SiteId, Table};
use chrono::Datelike;

use crate::{Error, Result};

/// One sample as the query language sees it: column name to value (absent
/// for null), and its donor.
#[derive(Debug)]
struct Row {
    donor: String,
    values: HashMap<String, Value>,
}

/// Every sample of a site whose donor has not withdrawn consent.
#[derive(Debug)]
pub struct Reference {
    rows: Vec<Row>,
}

/// A batch's column `name` at `i` as a query value; `None` for null or a
/// type queries never compare (decimals, free text is text all the same).
fn cell(batch: &RecordBatch, name: &str, i: usize) -> Option<Value> {
    let a = batch.column_by_name(name)?;
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(Value::Text(a.as_string::<i32>().value(i).to_owned())),
        DataType::Int32 => Some(Value::Int(i64::from(
            a.as_primitive::<Int32Type>().value(i),
        ))),
        DataType::Boolean => Some(Value::Bool(a.as_boolean().value(i))),
        _ => None,
    }
}

fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

impl Reference {
    /// Reads the current dataset version of `dir`, the data of `site`.
    /// `categories` are the diagnosis categories the site's policy lists.
    pub fn read(dir: &DataDir, site: &SiteId, categories: &[String]) -> Result<Self> {
        let version = dir
            .current()?
            .ok_or_else(|| Error::Usage(format!("{site} has no data")))?;
        let read = |t: Table| dir.read_all(&version, t).map_err(Error::from);
        let mut donors: HashMap<String, HashMap<String, Value>> = HashMap::new();
        for b in read(Table::Donors)? {
            for i in 0..b.num_rows() {
                let id = match cell(&b, "donor_id", i) {
                    Some(Value::Text(id)) => id,
                    _ => continue,
                };
                let values = names(&b)
                    .into_iter()
                    .filter(|n| n != "donor_id")
                    .filter_map(|n| cell(&b, &n, i).map(|v| (n, v)))
                    .collect();
                donors.insert(id, values);
            }
        }
        let mut primary: HashMap<String, Icd10> = HashMap::new();
        for b in read(Table::Diagnoses)? {
            for i in 0..b.num_rows() {
                if let (
                    Some(Value::Text(sample)),
                    Some(Value::Text(code)),
                    Some(Value::Bool(true)),
                ) = (
                    cell(&b, "sample_id", i),
                    cell(&b, "diagnosis", i),
                    cell(&b, "is_primary", i),
                ) {
                    let code = Icd10::parse(&code)
                        .map_err(|e| Error::Usage(format!("stored diagnosis: {e}")))?;
                    primary.insert(sample, code);
                }
            }
        }
        let mut rows = Vec::new();
        for b in read(Table::Samples)? {
            let dates = b
                .column_by_name("sampling_date")
                .map(|a| a.as_primitive::<Date32Type>().clone());
            for i in 0..b.num_rows() {
                let (Some(Value::Text(sample)), Some(Value::Text(donor))) =
                    (cell(&b, "sample_id", i), cell(&b, "donor_id", i))
                else {
                    continue;
                };
                let Some(person) = donors.get(&donor) else {
                    continue;
                };
                if person.get("consent_withdrawn") == Some(&Value::Bool(true)) {
                    continue;
                }
                let mut values: HashMap<String, Value> = person.clone();
                for n in names(&b) {
                    if let Some(v) = cell(&b, &n, i) {
                        values.insert(n, v);
                    }
                }
                let text = |s: &str| Value::Text(s.to_owned());
                // Ages are top-coded, and banded by decades.
                if let Some(Value::Int(age)) = values.get("age_at_sampling").cloned() {
                    let age = age.min(i64::from(AGE_TOP_CODE));
                    values.insert("age_at_sampling".into(), Value::Int(age));
                    let band = if age >= 90 {
                        "90+".to_owned()
                    } else {
                        format!("{}-{}", age / 10 * 10, age / 10 * 10 + 9)
                    };
                    values.insert("age_band".into(), Value::Text(band));
                    let five = if age >= 90 {
                        "90+".to_owned()
                    } else {
                        format!("{}-{}", age / 5 * 5, age / 5 * 5 + 4)
                    };
                    values.insert("age_band_5".into(), Value::Text(five));
                    // The BBMRI-ERIC Directory's age ranges, in whole years.
                    let range = match age {
                        ..=1 => "Infant (0-23 months)",
                        2..=12 => "Child (2-12 years)",
                        13..=17 => "Adolescent (13-17 years)",
                        18..=24 => "Young adult (18-24 years)",
                        25..=44 => "Adult (25-44 years)",
                        45..=64 => "Middle-aged (45-64 years)",
                        65..=79 => "Aged (65-79 years)",
                        _ => "Aged (80+ years)",
                    };
                    values.insert("age_range".into(), text(range));
                }
                if let Some(d) = dates.as_ref().and_then(|d| d.value_as_date(i)) {
                    values.insert("sampling_year".into(), Value::Int(i64::from(d.year())));
                }
                let dx = primary.get(&sample);
                if let Some(dx) = dx {
                    values.insert("diagnosis".into(), text(dx.as_str()));
                }
                let category = match dx {
                    None => "none",
                    Some(c) if categories.iter().any(|k| k == c.category()) => c.category(),
                    Some(_) => "other",
                };
                values.insert("diagnosis_3char".into(), text(category));
                values.insert(
                    "diagnosis_chapter".into(),
                    text(dx.map_or("none", Icd10::chapter)),
                );
                values.insert("site_id".into(), text(site.as_str()));
                values.insert("country".into(), text(site.country().code()));
                rows.push(Row { donor, values });
            }
        }
        Ok(Self { rows })
    }

    /// The true samples and donors of `query` per cell, keyed by the values
    /// of `dimensions` as answers list them; cells no sample is in are left
    /// out (their counts are 0).
    pub fn counts(
        &self,
        query: &FeasibilityQuery,
        dimensions: &[String],
    ) -> HashMap<Vec<String>, (i64, BTreeSet<String>)> {
        let mut cells: HashMap<Vec<String>, (i64, BTreeSet<String>)> = HashMap::new();
        for row in self.rows.iter().filter(|r| holds(&query.filter, r)) {
            let key = dimensions
                .iter()
                .map(|d| match row.values.get(d) {
                    Some(Value::Text(t)) => t.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect();
            let cell = cells.entry(key).or_default();
            cell.0 += 1;
            cell.1.insert(row.donor.clone());
        }
        cells
    }

    /// The true value of `measure` in the cell `key` (samples or donors).
    pub fn value(
        cells: &HashMap<Vec<String>, (i64, BTreeSet<String>)>,
        measure: &Measure,
        key: &[String],
    ) -> Option<i64> {
        let (samples, donors) = cells.get(key).map_or((0, 0), |(s, d)| (*s, d.len() as i64));
        match measure {
            Measure::Samples => Some(samples),
            Measure::Donors => Some(donors),
            _ => None,
        }
    }
}

/// Whether `row` meets `filter`, as SQL would: a comparison with a null is
/// not met, and neither is its negation.
fn holds(filter: &Filter, row: &Row) -> bool {
    eval(filter, row).unwrap_or(false)
}

/// SQL's three-valued logic: `None` is unknown.
fn eval(filter: &Filter, row: &Row) -> Option<bool> {
    let get = |c: &str| row.values.get(c);
    match filter {
        Filter::True => Some(true),
        // AND is decided by a false part, OR by a true one; else unknown
        // if a part is, else the other value.
        Filter::And(fs) => decided_by(false, fs, row),
        Filter::Or(fs) => decided_by(true, fs, row),
        Filter::Not(f) => eval(f, row).map(|v| !v),
        Filter::In { column, values } => get(column).map(|v| values.contains(v)),
        Filter::Range { column, min, max } => match get(column) {
            Some(Value::Int(v)) => Some(min.is_none_or(|m| *v >= m) && max.is_none_or(|m| *v <= m)),
            Some(Value::Text(t)) => t
                .parse::<i64>()
                .ok()
                .map(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
            _ => None,
        },
        Filter::Prefix { column, prefix } => match get(column) {
            Some(Value::Text(t)) => Some(t.starts_with(prefix.as_str())),
            _ => None,
        },
        Filter::IsNull { column } => Some(get(column).is_none()),
    }
}

/// `decisive` if some part of `fs` is, else unknown if some part is, else
/// the other value.
fn decided_by(decisive: bool, fs: &[Filter], row: &Row) -> Option<bool> {
    let results: Vec<Option<bool>> = fs.iter().map(|f| eval(f, row)).collect();
    if results.contains(&Some(decisive)) {
        Some(decisive)
    } else if results.contains(&None) {
        None
    } else {
        Some(!decisive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[(&str, Value)]) -> Row {
        Row {
            donor: "d".into(),
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    /// A sample without a diagnosis meets neither `diagnosis LIKE 'S72%'`
    /// nor its negation, as in SQL; `IS NULL` finds it.
    #[test]
    fn nulls_are_unknown_as_in_sql() {
        let none = row(&[("sex", Value::Text("Female".into()))]);
        let s72 = Filter::Prefix {
            column: "diagnosis".into(),
            prefix: "S72".into(),
        };
        assert!(!holds(&s72, &none));
        assert!(!holds(&Filter::Not(Box::new(s72.clone())), &none));
        let female = Filter::In {
            column: "sex".into(),
            values: vec![Value::Text("Female".into())],
        };
        // Unknown OR true is true; unknown AND false is false, so its
        // negation holds.
        assert!(holds(&Filter::Or(vec![s72.clone(), female.clone()]), &none));
        let unknown_and_false = Filter::And(vec![s72.clone(), Filter::Not(Box::new(female))]);
        assert!(!holds(&unknown_and_false, &none));
        assert!(holds(&Filter::Not(Box::new(unknown_and_false)), &none));
        assert!(holds(
            &Filter::IsNull {
                column: "diagnosis".into()
            },
            &none
        ));
        let aged = row(&[("age_at_sampling", Value::Int(70))]);
        let range = |min, max| Filter::Range {
            column: "age_at_sampling".into(),
            min,
            max,
        };
        assert!(holds(&range(Some(50), Some(70)), &aged));
        assert!(!holds(&range(Some(71), None), &aged));
    }
}

#[cfg(test)]
mod agreement {
    /// On three generated sites, every question of the evaluation gets the
    /// same TRUE counts from the reference as from the engine's unbounded
    /// pass (the evaluation stops with the cell that differs otherwise).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_and_the_reference_agree_on_every_question() {
        let dir = tempfile::tempdir().unwrap();
        let report = crate::eval::run(crate::eval::EvalOptions {
            dir: Some(dir.path().to_owned()),
            donors: 300,
            releases: 1,
            questions: Vec::new(),
            catalogue: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.contains("Q15"), "{report}");
    }

    /// The engine's surface codes each age in its ten-year band, its
    /// five-year band and its Directory range as the reference does apart
    /// from it: a fresh answer broken down by each, at every demo site,
    /// has the reference's TRUE counts in every cell (`releases` stops
    /// otherwise, or where the reference has no count for a key).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_and_the_reference_agree_on_every_age_dimension() {
        let dir = tempfile::tempdir().unwrap();
        let sites = crate::eval::demo_sites(dir.path(), 300).await.unwrap();
        let scratch = dir.path().join("releases");
        std::fs::create_dir_all(&scratch).unwrap();
        let policy = crate::eval::eval_policy(&[]);
        for site in &sites {
            let mut totals = Vec::new();
            for ages in ["age_band", "age_band_5", "age_range"] {
                let sql = format!(
                    "SELECT {ages}, COUNT(DISTINCT donor_id), COUNT(*) FROM samples GROUP BY {ages}"
                );
                let (released, truth) = crate::eval::releases(site, &policy, &sql, 1, &scratch)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let keys = bonebank_query::dimension_values(
                    bonebank_query::Dimension::from_name(ages).unwrap(),
                    &site.id,
                    &policy,
                );
                assert_eq!(released[0].rows.len(), keys.len(), "{sql}");
                let samples = released[0]
                    .measures
                    .iter()
                    .position(|m| m.measure == bonebank_schemas::Measure::Samples)
                    .expect("samples asked");
                totals.push(truth[samples].iter().sum::<i64>());
            }
            // Every sample is in one key of each: the same total three times.
            assert!(totals[0] > 0);
            assert!(totals.iter().all(|t| *t == totals[0]), "{totals:?}");
        }
    }

    /// The catalogue's evaluation answers its questions from catalogues the
    /// sites measured and finds a TRUE count for every cell it releases
    /// (it stops otherwise), donors 65 or older from the Directory's age
    /// ranges, and an industry partner's question from the consented
    /// tables.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catalogue_evaluation_answers_from_measured_catalogues() {
        let dir = tempfile::tempdir().unwrap();
        let report = crate::eval::run(crate::eval::EvalOptions {
            dir: Some(dir.path().to_owned()),
            donors: 200,
            releases: 1,
            questions: Vec::new(),
            catalogue: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.contains("answered from the catalogue at every site:"),
            "{report}"
        );
        assert!(report.contains("one value per donor: "), "{report}");
        assert!(
            report.contains("error against the stated noise, donors"),
            "{report}"
        );
        assert!(
            report.contains("the narrowest a sample count could be with these bounds: ±"),
            "{report}"
        );
        // An age range that cuts a ten-year band but is made of the
        // Directory's age ranges (65 or older) is answered from them.
        let cut = report
            .lines()
            .find(|l| l.starts_with("C35 "))
            .expect("donors 65 or older");
        assert!(!cut.contains("fresh: "), "{cut}");
        // One made of five-year bands (45 to 69) is answered from those.
        let fives = report
            .lines()
            .find(|l| l.starts_with("C36 "))
            .expect("donors aged 45 to 69");
        assert!(!fives.contains("fresh: "), "{fives}");
        // An industry partner's question, with the site's consent filter,
        // is answered from the tables of the donors with that consent.
        let consented = report
            .lines()
            .find(|l| l.starts_with("I1 "))
            .expect("commercial consent");
        assert!(!consented.contains("fresh"), "{consented}");
        assert!(
            report.contains("median half-width, donors, industry partners' questions"),
            "{report}"
        );
    }
}
