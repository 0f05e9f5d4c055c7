//! The query surface: the one relation `samples` that researchers query, one
//! row per sample with its donor's attributes joined in. Stored columns that
//! are not listed here (sample ids, dates, free text, storage location) can
//! never be queried.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

/// Ages at or above this are reported as this age, so that the oldest donors
/// do not stand out.
pub const AGE_TOP_CODE: i32 = 90;

/// Columns that `SUM` and `AVG` accept, with the bounds each value is clamped
/// to before summing; the bounds set the sum's sensitivity.
pub const BOUNDED: &[(&str, i64, i64)] = &[
    ("aliquots_available", 0, 20),
    ("age_at_sampling", 0, 90),
    ("passage_number", 0, 10),
];

/// The bounds of a column that `SUM`/`AVG` accept.
pub fn bounds(column: &str) -> Option<(i64, i64)> {
    BOUNDED
        .iter()
        .find(|(c, _, _)| *c == column)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// How a surface column may be used in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Filter on it and group by it; its value set is public.
    Dimension,
    /// Filter on it by range; grouped only through a derived band, if any.
    Range,
    /// Filter on it by code prefix; grouped through derived categories.
    CodePrefix,
    /// A boolean filter.
    Flag,
    /// The privacy unit: only inside `COUNT(DISTINCT donor_id)`.
    PrivacyUnit,
}

/// One column of the query surface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurfaceColumn {
    pub name: &'static str,
    #[serde(skip)]
    pub data_type: DataType,
    pub role: Role,
}

const fn sc(name: &'static str, data_type: DataType, role: Role) -> SurfaceColumn {
    SurfaceColumn {
        name,
        data_type,
        role,
    }
}

/// The columns of the `samples` relation, in order.
pub const COLUMNS: &[SurfaceColumn] = &[
    sc("site_id", DataType::Utf8, Role::Dimension),
    sc("country", DataType::Utf8, Role::Dimension),
    sc("sample_type", DataType::Utf8, Role::Dimension),
    sc("material_subtype", DataType::Utf8, Role::Dimension),
    sc("storage_temperature", DataType::Utf8, Role::Dimension),
    sc("sex", DataType::Utf8, Role::Dimension),
    sc("age_at_sampling", DataType::Int32, Role::Range),
    sc("sampling_year", DataType::Int32, Role::Range),
    sc("diagnosis", DataType::Utf8, Role::CodePrefix),
    sc("passage_number", DataType::Int32, Role::Range),
    sc("aliquots_available", DataType::Int32, Role::Range),
    sc("consent_research", DataType::Boolean, Role::Flag),
    sc("consent_commercial", DataType::Boolean, Role::Flag),
    sc("consent_genetic", DataType::Boolean, Role::Flag),
    sc("consent_autologous", DataType::Boolean, Role::Flag),
    sc("consent_allogeneic", DataType::Boolean, Role::Flag),
    sc("donor_id", DataType::Utf8, Role::PrivacyUnit),
];

/// The Arrow schema of the `samples` relation. Only `passage_number` and
/// `diagnosis` may be null (samples that are not cultures, donors without one).
pub fn arrow_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| {
            let nullable = matches!(c.name, "passage_number" | "diagnosis");
            Field::new(c.name, c.data_type.clone(), nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Table;

    #[test]
    fn identifying_columns_are_not_on_the_surface() {
        for hidden in [
            "sample_id",
            "sampling_date",
            "storage_location",
            "comment",
            "bmi",
        ] {
            assert!(COLUMNS.iter().all(|c| c.name != hidden), "{hidden}");
        }
        let units: Vec<_> = COLUMNS
            .iter()
            .filter(|c| c.role == Role::PrivacyUnit)
            .collect();
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].name, "donor_id");
    }

    #[test]
    fn stored_columns_keep_their_type_on_the_surface() {
        let schema = arrow_schema();
        for table in [Table::Donors, Table::Samples] {
            for c in table.columns() {
                if let Ok(f) = schema.field_with_name(c.name) {
                    assert_eq!(f.data_type(), &c.kind.data_type(), "{}", c.name);
                }
            }
        }
    }
}
