//! The BBMRI-ERIC Directory's facts table for a site's collection, from its
//! catalogue.
//!
//! The Directory shows per collection a table of facts: rows of sample
//! type × sex × age range × disease (ICD-10) with the number of samples and
//! of donors, and rows where some of the four are `*` (any). The samply
//! Bridgehead's Directory sync builds it from exact counts and drops rows
//! of fewer than 10 donors. Here every number is the catalogue's
//! differentially private estimate, released once; nothing is suppressed,
//! and writing the table costs nothing.
//!
//! The rows are the cells of the catalogue's table over exactly those four
//! dimensions, the site's total (all `*`), and each of the four alone (the
//! rest `*`): a donor count is never summed over cells of a sample-level
//! dimension. Cells of diagnoses outside the site's listed categories
//! (`other`, `none`) and cells whose estimate rounds to no sample are left
//! out.

use bonebank_schemas::wire::{Catalogue, CatalogueTable};

use crate::dimensions::Dimension;

/// The columns of the Directory's facts, in order.
pub const COLUMNS: [&str; 9] = [
    "id",
    "collection",
    "sample_type",
    "sex",
    "age_range",
    "disease",
    "number_of_samples",
    "number_of_donors",
    "last_update",
];

/// One row of facts; `None` is the Directory's `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub sample_type: Option<String>,
    pub sex: Option<String>,
    pub age_range: Option<String>,
    pub disease: Option<String>,
    pub samples: i64,
    pub donors: i64,
}

/// The Directory's code for one of this project's sample types (MIABIS
/// 2.0's material types); a type it has no code for keeps its MIABIS on
/// FHIR code, since folding several into `OTHER` would add up donors over
/// sample types.
pub fn sample_type_code(code: &str) -> String {
    match code {
        "BuffyCoat" => "BUFFY_COAT",
        "DNA" => "DNA",
        "RNA" => "RNA",
        "Plasma" => "PLASMA",
        "Serum" => "SERUM",
        "WholeBlood" => "WHOLE_BLOOD",
        "PBMC" => "PERIPHERAL_BLOOD_CELLS",
        "TissueFixed" => "TISSUE_PARAFFIN_EMBEDDED",
        "TissueFreshFrozen" => "TISSUE_FROZEN",
        "Urine" => "URINE",
        "Saliva" => "SALIVA",
        "Other" => "OTHER",
        other => other,
    }
    .to_owned()
}

/// The Directory's sex code. Sex is a donor's own, so two of ours in one
/// of its codes add up, donors too.
fn sex_code(code: &str) -> &'static str {
    match code {
        "Female" => "FEMALE",
        "Male" => "MALE",
        "Undifferentiated" => "UNDIFFERENTIATED",
        _ => "UNKNOWN",
    }
}

/// The facts of `catalogue`, or why it has none (a catalogue measured
/// before the Directory's table was part of it).
pub fn facts(catalogue: &Catalogue) -> Result<Vec<Fact>, String> {
    use Dimension::{AgeRange, DiagnosisCategory, SampleType, Sex};
    let table = |dims: &[Dimension]| -> Result<&CatalogueTable, String> {
        catalogue
            .tables
            .iter()
            .find(|t| {
                t.dimensions.len() == dims.len()
                    && dims.iter().all(|d| t.dimensions.iter().any(|n| n == d.name()))
            })
            .ok_or_else(|| {
                format!(
                    "the catalogue of dataset version {} has no table over {}; a newer catalogue has",
                    catalogue.dataset_version,
                    dims.iter().map(|d| d.name()).collect::<Vec<_>>().join(" × ")
                )
            })
    };
    let mut out = Vec::new();
    let tables = [
        table(&[])?,
        table(&[SampleType])?,
        table(&[Sex])?,
        table(&[AgeRange])?,
        table(&[DiagnosisCategory])?,
        table(&[Sex, AgeRange, DiagnosisCategory, SampleType])?,
    ];
    for t in tables {
        let mut rows: Vec<Fact> = Vec::new();
        let sizes: Vec<usize> = t.keys.iter().map(Vec::len).collect();
        for cell in 0..t.samples.values.len() {
            let mut fact = Fact {
                sample_type: None,
                sex: None,
                age_range: None,
                disease: None,
                samples: 0,
                donors: 0,
            };
            let mut rest = cell;
            let mut listed = true;
            for (i, n) in sizes.iter().enumerate().rev() {
                let key = &t.keys[i][rest % n];
                rest /= n;
                match t.dimensions[i].as_str() {
                    "sample_type" => fact.sample_type = Some(sample_type_code(key)),
                    "sex" => fact.sex = Some(sex_code(key).to_owned()),
                    "age_range" => fact.age_range = Some(key.clone()),
                    _ if key == "other" || key == "none" => listed = false,
                    _ => fact.disease = Some(format!("urn:miriam:icd:{key}")),
                }
            }
            if !listed {
                continue;
            }
            // In thousandths: two of our sexes can share one of the
            // Directory's codes, and their estimates add up before rounding.
            fact.samples = (t.samples.values[cell] * 1000.0).round() as i64;
            fact.donors = (t.donors.values[cell] * 1000.0).round() as i64;
            rows.push(fact);
        }
        // Sum rows that share a key (in thousandths), then round.
        let mut merged: Vec<Fact> = Vec::new();
        for r in rows {
            match merged.iter_mut().find(|m| {
                (&m.sample_type, &m.sex, &m.age_range, &m.disease)
                    == (&r.sample_type, &r.sex, &r.age_range, &r.disease)
            }) {
                Some(m) => {
                    m.samples += r.samples;
                    m.donors += r.donors;
                }
                None => merged.push(r),
            }
        }
        for mut r in merged {
            let samples = (r.samples as f64 / 1000.0).round() as i64;
            let mut donors = ((r.donors as f64 / 1000.0).round() as i64).min(samples);
            if samples >= 1 && donors == 0 {
                donors = 1;
            }
            if samples == 0 {
                continue;
            }
            r.samples = samples;
            r.donors = donors;
            out.push(r);
        }
    }
    Ok(out)
}

/// `facts` as the Directory's CSV for `collection`, dated by the
/// catalogue's measurement.
pub fn to_csv(catalogue: &Catalogue, facts: &[Fact], collection: &str) -> String {
    let date = catalogue
        .measured_at
        .get(..10)
        .unwrap_or(&catalogue.measured_at);
    let star = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".to_owned());
    let quote = |v: &str| {
        if v.contains([',', '"', '\n']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_owned()
        }
    };
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for (i, f) in facts.iter().enumerate() {
        let row = [
            format!("{collection}:fact:{}", i + 1),
            collection.to_owned(),
            star(&f.sample_type),
            star(&f.sex),
            star(&f.age_range),
            star(&f.disease),
            f.samples.to_string(),
            f.donors.to_string(),
            date.to_owned(),
        ];
        out.push_str(&row.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
