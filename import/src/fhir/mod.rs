//! Import from FHIR R4, as a German Biobank Node bridgehead (Blaze) holds a
//! site's samples under the BBMRI.de profiles: `collection` and
//! `transaction` Bundles (JSON), or resources one per line (NDJSON), of
//! Patient, Specimen and Condition. The resources become the three tables
//! and go through the same checks as a CSV import, as one new dataset
//! version; every problem names the resource and the element it came from,
//! and a bundle with any problem changes nothing.
//!
//! The mapping of codes is one table in the README (*Importing FHIR*).

mod codes;
mod read;
mod resources;

use std::io::Write;
use std::path::PathBuf;

use bonebank_engine::dataset::DataDir;
use bonebank_schemas::Table;

pub use codes::{
    miabis_detailed, miabis_material, miabis_temperature, sample_material, storage_temperature,
};
use resources::{Report, Resources};

use crate::{Error, ImportReport, Problem, Problems, Result};

/// What every donor of the import consented to: the bundles of a
/// bridgehead carry no consent, so the operator states it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consents {
    pub research: bool,
    pub commercial: bool,
    pub genetic: bool,
    pub autologous: bool,
    pub allogeneic: bool,
}

impl std::str::FromStr for Consents {
    type Err = String;

    /// `none`, or a comma-separated list of research, commercial, genetic,
    /// autologous, allogeneic.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = Self::default();
        if s.trim() == "none" {
            return Ok(c);
        }
        for word in s.split(',').map(str::trim) {
            match word {
                "research" => c.research = true,
                "commercial" => c.commercial = true,
                "genetic" => c.genetic = true,
                "autologous" => c.autologous = true,
                "allogeneic" => c.allogeneic = true,
                other => {
                    return Err(format!(
                        "unknown consent {other:?}: say none, or list research, commercial, genetic, autologous, allogeneic"
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// A row of one of the tables, and the resource it came from.
struct Row {
    fields: Vec<String>,
    from: String,
}

/// Imports FHIR `files` into `dir` as one new dataset version holding all
/// three tables, every donor with `consents`.
pub fn import(dir: &DataDir, files: &[PathBuf], consents: Consents) -> Result<ImportReport> {
    let mut problems = Problems::default();
    let found = read::read_resources(files, &mut problems)?;
    let resources = Resources::new(&found);
    let mut report = Report(&mut problems);
    let (donors, births) = resources::patients(&resources, consents, &mut report);
    let conditions = resources::conditions(&resources, &mut report);
    let (samples, diagnoses) = resources::specimens(&resources, &births, &conditions, &mut report);
    let sources = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if !resources.has("Patient") {
        report.at(
            &sources,
            "Patient",
            None,
            "no Patient in the input: nothing to import".into(),
        );
    }
    if !problems.is_empty() {
        return Err(Error::Refused(problems));
    }

    // The same checks and the same new version as a CSV import.
    let staging = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let mut inputs = Vec::new();
    for ((table, columns), rows) in STAGED.iter().zip([&donors, &samples, &diagnoses]) {
        let path = staging.path().join(format!("{table}.csv"));
        stage(&path, columns, rows)?;
        inputs.push((*table, path));
    }
    crate::import_as(dir, &inputs, |_| format!("FHIR {sources}")).map_err(|e| match e {
        Error::Refused(problems) => Error::Refused(
            problems.map(|p| described(p, &sources, [&donors, &samples, &diagnoses])),
        ),
        other => other,
    })
}

/// A problem the CSV checks found in a staged file, told by the resource
/// and element it came from rather than the staging file's row.
fn described(p: Problem, sources: &str, [donors, samples, diagnoses]: [&[Row]; 3]) -> Problem {
    let (rows, table) = if p.file.ends_with("donors.csv") {
        (donors, "donors")
    } else if p.file.ends_with("samples.csv") {
        (samples, "samples")
    } else {
        (diagnoses, "diagnoses")
    };
    let from = p
        .row
        .and_then(|r| rows.get(r as usize - 1))
        .map_or_else(|| format!("the {table}"), |r| r.from.clone());
    Problem {
        file: sources.to_owned(),
        row: None,
        column: Some(format!(
            "{from}: {}",
            element_of(p.column.as_deref().unwrap_or(""))
        )),
        value: p.value,
        message: p.message,
    }
}

/// Where in FHIR a column's value came from.
fn element_of(column: &str) -> &str {
    match column {
        "sex" => "Patient.gender",
        "sample_type" | "material_subtype" => "Specimen.type",
        "storage_temperature" => "Specimen.extension:StorageTemperature",
        "sampling_date" => "Specimen.collection.collectedDateTime",
        "age_at_sampling" => "Patient.birthDate and Specimen.collection.collectedDateTime",
        "diagnosis" | "is_primary" => "the ICD-10 code",
        "donor_id" => "Patient.id",
        "sample_id" => "Specimen.id",
        other => other,
    }
}

/// The columns each staged table is written with, in the order the rows
/// above fill them; each is a column of its table (a test checks).
const STAGED: [(Table, &[&str]); 3] = [
    (
        Table::Donors,
        &[
            "donor_id",
            "sex",
            "consent_research",
            "consent_commercial",
            "consent_genetic",
            "consent_autologous",
            "consent_allogeneic",
            "consent_withdrawn",
        ],
    ),
    (
        Table::Samples,
        &[
            "sample_id",
            "donor_id",
            "sample_type",
            "material_subtype",
            "storage_temperature",
            "sampling_date",
            "age_at_sampling",
            "aliquots_available",
        ],
    ),
    (Table::Diagnoses, &["sample_id", "diagnosis", "is_primary"]),
];

/// Writes `rows` as a CSV file with a header of `columns`, by arrow's CSV
/// writer (as the export writes), for the CSV import to check.
fn stage(path: &std::path::Path, columns: &[&str], rows: &[Row]) -> Result<()> {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            std::sync::Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.fields[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(std::sync::Arc::new(schema), arrays)?;
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::BufWriter::new(file));
    writer.write(&batch)?;
    writer.into_inner().flush().map_err(Error::io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staged_columns_are_their_tables_own_and_cover_the_required() {
        for (table, columns) in STAGED {
            for c in columns {
                assert!(table.column(c).is_some(), "{table} has no column {c}");
            }
            for c in table.columns().iter().filter(|c| c.required) {
                assert!(
                    columns.contains(&c.name),
                    "{table}.{} is not staged",
                    c.name
                );
            }
        }
    }

    #[test]
    fn consents_are_stated_not_assumed() {
        assert_eq!("none".parse::<Consents>().unwrap(), Consents::default());
        let c: Consents = "research, genetic".parse().unwrap();
        assert!(c.research && c.genetic && !c.commercial);
        assert!("everything".parse::<Consents>().is_err());
    }
}
