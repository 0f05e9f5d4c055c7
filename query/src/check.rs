//! Checks a query against the surface and the site's policy, and returns the
//! query the node will run: values normalised, the role's forced filter added,
//! in canonical form. The node checks everything itself; nothing a
//! coordinator checked is taken on trust.

use bonebank_schemas::surface::{self, Role as ColumnRole};
use bonebank_schemas::{FeasibilityQuery, Filter, Icd10, Measure, Role, SiteId, Value};

use crate::dimensions::Dimension;
use crate::policy::Policy;
use crate::policy::dimension_values;
use crate::{Refusal, SHAPE_HINT};

/// Most cells an answer may have.
const MAX_CELLS: usize = 10_000;

/// A query the node may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Canonical, normalised, with the role's forced filter.
    pub query: FeasibilityQuery,
    /// The loss it spends, in the site's measure (ρ or ε).
    pub loss: f64,
    /// The group-by dimensions, in the canonical order.
    pub dimensions: Vec<Dimension>,
}

/// A refusal on policy grounds (allowed by the language, not by this site).
fn policy(message: impl Into<String>, hint: impl Into<String>) -> (Refusal, bool) {
    (Refusal::new(message, hint), true)
}

fn query(message: impl Into<String>, hint: impl Into<String>) -> (Refusal, bool) {
    (Refusal::new(message, hint), false)
}

/// Checks `q` for a caller with `role`. The flag in the error is true when the
/// site's policy, not the query language, refused.
pub fn check(
    q: &FeasibilityQuery,
    loss: Option<f64>,
    role: Role,
    site: &SiteId,
    pol: &Policy,
) -> Result<Checked, (Refusal, bool)> {
    let rules = pol.roles.get(&role).cloned().unwrap_or_default();
    if rules.denied {
        return Err(policy(
            format!("this site does not answer queries from the {role} role"),
            "ask the site's data steward",
        ));
    }
    let range = pol.loss_range();
    let loss = loss.unwrap_or(range.default);
    let max = rules.max_loss.map_or(range.max, |m| m.min(range.max));
    let symbol = pol.accounting.symbol();
    if !(loss.is_finite() && loss >= range.min && loss <= max) {
        return Err(policy(
            format!("{symbol} {loss} is outside what this site allows"),
            format!(
                "this site accounts in {symbol}; choose a loss from {} to {max}",
                range.min
            ),
        ));
    }

    if q.measures.is_empty() {
        return Err(query("the query has no measure", SHAPE_HINT));
    }
    for m in &q.measures {
        if let Measure::Sum { column } | Measure::Avg { column } = m
            && surface::bounds(column).is_none()
        {
            let allowed: Vec<&str> = surface::BOUNDED.iter().map(|(c, _, _)| *c).collect();
            return Err(query(
                format!(
                    "{} of {column} is not allowed",
                    m.label().split('_').next().unwrap_or("SUM").to_uppercase()
                ),
                format!(
                    "SUM and AVG work on columns with declared bounds: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }

    let mut dimensions = Vec::new();
    for name in &q.group_by {
        let Some(d) = Dimension::from_name(name) else {
            return Err(query(
                format!("{name} cannot be grouped by"),
                not_a_dimension_hint(name),
            ));
        };
        dimensions.push(d);
    }
    dimensions.sort_by_key(|d| d.name());
    dimensions.dedup();
    if dimensions.len() > pol.max_dimensions {
        return Err(policy(
            format!("the query groups by {} dimensions", dimensions.len()),
            format!(
                "this site allows at most {} GROUP BY dimensions",
                pol.max_dimensions
            ),
        ));
    }
    let cells: usize = dimensions
        .iter()
        .map(|d| dimension_values(*d, site, pol).len())
        .product();
    if cells > MAX_CELLS {
        return Err(query(
            format!("the answer would have {cells} cells"),
            format!("at most {MAX_CELLS}; group by fewer or coarser dimensions"),
        ));
    }

    let mut filter = normalise(&q.filter, site, pol).map_err(|r| (r, false))?;
    if let Some(forced) = pol.forced_filter(role).map_err(|r| (r, true))? {
        filter = Filter::And(vec![filter, forced]);
    }
    let query = FeasibilityQuery {
        measures: q.measures.clone(),
        filter,
        group_by: dimensions.iter().map(|d| d.name().to_owned()).collect(),
    }
    .canonical();
    Ok(Checked {
        query,
        loss,
        dimensions,
    })
}

fn not_a_dimension_hint(name: &str) -> String {
    let dims: Vec<&str> = crate::dimensions::ALL.iter().map(|d| d.name()).collect();
    match name {
        "donor_id" => {
            "donor_id is the privacy unit: it appears only inside COUNT(DISTINCT donor_id)".into()
        }
        "age_at_sampling" => "group ages with age_band, age_band_5 or age_range".into(),
        "diagnosis" => "group diagnoses with diagnosis_3char or diagnosis_chapter".into(),
        _ => format!("the dimensions are: {}", dims.join(", ")),
    }
}

/// Columns that exist in the stored tables but never in a query.
const NEVER: &[&str] = &[
    "sample_id",
    "sampling_date",
    "storage_location",
    "comment",
    "bmi",
    "smoking_status",
    "consent_withdrawn",
    "is_primary",
];

/// Checks every predicate against its column and normalises values.
fn normalise(f: &Filter, site: &SiteId, pol: &Policy) -> Result<Filter, Refusal> {
    let recurse = |children: &[Filter]| {
        children
            .iter()
            .map(|c| normalise(c, site, pol))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match f {
        Filter::True => Filter::True,
        Filter::And(c) => Filter::And(recurse(c)?),
        Filter::Or(c) => Filter::Or(recurse(c)?),
        Filter::Not(c) => Filter::Not(Box::new(normalise(c, site, pol)?)),
        Filter::In { column, values } => {
            let role = column_role(column)?;
            let values = values
                .iter()
                .map(|v| value_for(column, role, v, site, pol))
                .collect::<Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Err(Refusal::new(
                    format!("an empty IN list for {column}"),
                    "list at least one value",
                ));
            }
            Filter::In {
                column: column.clone(),
                values,
            }
        }
        Filter::Range { column, min, max } => {
            if column_role(column)? != ColumnRole::Range {
                return Err(Refusal::new(
                    format!("a range on {column}"),
                    "ranges (BETWEEN, <, <=, >, >=) work on age_at_sampling, sampling_year, passage_number and aliquots_available",
                ));
            }
            Filter::Range {
                column: column.clone(),
                min: *min,
                max: *max,
            }
        }
        Filter::Prefix { column, prefix } => match column_role(column)? {
            ColumnRole::CodePrefix => {
                let prefix = prefix.to_ascii_uppercase();
                if !is_icd10_prefix(&prefix) {
                    return Err(Refusal::new(
                        format!("'{prefix}%' is not an ICD-10 code prefix"),
                        "write a prefix like 'S72%' or 'S72.1%'",
                    ));
                }
                Filter::Prefix {
                    column: column.clone(),
                    prefix,
                }
            }
            // On a coded dimension a prefix is exactly the codes it matches.
            ColumnRole::Dimension => {
                let d = Dimension::from_name(column).expect("surface dimensions are dimensions");
                let values: Vec<Value> = dimension_values(d, site, pol)
                    .into_iter()
                    .filter(|v| v.starts_with(prefix.as_str()))
                    .map(Value::Text)
                    .collect();
                if values.is_empty() {
                    return Err(Refusal::new(
                        format!("no {column} code starts with '{prefix}'"),
                        codes_hint(column, site, pol),
                    ));
                }
                Filter::In {
                    column: column.clone(),
                    values,
                }
            }
            _ => {
                return Err(Refusal::new(
                    format!("LIKE on {column}"),
                    "LIKE 'prefix%' works on diagnosis and coded columns",
                ));
            }
        },
        Filter::IsNull { column } => {
            column_role(column)?;
            if !matches!(column.as_str(), "passage_number" | "diagnosis") {
                return Err(Refusal::new(
                    format!("IS NULL on {column}, which always has a value"),
                    "IS NULL works on passage_number and diagnosis",
                ));
            }
            Filter::IsNull {
                column: column.clone(),
            }
        }
    })
}

fn column_role(column: &str) -> Result<ColumnRole, Refusal> {
    if let Some(c) = surface::COLUMNS.iter().find(|c| c.name == column) {
        if c.role == ColumnRole::PrivacyUnit {
            return Err(Refusal::new(
                "donor_id is not allowed here",
                "donor_id is the privacy unit: it appears only inside COUNT(DISTINCT donor_id), never in a filter or GROUP BY",
            ));
        }
        return Ok(c.role);
    }
    if NEVER.contains(&column) {
        return Err(Refusal::new(
            format!("{column} is never queryable"),
            "identifiers, dates, free text and storage locations stay at the site",
        ));
    }
    if let Some(from) = Dimension::from_name(column).and_then(Dimension::derived_from) {
        return Err(Refusal::new(
            format!("{column} is for GROUP BY only"),
            format!("filter on {from} instead"),
        ));
    }
    let names: Vec<&str> = surface::COLUMNS
        .iter()
        .filter(|c| c.role != ColumnRole::PrivacyUnit)
        .map(|c| c.name)
        .collect();
    Err(Refusal::new(
        format!("there is no column {column}"),
        format!("the columns of samples are: {}", names.join(", ")),
    ))
}

fn codes_hint(column: &str, site: &SiteId, pol: &Policy) -> String {
    match Dimension::from_name(column) {
        Some(d) => format!(
            "{column} is one of: {}",
            dimension_values(d, site, pol).join(", ")
        ),
        None => SHAPE_HINT.into(),
    }
}

fn value_for(
    column: &str,
    role: ColumnRole,
    v: &Value,
    site: &SiteId,
    pol: &Policy,
) -> Result<Value, Refusal> {
    match (role, v) {
        (ColumnRole::Dimension, Value::Text(t)) => {
            let d = Dimension::from_name(column).expect("surface dimensions are dimensions");
            let ok = match d {
                Dimension::SiteId => SiteId::parse(t).is_ok(),
                _ => dimension_values(d, site, pol).contains(t),
            };
            if !ok {
                return Err(Refusal::new(
                    format!("'{t}' is not a value of {column}"),
                    codes_hint(column, site, pol),
                ));
            }
            Ok(v.clone())
        }
        (ColumnRole::Range, Value::Int(_)) => Ok(v.clone()),
        (ColumnRole::Flag, Value::Bool(_)) => Ok(v.clone()),
        (ColumnRole::CodePrefix, Value::Text(t)) => Icd10::parse(t)
            .map(|code| Value::Text(code.to_string()))
            .map_err(|e| {
                Refusal::new(
                    e.to_string(),
                    "write ICD-10 codes like 'S72.1', or a prefix with LIKE 'S72%'",
                )
            }),
        (ColumnRole::Dimension | ColumnRole::CodePrefix, _) => Err(Refusal::new(
            format!("{column} takes text values, not {v}"),
            codes_hint(column, site, pol),
        )),
        (ColumnRole::Range, _) => Err(Refusal::new(
            format!("{column} takes whole numbers, not {v}"),
            "e.g. age_at_sampling BETWEEN 50 AND 70",
        )),
        (ColumnRole::Flag, _) => Err(Refusal::new(
            format!("{column} takes true or false, not {v}"),
            format!("e.g. {column} = true"),
        )),
        (ColumnRole::PrivacyUnit, _) => unreachable!("refused in column_role"),
    }
}

/// `S`, `S7`, `S72`, `S72.`, `S72.1`: a letter, up to two digits, then
/// optionally a dot and one digit.
fn is_icd10_prefix(p: &str) -> bool {
    let b = p.as_bytes();
    let Some((first, rest)) = b.split_first() else {
        return false;
    };
    if !first.is_ascii_uppercase() {
        return false;
    }
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    match &rest[digits..] {
        [] => digits <= 2,
        [b'.'] | [b'.', b'0'..=b'9'] => digits == 2,
        _ => false,
    }
}
