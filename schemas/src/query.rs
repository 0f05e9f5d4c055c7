//! The FeasibilityQuery: the wire form of a researcher's question, whether it
//! was written in SQL or sent as JSON. [`FeasibilityQuery::canonical`] puts a
//! query in one normal form, so that two queries that mean the same thing
//! (`BETWEEN 50 AND 70` and `>= 50 AND <= 70`, `IN` lists in another order)
//! become equal, and so one release.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to count, over which samples, broken down by which dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeasibilityQuery {
    /// At least one measure.
    #[schema(min_items = 1)]
    pub measures: Vec<Measure>,
    /// Which samples count; `true` for all.
    #[serde(default)]
    pub filter: Filter,
    /// Dimensions to break the counts down by (public value sets only).
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// An aggregate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Measure {
    /// `COUNT(*)`: samples.
    Samples,
    /// `COUNT(DISTINCT donor_id)`: donors.
    Donors,
    /// `SUM(column)` of a column with declared bounds; values are clamped to them.
    Sum { column: String },
    /// `AVG(column)`, released as a noisy sum over a noisy count.
    Avg { column: String },
}

impl Measure {
    /// The name of the measure's column in a result, e.g. `sum_aliquots_available`.
    pub fn label(&self) -> String {
        match self {
            Self::Samples => "samples".into(),
            Self::Donors => "donors".into(),
            Self::Sum { column } => format!("sum_{column}"),
            Self::Avg { column } => format!("avg_{column}"),
        }
    }
}

/// A filter over the `samples` relation.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// Every sample.
    #[default]
    True,
    // A filter holds filters: their schema refers to itself, not unfolds.
    #[schema(no_recursion)]
    And(Vec<Filter>),
    #[schema(no_recursion)]
    Or(Vec<Filter>),
    #[schema(no_recursion)]
    Not(Box<Filter>),
    /// The column equals one of the values (`=`, `IN`).
    In {
        column: String,
        // (utoipa takes a type named `Value` for any JSON; the alias names
        // this one.)
        #[schema(value_type = Vec<Literal>)]
        values: Vec<Value>,
    },
    /// An integer column within inclusive bounds (`BETWEEN`, `<`, `>=`, …).
    Range {
        column: String,
        #[serde(default)]
        min: Option<i64>,
        #[serde(default)]
        max: Option<i64>,
    },
    /// A code column starts with the prefix (`LIKE 'S72%'`).
    Prefix { column: String, prefix: String },
    /// The column has no value (`IS NULL`).
    IsNull { column: String },
}

/// [`Value`] by a name OpenAPI schemas do not read as "any JSON value".
pub type Literal = Value;

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
        }
    }
}

impl FeasibilityQuery {
    /// The canonical form: measures and dimensions sorted and deduplicated,
    /// the filter in its normal form (see [`Filter::canonical`]).
    pub fn canonical(&self) -> Self {
        let mut measures = self.measures.clone();
        measures.sort();
        measures.dedup();
        let mut group_by = self.group_by.clone();
        group_by.sort();
        group_by.dedup();
        Self {
            measures,
            filter: self.filter.canonical(),
            group_by,
        }
    }

    /// The query as SQL in the supported subset; parsing it gives the query back.
    pub fn to_sql(&self) -> String {
        let mut select: Vec<String> = self.group_by.clone();
        select.extend(self.measures.iter().map(|m| {
            let expr = match m {
                Measure::Samples => "COUNT(*)".to_owned(),
                Measure::Donors => "COUNT(DISTINCT donor_id)".to_owned(),
                Measure::Sum { column } => format!("SUM({column})"),
                Measure::Avg { column } => format!("AVG({column})"),
            };
            format!("{expr} AS {}", m.label())
        }));
        let mut sql = format!("SELECT {} FROM samples", select.join(", "));
        if self.filter != Filter::True {
            sql.push_str(" WHERE ");
            sql.push_str(&self.filter.to_sql(false));
        }
        if !self.group_by.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&self.group_by.join(", "));
        }
        sql
    }

    /// The canonical form as compact JSON: equal strings mean equal questions.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&self.canonical()).expect("queries serialise")
    }
}

impl Filter {
    /// The normal form: nested `AND`/`OR` flattened, children sorted and
    /// deduplicated, double negation removed, `IN` lists sorted, ranges on one
    /// column intersected under `AND`, `IN` lists on one column merged under
    /// `OR`, and one-child `AND`/`OR` replaced by the child.
    pub fn canonical(&self) -> Self {
        match self {
            Self::True => Self::True,
            Self::Not(inner) => match inner.canonical() {
                Self::Not(x) => *x,
                x => Self::Not(Box::new(x)),
            },
            Self::In { column, values } => {
                let mut values = values.clone();
                values.sort();
                values.dedup();
                Self::In {
                    column: column.clone(),
                    values,
                }
            }
            Self::Range { column, min, max } => Self::Range {
                column: column.clone(),
                min: *min,
                max: *max,
            },
            Self::Prefix { .. } | Self::IsNull { .. } => self.clone(),
            Self::And(children) => {
                let mut flat = Vec::new();
                for c in children {
                    match c.canonical() {
                        Self::True => {}
                        Self::And(grand) => flat.extend(grand),
                        c => flat.push(c),
                    }
                }
                Self::group(merge_ranges(flat), true)
            }
            Self::Or(children) => {
                let mut flat = Vec::new();
                for c in children {
                    match c.canonical() {
                        Self::True => return Self::True,
                        Self::Or(grand) => flat.extend(grand),
                        c => flat.push(c),
                    }
                }
                Self::group(merge_in_lists(flat), false)
            }
        }
    }

    fn group(mut children: Vec<Filter>, and: bool) -> Self {
        children.sort();
        children.dedup();
        match children.len() {
            0 => Self::True,
            1 => children.pop().expect("one child"),
            _ if and => Self::And(children),
            _ => Self::Or(children),
        }
    }

    /// The filter as a SQL expression; `nested` adds parentheses around
    /// `AND`/`OR` lists.
    pub fn to_sql(&self, nested: bool) -> String {
        let list = |children: &[Filter], op: &str| {
            let inner: Vec<String> = children.iter().map(|c| c.to_sql(true)).collect();
            let joined = inner.join(op);
            if nested {
                format!("({joined})")
            } else {
                joined
            }
        };
        match self {
            Self::True => "TRUE".into(),
            Self::And(c) => list(c, " AND "),
            Self::Or(c) => list(c, " OR "),
            Self::Not(c) => format!("NOT ({})", c.to_sql(false)),
            Self::In { column, values } => match values.as_slice() {
                [one] => format!("{column} = {one}"),
                _ => {
                    let v: Vec<String> = values.iter().map(Value::to_string).collect();
                    format!("{column} IN ({})", v.join(", "))
                }
            },
            Self::Range { column, min, max } => match (min, max) {
                (Some(a), Some(b)) => format!("{column} BETWEEN {a} AND {b}"),
                (Some(a), None) => format!("{column} >= {a}"),
                (None, Some(b)) => format!("{column} <= {b}"),
                (None, None) => format!("{column} IS NOT NULL"),
            },
            Self::Prefix { column, prefix } => {
                format!("{column} LIKE '{}%'", prefix.replace('\'', "''"))
            }
            Self::IsNull { column } => format!("{column} IS NULL"),
        }
    }

    /// What a `WHERE` clause with this filter does to one row, under SQL's
    /// three-valued logic: `Some(true)` keeps it; `Some(false)`, and `None`
    /// (unknown: a comparison with NULL), do not. `value` gives a column's
    /// value in the row, `None` for NULL. The reference the engines and the
    /// canonical form are tested against.
    pub fn evaluate(&self, value: &dyn Fn(&str) -> Option<Value>) -> Option<bool> {
        let all = |children: &[Filter], absorbing: bool| {
            let results: Vec<_> = children.iter().map(|c| c.evaluate(value)).collect();
            if results.contains(&Some(absorbing)) {
                Some(absorbing)
            } else if results.contains(&None) {
                None
            } else {
                Some(!absorbing)
            }
        };
        match self {
            Self::True => Some(true),
            Self::Not(inner) => inner.evaluate(value).map(|b| !b),
            Self::And(children) => all(children, false),
            Self::Or(children) => all(children, true),
            Self::In { column, values } => value(column).map(|v| values.contains(&v)),
            // A range without bounds is `IS NOT NULL` (see `to_sql`).
            Self::Range {
                column,
                min: None,
                max: None,
            } => Some(value(column).is_some()),
            Self::Range { column, min, max } => value(column).map(|v| match v {
                Value::Int(i) => min.is_none_or(|m| i >= m) && max.is_none_or(|m| i <= m),
                _ => false,
            }),
            Self::Prefix { column, prefix } => value(column).map(|v| match v {
                Value::Text(t) => t.starts_with(prefix.as_str()),
                _ => false,
            }),
            Self::IsNull { column } => Some(value(column).is_none()),
        }
    }

    /// Every column the filter mentions.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit(&mut |f| match f {
            Self::In { column, .. }
            | Self::Range { column, .. }
            | Self::Prefix { column, .. }
            | Self::IsNull { column } => out.push(column.as_str()),
            _ => {}
        });
        out
    }

    /// Calls `f` on this filter and every filter inside it.
    pub fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Filter)) {
        f(self);
        match self {
            Self::And(c) | Self::Or(c) => c.iter().for_each(|c| c.visit(f)),
            Self::Not(c) => c.visit(f),
            _ => {}
        }
    }
}

/// Under `AND`, several ranges on one column are one range.
fn merge_ranges(children: Vec<Filter>) -> Vec<Filter> {
    let mut ranges: BTreeMap<String, (Option<i64>, Option<i64>)> = BTreeMap::new();
    let mut rest = Vec::new();
    for c in children {
        match c {
            Filter::Range { column, min, max } => {
                let r = ranges.entry(column).or_insert((None, None));
                r.0 = r.0.max(min); // None sorts first: the tighter bound wins
                r.1 = match (r.1, max) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            c => rest.push(c),
        }
    }
    rest.extend(
        ranges
            .into_iter()
            .map(|(column, (min, max))| Filter::Range { column, min, max }),
    );
    rest
}

/// Under `OR`, several `IN` lists on one column are one list.
fn merge_in_lists(children: Vec<Filter>) -> Vec<Filter> {
    let mut lists: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut rest = Vec::new();
    for c in children {
        match c {
            Filter::In { column, values } => lists.entry(column).or_default().extend(values),
            c => rest.push(c),
        }
    }
    rest.extend(
        lists
            .into_iter()
            .map(|(column, values)| Filter::In { column, values }.canonical()),
    );
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_follows_three_valued_logic() {
        // passage_number is NULL, age is 60.
        let row = |c: &str| (c == "age").then_some(Value::Int(60));
        let passage = range("passage_number", Some(2), None);
        let old = range("age", Some(50), None);
        assert_eq!(
            passage.evaluate(&row),
            None,
            "a comparison with NULL is unknown"
        );
        assert_eq!(Filter::Not(Box::new(passage.clone())).evaluate(&row), None);
        let young = Filter::Not(Box::new(old.clone()));
        assert_eq!(
            Filter::And(vec![passage.clone(), young.clone()]).evaluate(&row),
            Some(false),
            "false wins an AND"
        );
        assert_eq!(
            Filter::Or(vec![passage.clone(), old.clone()]).evaluate(&row),
            Some(true),
            "true wins an OR"
        );
        assert_eq!(Filter::Or(vec![passage, young]).evaluate(&row), None);
        assert_eq!(
            range("passage_number", None, None).evaluate(&row),
            Some(false)
        );
        assert_eq!(range("age", None, None).evaluate(&row), Some(true));
        let is_null = Filter::IsNull {
            column: "passage_number".into(),
        };
        assert_eq!(is_null.evaluate(&row), Some(true));
    }

    fn range(c: &str, min: Option<i64>, max: Option<i64>) -> Filter {
        Filter::Range {
            column: c.into(),
            min,
            max,
        }
    }

    fn eq(c: &str, v: &str) -> Filter {
        Filter::In {
            column: c.into(),
            values: vec![Value::Text(v.into())],
        }
    }

    #[test]
    fn ranges_on_one_column_intersect() {
        let between = range("age_at_sampling", Some(50), Some(70));
        let two = Filter::And(vec![
            range("age_at_sampling", Some(50), None),
            range("age_at_sampling", None, Some(70)),
        ]);
        assert_eq!(two.canonical(), between.canonical());
        let narrower = Filter::And(vec![
            range("age_at_sampling", Some(40), Some(80)),
            range("age_at_sampling", Some(50), Some(70)),
        ]);
        assert_eq!(narrower.canonical(), between);
    }

    #[test]
    fn order_nesting_and_duplicates_do_not_matter() {
        let a = Filter::And(vec![
            eq("sex", "Female"),
            Filter::And(vec![eq("sample_type", "Serum"), eq("sex", "Female")]),
        ]);
        let b = Filter::And(vec![eq("sample_type", "Serum"), eq("sex", "Female")]);
        assert_eq!(a.canonical(), b.canonical());
        let in1 = Filter::In {
            column: "sex".into(),
            values: vec![Value::Text("Male".into()), Value::Text("Female".into())],
        };
        let in2 = Filter::Or(vec![eq("sex", "Female"), eq("sex", "Male")]);
        assert_eq!(in1.canonical(), in2.canonical());
        let not_not = Filter::Not(Box::new(Filter::Not(Box::new(eq("sex", "Female")))));
        assert_eq!(not_not.canonical(), eq("sex", "Female"));
        assert_eq!(
            Filter::And(vec![Filter::True, eq("sex", "Male")]).canonical(),
            eq("sex", "Male")
        );
    }

    #[test]
    fn different_questions_stay_different() {
        let a = Filter::And(vec![
            eq("sex", "Female"),
            range("age_at_sampling", Some(50), Some(70)),
        ]);
        let b = Filter::Or(vec![
            eq("sex", "Female"),
            range("age_at_sampling", Some(50), Some(70)),
        ]);
        assert_ne!(a.canonical(), b.canonical());
        let c = Filter::And(vec![
            range("age_at_sampling", Some(50), None),
            range("passage_number", None, Some(70)),
        ]);
        assert_ne!(c.canonical(), range("age_at_sampling", Some(50), Some(70)));
    }

    #[test]
    fn query_json_round_trips() {
        let q = FeasibilityQuery {
            measures: vec![
                Measure::Donors,
                Measure::Samples,
                Measure::Sum {
                    column: "aliquots_available".into(),
                },
            ],
            filter: Filter::And(vec![
                eq("sex", "Female"),
                range("age_at_sampling", Some(50), Some(70)),
            ]),
            group_by: vec!["sample_type".into()],
        };
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<FeasibilityQuery>(&json).unwrap(), q);
        assert!(
            serde_json::from_str::<FeasibilityQuery>(
                r#"{"measures":[{"kind":"samples"}],"limit":5}"#
            )
            .is_err()
        );
        assert_eq!(q.canonical().measures[0], Measure::Samples);
    }
}
