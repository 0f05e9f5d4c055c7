//! What the fuzz targets share: queries and rows built from the fuzzer's
//! bytes, a reference evaluation of filters under SQL's three-valued logic,
//! and the canonical round trip every accepted query must survive.

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use bonebank_schemas::{FeasibilityQuery, Filter, Measure, Value};

/// Columns the generated filters use, with the values they draw from: few,
/// so that predicates on one column meet and canonicalisation merges them.
const INTS: &[&str] = &["age_at_sampling", "passage_number"];
const TEXTS: &[(&str, &[&str])] = &[
    ("sex", &["Female", "Male", "Unknown"]),
    ("diagnosis", &["S72.0", "S72.1", "M16.1", "C90.0"]),
    ("sample_type", &["Serum", "StemCells", "it's"]),
];
const FLAGS: &[&str] = &["consent_commercial", "consent_research"];
const PREFIXES: &[&str] = &["S", "S7", "S72", "S72.1", "M"];

fn small_int(u: &mut Unstructured<'_>) -> Result<i64> {
    Ok(i64::from(u.int_in_range(-2i8..=12)?) * 10)
}

fn text(u: &mut Unstructured<'_>, column: &str) -> Result<Value> {
    let values = TEXTS
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(&["x"][..], |(_, v)| v);
    Ok(Value::Text((*u.choose(values)?).to_owned()))
}

fn leaf(u: &mut Unstructured<'_>) -> Result<Filter> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => {
            let (column, _) = *u.choose(TEXTS)?;
            let n = u.int_in_range(1usize..=3)?;
            let values = (0..n).map(|_| text(u, column)).collect::<Result<_>>()?;
            Filter::In {
                column: column.into(),
                values,
            }
        }
        1 => Filter::In {
            column: (*u.choose(FLAGS)?).into(),
            values: vec![Value::Bool(u.arbitrary()?)],
        },
        2 => {
            // At least one bound: a range with neither has no SQL of its own.
            let (min, max) = match u.int_in_range(0u8..=2)? {
                0 => (Some(small_int(u)?), None),
                1 => (None, Some(small_int(u)?)),
                _ => (Some(small_int(u)?), Some(small_int(u)?)),
            };
            Filter::Range {
                column: (*u.choose(INTS)?).into(),
                min,
                max,
            }
        }
        3 => Filter::Prefix {
            column: "diagnosis".into(),
            prefix: (*u.choose(PREFIXES)?).into(),
        },
        _ => Filter::IsNull {
            column: (*u.choose(&["diagnosis", "passage_number"])?).into(),
        },
    })
}

/// A filter at most `depth` levels deep; AND and OR lists are never empty.
pub fn filter(u: &mut Unstructured<'_>, depth: u32) -> Result<Filter> {
    if depth == 0 {
        return leaf(u);
    }
    Ok(match u.int_in_range(0u8..=3)? {
        0 => leaf(u)?,
        1 => Filter::Not(Box::new(filter(u, depth - 1)?)),
        kind => {
            let n = u.int_in_range(1usize..=4)?;
            let children = (0..n)
                .map(|_| filter(u, depth - 1))
                .collect::<Result<Vec<_>>>()?;
            if kind == 2 {
                Filter::And(children)
            } else {
                Filter::Or(children)
            }
        }
    })
}

/// A whole query over the vocabulary above.
pub fn query(u: &mut Unstructured<'_>) -> Result<FeasibilityQuery> {
    let measures = [
        Measure::Samples,
        Measure::Donors,
        Measure::Sum {
            column: "aliquots_available".into(),
        },
    ];
    let n = u.int_in_range(1usize..=3)?;
    let measures = (0..n)
        .map(|_| u.choose(&measures).cloned())
        .collect::<Result<_>>()?;
    let group_by = match u.int_in_range(0u8..=2)? {
        0 => Vec::new(),
        1 => vec!["sex".into()],
        _ => vec!["sample_type".into(), "age_band".into()],
    };
    Ok(FeasibilityQuery {
        measures,
        filter: filter(u, 4)?,
        group_by,
    })
}

/// A row: each vocabulary column has a value or is NULL.
pub type Row = BTreeMap<&'static str, Option<Value>>;

pub fn row(u: &mut Unstructured<'_>) -> Result<Row> {
    let mut row = Row::new();
    for column in INTS {
        let v = if u.ratio(1u8, 5)? {
            None
        } else {
            Some(Value::Int(small_int(u)? + i64::from(u.int_in_range(0u8..=9)?)))
        };
        row.insert(column, v);
    }
    for (column, _) in TEXTS {
        let v = if u.ratio(1u8, 5)? {
            None
        } else {
            Some(text(u, column)?)
        };
        row.insert(column, v);
    }
    for column in FLAGS {
        row.insert(column, Some(Value::Bool(u.arbitrary()?)));
    }
    Ok(row)
}

/// Whether `f` keeps `row` under SQL's three-valued logic (see
/// [`Filter::evaluate`]).
pub fn keeps(f: &Filter, row: &Row) -> Option<bool> {
    f.evaluate(&|column| row.get(column).cloned().flatten())
}

/// Columns of the query surface: only queries over these are meant to
/// survive a trip through SQL (the front end passes other names on for the
/// node to refuse, and those need not be valid SQL identifiers).
fn on_the_surface(q: &FeasibilityQuery) -> bool {
    let known = |c: &str| {
        bonebank_schemas::surface::COLUMNS
            .iter()
            .any(|s| s.name == c)
            || ["age_band", "diagnosis_3char", "diagnosis_chapter", "sampling_year"].contains(&c)
    };
    q.filter.columns().into_iter().all(known)
        && q.group_by.iter().all(|g| known(g))
        && q.measures.iter().all(|m| match m {
            Measure::Sum { column } | Measure::Avg { column } => known(column),
            Measure::Samples | Measure::Donors => true,
        })
}

/// The canonical form is stable, and, for a query over the surface within
/// the limits, its SQL parses back to it.
pub fn assert_canonical_round_trip(q: &FeasibilityQuery) {
    let canonical = q.canonical();
    assert_eq!(canonical.canonical(), canonical, "canonical form is stable");
    if !on_the_surface(&canonical) || bonebank_query::limits::check_query(&canonical).is_err() {
        return;
    }
    let sql = canonical.to_sql();
    if bonebank_query::limits::check_text(&sql).is_err() {
        return;
    }
    match bonebank_query::sql::parse(&sql) {
        Ok(back) => assert_eq!(back.canonical(), canonical, "{sql}"),
        Err(r) => panic!("the SQL of a canonical query does not parse: {sql}: {r}"),
    }
}
