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

use std::collections::BTreeMap;

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
            // The Directory's facts count every donor of the collection.
            .filter(|t| t.consent.is_none())
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
        // Two of our sexes can share one of the Directory's codes: their
        // estimates add up before they are rounded.
        type Key = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let mut rows: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
        let sizes: Vec<usize> = t.keys.iter().map(Vec::len).collect();
        'cells: for cell in 0..t.samples.values.len() {
            let (mut sample_type, mut sex, mut age_range, mut disease) = (None, None, None, None);
            let mut rest = cell;
            for (i, n) in sizes.iter().enumerate().rev() {
                let key = &t.keys[i][rest % n];
                rest /= n;
                match t.dimensions[i].as_str() {
                    "sample_type" => sample_type = Some(sample_type_code(key)),
                    "sex" => sex = Some(sex_code(key).to_owned()),
                    "age_range" => age_range = Some(key.clone()),
                    _ if key == "other" || key == "none" => continue 'cells,
                    _ => disease = Some(format!("urn:miriam:icd:{key}")),
                }
            }
            let row = rows
                .entry((sample_type, sex, age_range, disease))
                .or_default();
            row.0 += t.donors.values[cell];
            row.1 += t.samples.values[cell];
        }
        for ((sample_type, sex, age_range, disease), (d, s)) in rows {
            let (donors, samples) = super::whole_counts(d, s);
            if samples == 0 {
                continue;
            }
            out.push(Fact {
                sample_type,
                sex,
                age_range,
                disease,
                samples,
                donors,
            });
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
