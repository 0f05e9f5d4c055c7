//! The stored tables of a site, after the MIABIS components: donors, their
//! samples, and the samples' diagnoses. Each column is described once here;
//! the Arrow schema, import validation and the CSV layout all follow from it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use crate::codes::{MaterialSubtype, SampleType, Sex, SmokingStatus, StorageTemperature};
use crate::value_set::ValueSet;

value_set! {
    /// A stored table.
    pub enum Table ("table") {
        Donors = "donors",
        Samples = "samples",
        Diagnoses = "diagnoses",
    }
}

/// What a column holds, and so how it is stored and checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnKind {
    /// The table's own pseudonymous identifier: non-empty text, unique in the table.
    Id,
    /// The id of a row of another table, which must exist.
    Reference { table: Table },
    /// A code from a value set.
    Code {
        value_set: &'static str,
        codes: &'static [&'static str],
    },
    /// An ICD-10 code, normalised on import (see [`crate::Icd10`]).
    Icd10,
    /// A whole number within bounds.
    Integer { min: i32, max: i32 },
    /// A decimal number within bounds.
    Decimal { min: f64, max: f64 },
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`, not in the future.
    Date,
    /// Free text. Stored, never queryable.
    Text { max_len: usize },
}

impl ColumnKind {
    const fn code<T: ValueSet>() -> Self {
        Self::Code {
            value_set: T::NAME,
            codes: T::CODES,
        }
    }

    /// The Arrow type the column is stored as.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Id
            | Self::Reference { .. }
            | Self::Code { .. }
            | Self::Icd10
            | Self::Text { .. } => DataType::Utf8,
            Self::Integer { .. } => DataType::Int32,
            Self::Decimal { .. } => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Date => DataType::Date32,
        }
    }
}

/// One column of a stored table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Column {
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: ColumnKind,
    /// Whether every row must have a value.
    pub required: bool,
    /// What the column means, for people reading an export or an error.
    pub doc: &'static str,
}

const fn col(name: &'static str, kind: ColumnKind, required: bool, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        required,
        doc,
    }
}

const CONSENT_DOC: &str = "whether the donor consented to this use";

const DONORS: &[Column] = &[
    col(
        "donor_id",
        ColumnKind::Id,
        true,
        "the site's pseudonym for the donor",
    ),
    col("sex", ColumnKind::code::<Sex>(), true, "the donor's sex"),
    col("consent_research", ColumnKind::Boolean, true, CONSENT_DOC),
    col("consent_commercial", ColumnKind::Boolean, true, CONSENT_DOC),
    col("consent_genetic", ColumnKind::Boolean, true, CONSENT_DOC),
    col("consent_autologous", ColumnKind::Boolean, true, CONSENT_DOC),
    col("consent_allogeneic", ColumnKind::Boolean, true, CONSENT_DOC),
    col(
        "consent_withdrawn",
        ColumnKind::Boolean,
        true,
        "the donor withdrew consent: no query ever sees their samples",
    ),
    col(
        "bmi",
        ColumnKind::Decimal {
            min: 10.0,
            max: 80.0,
        },
        false,
        "body-mass index at enrolment, kg/m²",
    ),
    col(
        "smoking_status",
        ColumnKind::code::<SmokingStatus>(),
        false,
        "smoking status at enrolment",
    ),
];

const SAMPLES: &[Column] = &[
    col(
        "sample_id",
        ColumnKind::Id,
        true,
        "the site's pseudonym for the sample",
    ),
    col(
        "donor_id",
        ColumnKind::Reference {
            table: Table::Donors,
        },
        true,
        "the donor the sample came from",
    ),
    col(
        "sample_type",
        ColumnKind::code::<SampleType>(),
        true,
        "MIABIS sample type",
    ),
    col(
        "material_subtype",
        ColumnKind::code::<MaterialSubtype>(),
        true,
        "the material, more precisely than the sample type",
    ),
    col(
        "storage_temperature",
        ColumnKind::code::<StorageTemperature>(),
        true,
        "MIABIS storage temperature range",
    ),
    col(
        "sampling_date",
        ColumnKind::Date,
        true,
        "the day the sample was taken",
    ),
    col(
        "age_at_sampling",
        ColumnKind::Integer { min: 0, max: 120 },
        true,
        "the donor's age in whole years when the sample was taken",
    ),
    col(
        "passage_number",
        ColumnKind::Integer { min: 0, max: 50 },
        false,
        "passage of a culture-expanded cell sample (msc_culture only)",
    ),
    col(
        "aliquots_available",
        ColumnKind::Integer {
            min: 0,
            max: 100_000,
        },
        true,
        "aliquots (vials, tubes, blocks) left in storage",
    ),
    col(
        "storage_location",
        ColumnKind::Text { max_len: 200 },
        false,
        "freezer, rack and box; never queryable",
    ),
    col(
        "comment",
        ColumnKind::Text { max_len: 2000 },
        false,
        "free text; never queryable",
    ),
];

const DIAGNOSES: &[Column] = &[
    col(
        "sample_id",
        ColumnKind::Reference {
            table: Table::Samples,
        },
        true,
        "the sample the diagnosis belongs to",
    ),
    col(
        "diagnosis",
        ColumnKind::Icd10,
        true,
        "ICD-10 code, normalised to the form S72.1",
    ),
    col(
        "is_primary",
        ColumnKind::Boolean,
        true,
        "the main diagnosis of the sample; at most one per sample",
    ),
];

impl Table {
    /// The table's columns, in their stored order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Self::Donors => DONORS,
            Self::Samples => SAMPLES,
            Self::Diagnoses => DIAGNOSES,
        }
    }

    /// Looks a column up by name.
    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }

    /// The columns whose values together may occur only once in the table.
    pub fn unique_key(self) -> &'static [&'static str] {
        match self {
            Self::Donors => &["donor_id"],
            Self::Samples => &["sample_id"],
            Self::Diagnoses => &["sample_id", "diagnosis"],
        }
    }

    /// The tables this table refers to; they are imported first.
    pub fn references(self) -> Option<Table> {
        self.columns().iter().find_map(|c| match c.kind {
            ColumnKind::Reference { table } => Some(table),
            _ => None,
        })
    }

    /// The Arrow schema of the stored table.
    pub fn arrow_schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| Field::new(c.name, c.kind.data_type(), !c.required))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_key_and_references() {
        for t in Table::ALL {
            for k in t.unique_key() {
                assert!(t.column(k).is_some_and(|c| c.required), "{t}.{k}");
            }
            assert_eq!(t.arrow_schema().fields().len(), t.columns().len());
        }
        assert_eq!(Table::Samples.references(), Some(Table::Donors));
        assert_eq!(Table::Diagnoses.references(), Some(Table::Samples));
        assert_eq!(Table::Donors.references(), None);
    }

    #[test]
    fn column_description_serialises_with_its_value_set() {
        let json = serde_json::to_value(Table::Donors.column("sex").unwrap()).unwrap();
        assert_eq!(json["kind"], "code");
        assert_eq!(json["value_set"], "sex");
        assert_eq!(json["codes"][0], "Female");
        assert_eq!(json["required"], true);
    }
}
