//! SQL in the supported subset → [`FeasibilityQuery`]. Anything outside the
//! subset is refused with a message that names the construct.

use bonebank_schemas::{FeasibilityQuery, Filter, Measure, Value};
use sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::{Refusal, SHAPE_HINT, limits};

type Result<T> = std::result::Result<T, Refusal>;

fn refuse<T>(construct: impl std::fmt::Display, hint: &str) -> Result<T> {
    Err(Refusal::new(format!("{construct} is not allowed"), hint))
}

/// Parses a query. The text is held to the [`limits`] before the parser
/// sees it, and the query to them right after.
pub fn parse(sql: &str) -> Result<FeasibilityQuery> {
    limits::check_text(sql)?;
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| Refusal::new(format!("the SQL could not be parsed: {e}"), SHAPE_HINT))?;
    let [statement] = statements.as_slice() else {
        return Err(Refusal::new(
            "send exactly one SELECT statement",
            SHAPE_HINT,
        ));
    };
    let Statement::Query(query) = statement else {
        return refuse("a statement other than SELECT", SHAPE_HINT);
    };
    let query = select_of(query).and_then(translate)?;
    limits::check_query(&query)?;
    Ok(query)
}

/// Parses a bare filter expression, as in a policy's forced filter.
pub fn parse_filter(expr: &str) -> Result<Filter> {
    let query = parse(&format!("SELECT COUNT(*) FROM samples WHERE {expr}"))?;
    Ok(query.filter)
}

fn select_of(query: &Query) -> Result<&Select> {
    if query.with.is_some() {
        return refuse("WITH (a common table expression)", SHAPE_HINT);
    }
    if query.order_by.is_some() {
        return refuse(
            "ORDER BY",
            "results list every key of the dimensions in a fixed order",
        );
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return refuse(
            "LIMIT",
            "every key of the dimensions is always listed; remove LIMIT",
        );
    }
    if !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
    {
        return refuse("a clause after the query", SHAPE_HINT);
    }
    if !query.pipe_operators.is_empty() {
        return refuse("a pipe operator", SHAPE_HINT);
    }
    match query.body.as_ref() {
        SetExpr::Select(select) => Ok(select),
        SetExpr::Query(_) => refuse("a subquery", SHAPE_HINT),
        SetExpr::SetOperation { op, .. } => refuse(
            format!("{op} (a set operation)"),
            "send one query per question",
        ),
        _ => refuse("this kind of query", SHAPE_HINT),
    }
}

fn translate(select: &Select) -> Result<FeasibilityQuery> {
    if select.distinct.is_some() {
        return refuse(
            "SELECT DISTINCT",
            "use COUNT(DISTINCT donor_id) to count donors",
        );
    }
    if select.top.is_some() {
        return refuse("TOP", "every key of the dimensions is always listed");
    }
    if select.into.is_some() {
        return refuse("SELECT INTO", SHAPE_HINT);
    }
    if select.having.is_some() {
        return refuse(
            "HAVING",
            "filtering on counts would reveal them; filter rows with WHERE",
        );
    }
    if select.qualify.is_some() || !select.named_window.is_empty() {
        return refuse("a window clause", SHAPE_HINT);
    }
    if select.prewhere.is_some()
        || !select.lateral_views.is_empty()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
    {
        return refuse("this clause", SHAPE_HINT);
    }
    check_from(select)?;

    let group_by = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return refuse(
                    "ROLLUP, CUBE or GROUPING SETS",
                    "group by plain dimension names",
                );
            }
            exprs.iter().map(column_name).collect::<Result<Vec<_>>>()?
        }
        GroupByExpr::All(_) => return refuse("GROUP BY ALL", "name the dimensions to group by"),
    };

    let mut measures = Vec::new();
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return refuse(
                    "SELECT *",
                    "rows are never returned; select COUNT(*) or COUNT(DISTINCT donor_id)",
                );
            }
            _ => return refuse("this select item", SHAPE_HINT),
        };
        match expr {
            Expr::Function(_) => measures.push(measure(expr)?),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let name = column_name(expr)?;
                if !group_by.contains(&name) {
                    return Err(Refusal::new(
                        format!("column {name} in SELECT is not in GROUP BY"),
                        "rows are never returned: a column in SELECT must be a dimension listed in GROUP BY",
                    ));
                }
            }
            other => return refuse(format!("the expression {other} in SELECT"), SHAPE_HINT),
        }
    }
    if measures.is_empty() {
        return Err(Refusal::new("the query has no measure", SHAPE_HINT));
    }
    let filter = match &select.selection {
        Some(expr) => filter(expr)?,
        None => Filter::True,
    };
    Ok(FeasibilityQuery {
        measures,
        filter,
        group_by,
    })
}

fn check_from(select: &Select) -> Result<()> {
    let [from] = select.from.as_slice() else {
        return match select.from.len() {
            0 => Err(Refusal::new("the query has no FROM", "query FROM samples")),
            _ => refuse(
                "more than one table (an implicit join)",
                "the only relation is samples",
            ),
        };
    };
    if !from.joins.is_empty() {
        return refuse(
            "JOIN",
            "the only relation is samples, which already holds each sample's donor attributes",
        );
    }
    match &from.relation {
        TableFactor::Table {
            name, args: None, ..
        } if object_name(name).eq_ignore_ascii_case("samples") => Ok(()),
        TableFactor::Table {
            name, args: None, ..
        } => Err(Refusal::new(
            format!("there is no relation {}", object_name(name)),
            "the only relation is samples",
        )),
        TableFactor::Derived { .. } => refuse("a subquery in FROM", "query FROM samples"),
        _ => refuse("this FROM clause", "query FROM samples"),
    }
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A plain column name; `samples.col` is accepted as `col`.
fn column_name(expr: &Expr) -> Result<String> {
    match expr {
        Expr::Identifier(ident) => Ok(ident.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts)
            if parts.len() == 2 && parts[0].value.eq_ignore_ascii_case("samples") =>
        {
            Ok(parts[1].value.to_ascii_lowercase())
        }
        Expr::Nested(inner) => column_name(inner),
        Expr::Function(f) => refuse(
            format!("the function {}", f.name),
            "filter and group by plain columns",
        ),
        other => refuse(
            format!("the expression {other} where a column was expected"),
            SHAPE_HINT,
        ),
    }
}

fn measure(expr: &Expr) -> Result<Measure> {
    let Expr::Function(f) = expr else {
        unreachable!("called on functions")
    };
    let name = object_name(&f.name).to_ascii_lowercase();
    if f.over.is_some() {
        return refuse("a window function (OVER)", SHAPE_HINT);
    }
    if f.filter.is_some() || f.null_treatment.is_some() || !f.within_group.is_empty() {
        return refuse(format!("a modifier of {name}"), "put conditions in WHERE");
    }
    let FunctionArguments::List(list) = &f.args else {
        return refuse(format!("{name} without an argument list"), SHAPE_HINT);
    };
    if !list.clauses.is_empty() {
        return refuse(format!("a clause inside {name}(…)"), SHAPE_HINT);
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    let [arg] = list.args.as_slice() else {
        return Err(Refusal::new(
            format!("{name} takes exactly one argument"),
            SHAPE_HINT,
        ));
    };
    let arg = match arg {
        FunctionArg::Unnamed(a) => a,
        _ => return refuse(format!("a named argument to {name}"), SHAPE_HINT),
    };
    match (name.as_str(), arg, distinct) {
        ("count", FunctionArgExpr::Wildcard, false) => Ok(Measure::Samples),
        ("count", FunctionArgExpr::Expr(e), true) if column_name(e)? == "donor_id" => {
            Ok(Measure::Donors)
        }
        ("count", FunctionArgExpr::Expr(e), false) if column_name(e)? == "donor_id" => {
            Err(Refusal::new(
                "COUNT(donor_id) counts samples, not donors",
                "count donors with COUNT(DISTINCT donor_id) and samples with COUNT(*)",
            ))
        }
        ("count", _, _) => Err(Refusal::new(
            format!("{expr} is not a supported count"),
            "count samples with COUNT(*) and donors with COUNT(DISTINCT donor_id)",
        )),
        ("sum" | "avg", FunctionArgExpr::Expr(e), false) => {
            let column = column_name(e)?;
            Ok(if name == "sum" {
                Measure::Sum { column }
            } else {
                Measure::Avg { column }
            })
        }
        ("sum" | "avg", _, _) => Err(Refusal::new(
            format!("{expr} is not supported"),
            "use SUM(column) or AVG(column)",
        )),
        _ => Err(Refusal::new(
            format!("the function {name} is not allowed"),
            "the measures are COUNT(*), COUNT(DISTINCT donor_id), SUM(column) and AVG(column)",
        )),
    }
}

const FILTER_HINT: &str = "filters are =, <>, IN, BETWEEN, <, <=, >, >=, LIKE 'prefix%', IS [NOT] NULL \
on columns of samples, combined with AND, OR and NOT";

fn filter(expr: &Expr) -> Result<Filter> {
    match expr {
        Expr::Nested(inner) => filter(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => Ok(Filter::And(vec![filter(left)?, filter(right)?])),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => Ok(Filter::Or(vec![filter(left)?, filter(right)?])),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Filter::Not(Box::new(filter(expr)?))),
        Expr::BinaryOp { left, op, right } => comparison(left, op, right),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let column = column_name(expr)?;
            let values = list.iter().map(literal).collect::<Result<Vec<_>>>()?;
            negate(Filter::In { column, values }, *negated)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let column = column_name(expr)?;
            let range = Filter::Range {
                column,
                min: Some(integer(low)?),
                max: Some(integer(high)?),
            };
            negate(range, *negated)
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let column = column_name(expr)?;
            let Value::Text(pattern) = literal(pattern)? else {
                return Err(Refusal::new(
                    "LIKE needs a text pattern",
                    "write LIKE 'S72%'",
                ));
            };
            let prefix = pattern
                .strip_suffix('%')
                .filter(|p| !p.contains(['%', '_']));
            let Some(prefix) = prefix else {
                return Err(Refusal::new(
                    format!("the pattern '{pattern}' is not a prefix"),
                    "LIKE takes a prefix followed by one %, e.g. LIKE 'S72%'",
                ));
            };
            negate(
                Filter::Prefix {
                    column,
                    prefix: prefix.to_owned(),
                },
                *negated,
            )
        }
        Expr::IsNull(e) => Ok(Filter::IsNull {
            column: column_name(e)?,
        }),
        Expr::IsNotNull(e) => Ok(Filter::Not(Box::new(Filter::IsNull {
            column: column_name(e)?,
        }))),
        Expr::IsTrue(e) => flag(e, true),
        Expr::IsFalse(e) => flag(e, false),
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => flag(expr, true),
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            refuse("a subquery", FILTER_HINT)
        }
        Expr::Function(f) => refuse(format!("the function {}", f.name), FILTER_HINT),
        Expr::ILike { .. } | Expr::Like { .. } | Expr::SimilarTo { .. } | Expr::RLike { .. } => {
            refuse("this form of LIKE", "write column LIKE 'prefix%'")
        }
        other => refuse(format!("the expression {other}"), FILTER_HINT),
    }
}

fn negate(f: Filter, negated: bool) -> Result<Filter> {
    Ok(if negated { Filter::Not(Box::new(f)) } else { f })
}

fn flag(column: &Expr, value: bool) -> Result<Filter> {
    Ok(Filter::In {
        column: column_name(column)?,
        values: vec![Value::Bool(value)],
    })
}

fn comparison(left: &Expr, op: &BinaryOperator, right: &Expr) -> Result<Filter> {
    use BinaryOperator as B;
    // Accept `column op literal` and `literal op column`.
    let (column, op, value) = match (column_name(left), column_name(right)) {
        (Ok(c), _) => (c, op.clone(), right),
        (Err(_), Ok(c)) => {
            let flipped = match op {
                B::Lt => B::Gt,
                B::LtEq => B::GtEq,
                B::Gt => B::Lt,
                B::GtEq => B::LtEq,
                other => other.clone(),
            };
            (c, flipped, left)
        }
        (Err(e), Err(_)) => return Err(e),
    };
    let range = |min: Option<i64>, max: Option<i64>| Filter::Range {
        column: column.clone(),
        min,
        max,
    };
    match op {
        B::Eq => Ok(Filter::In {
            column: column.clone(),
            values: vec![literal(value)?],
        }),
        B::NotEq => Ok(Filter::Not(Box::new(Filter::In {
            column: column.clone(),
            values: vec![literal(value)?],
        }))),
        B::Lt => Ok(range(None, Some(integer(value)?.saturating_sub(1)))),
        B::LtEq => Ok(range(None, Some(integer(value)?))),
        B::Gt => Ok(range(Some(integer(value)?.saturating_add(1)), None)),
        B::GtEq => Ok(range(Some(integer(value)?), None)),
        other => refuse(format!("the operator {other}"), FILTER_HINT),
    }
}

fn literal(expr: &Expr) -> Result<Value> {
    match expr {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => n.parse::<i64>().map(Value::Int).map_err(|_| {
                Refusal::new(
                    format!("{n} is not a whole number"),
                    "numbers in filters are whole numbers",
                )
            }),
            SqlValue::SingleQuotedString(s) => Ok(Value::Text(s.clone())),
            SqlValue::Boolean(b) => Ok(Value::Bool(*b)),
            SqlValue::Null => Err(Refusal::new(
                "a comparison with NULL",
                "write column IS NULL or IS NOT NULL",
            )),
            other => refuse(
                format!("the literal {other}"),
                "use 'text', whole numbers, true or false",
            ),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Value::Int(i) => Ok(Value::Int(-i)),
            _ => refuse("a minus before a non-number", FILTER_HINT),
        },
        Expr::Nested(inner) => literal(inner),
        other => refuse(
            format!("the expression {other} where a literal value was expected"),
            FILTER_HINT,
        ),
    }
}

fn integer(expr: &Expr) -> Result<i64> {
    match literal(expr)? {
        Value::Int(i) => Ok(i),
        other => Err(Refusal::new(
            format!("{other} is not a whole number"),
            "ranges (BETWEEN, <, <=, >, >=) are for whole-number columns such as age_at_sampling",
        )),
    }
}
