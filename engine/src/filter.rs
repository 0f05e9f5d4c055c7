//! A checked filter over the surface, under SQL's three-valued logic,
//! exactly as a `WHERE` clause would keep rows. The conditions that must
//! all hold (the top-level AND) are worked out one of three ways:
//!
//! - a condition on one dictionary-encoded code column is evaluated by
//!   DataFusion over the dictionary's few values, and each row then looks
//!   its key up in a table;
//! - a whole-number range is compared on the column's own integers;
//! - anything else is one DataFusion physical expression over the batch.
//!
//! The first two run together, 64 rows at a time, each word of rows
//! skipping the conditions after one that left none of its rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema};
use bonebank_schemas::{Filter, Value};
use datafusion_common::ScalarValue;
use datafusion_expr_common::operator::Operator;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr,
};

use crate::{Error, Result};

type Expr = Arc<dyn PhysicalExpr>;

/// A filter ready to run over batches of one schema: the conditions that
/// must all hold. No conditions: every row (the filter `TRUE`).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
enum Condition {
    /// Evaluated over every row of a batch.
    Rows(Expr),
    /// A condition on one dictionary-encoded code column: evaluated over
    /// the dictionary's values (and a NULL) once, then looked up by each
    /// row's key, instead of comparing every row's code.
    Codes { column: String, expr: Expr },
    /// A whole-number column between two bounds, both included; NULL is
    /// unknown, and not kept.
    Range { column: String, lo: i64, hi: i64 },
}

/// A filter at work on the batches of one pass: it keeps what it worked
/// out about a dictionary for the next batch that shares it.
#[derive(Debug)]
pub struct Evaluation<'f> {
    filter: &'f CompiledFilter,
    /// Per condition on codes: what was worked out last.
    codes: Vec<Option<PassingCodes>>,
}

/// Whether each key of a dictionary passes a condition, as a table indexed
/// by every value the key type can take (its bits read unsigned), and
/// whether NULL does.
#[derive(Debug, Clone)]
struct PassingCodes {
    /// The dictionary's values: their address and length.
    dictionary: (usize, usize),
    table: Vec<u8>,
    null: bool,
}

impl CompiledFilter {
    /// Compiles `filter` against `schema`. The filter was checked against the
    /// surface, so a column or value that does not fit is our error, not the
    /// caller's.
    pub fn new(filter: &Filter, schema: &Schema) -> Result<Self> {
        let mut conditions = Vec::new();
        conjuncts(filter, schema, &mut conditions)?;
        Ok(Self { conditions })
    }

    /// Starts a pass over batches.
    pub fn evaluation(&self) -> Evaluation<'_> {
        Evaluation {
            filter: self,
            codes: vec![None; self.conditions.len()],
        }
    }
}

impl Evaluation<'_> {
    /// The rows of `batch` the filter keeps: true, not false and not unknown.
    pub fn keeps(&mut self, batch: &RecordBatch) -> Result<BooleanBuffer> {
        let rows = batch.num_rows();
        let mut words = vec![u64::MAX; rows.div_ceil(64)];
        if let Some(last) = words.last_mut()
            && !rows.is_multiple_of(64)
        {
            *last = (1 << (rows % 64)) - 1;
        }
        let buffer = |words: Vec<u64>| BooleanBuffer::new(Buffer::from_vec(words), 0, rows);
        // Conditions over whole rows first, and each code condition's table
        // for this batch's dictionary.
        for (i, condition) in self.filter.conditions.iter().enumerate() {
            match condition {
                Condition::Rows(expr) => {
                    let value = expr
                        .evaluate(batch)
                        .and_then(|v| v.into_array(rows))
                        .map_err(Error::from_df)?;
                    let holds = value.as_boolean_opt().ok_or_else(|| {
                        Error::Engine("a filter did not evaluate to booleans".into())
                    })?;
                    // Unknown (NULL) is not kept, as in a WHERE clause.
                    let holds = match holds.nulls() {
                        Some(nulls) => holds.values() & nulls.inner(),
                        None => holds.values().clone(),
                    };
                    for (word, bits) in words.iter_mut().zip(holds.bit_chunks().iter_padded()) {
                        *word &= bits;
                    }
                }
                Condition::Codes { column, expr } => {
                    let codes = dictionary(batch, column)?;
                    let id = (
                        Arc::as_ptr(codes.values()) as *const () as usize,
                        codes.values().len(),
                    );
                    if self.codes[i].as_ref().is_none_or(|p| p.dictionary != id) {
                        self.codes[i] = Some(PassingCodes::new(
                            id,
                            column,
                            codes.keys().data_type(),
                            codes.values(),
                            expr,
                        )?);
                    }
                }
                Condition::Range { .. } => {}
            }
        }
        if words.iter().all(|&w| w == 0) {
            return Ok(buffer(words));
        }
        let lookups = self
            .filter
            .conditions
            .iter()
            .zip(&self.codes)
            .filter_map(|(condition, codes)| {
                Lookup::new(batch, condition, codes.as_ref()).transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        for (w, word) in words.iter_mut().enumerate() {
            for lookup in &lookups {
                if *word == 0 {
                    break;
                }
                *word &= lookup.word(w);
            }
        }
        Ok(buffer(words))
    }
}

fn dictionary<'b>(
    batch: &'b RecordBatch,
    column: &str,
) -> Result<&'b dyn arrow::array::AnyDictionaryArray> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any_dictionary_opt())
        .ok_or_else(|| Error::Engine(format!("{column} is not coded")))
}

impl PassingCodes {
    fn new(
        dictionary: (usize, usize),
        column: &str,
        keys: &DataType,
        values: &ArrayRef,
        expr: &Expr,
    ) -> Result<Self> {
        let mut passes = passing_codes(column, values, expr)?;
        let null = passes.pop().expect("the NULL's entry");
        let size = match keys {
            DataType::Int8 => 1 << 8,
            DataType::Int16 => 1 << 16,
            other => return Err(Error::Engine(format!("{column} has {other} keys"))),
        };
        let mut table = vec![0u8; size];
        for (key, &p) in passes.iter().enumerate().take(size / 2) {
            table[key] = u8::from(p);
        }
        Ok(Self {
            dictionary,
            table,
            null,
        })
    }
}

/// A condition worked out 64 rows at a time, on one batch.
enum Lookup<'a> {
    Codes8(Codes<'a, i8, 256>),
    Codes16(Codes<'a, i16, 65_536>),
    Range(Range<'a>),
}

/// Keys looked up in a table that covers every key (no bounds to check).
struct Codes<'a, K, const N: usize> {
    keys: &'a [K],
    table: &'a [u8; N],
    /// Which rows have a value, by word, and whether NULL passes.
    valid: Option<(Vec<u64>, bool)>,
}

struct Range<'a> {
    values: Numbers<'a>,
    valid: Option<Vec<u64>>,
}

/// A column's numbers and the range's bounds in their type; none where no
/// value of the type is in the range.
enum Numbers<'a> {
    I8(&'a [i8], Option<(i8, i8)>),
    I16(&'a [i16], Option<(i16, i16)>),
    I32(&'a [i32], Option<(i32, i32)>),
    I64(&'a [i64], Option<(i64, i64)>),
}

/// `[lo, hi]` as bounds of type `T`, clamped to what it holds; none if
/// no value of `T` lies between them.
fn bounds<T: TryFrom<i64> + Into<i64> + Copy>(lo: i64, hi: i64, min: T, max: T) -> Option<(T, T)> {
    let (lo, hi) = (lo.max(min.into()), hi.min(max.into()));
    (lo <= hi).then(|| {
        let fit = |v: i64| T::try_from(v).ok().expect("clamped into the type");
        (fit(lo), fit(hi))
    })
}

/// A null buffer's validity, by word of 64 rows.
fn valid_words(nulls: Option<&NullBuffer>) -> Option<Vec<u64>> {
    nulls.map(|n| n.inner().bit_chunks().iter_padded().collect())
}

impl<'a> Lookup<'a> {
    /// How a condition is worked out word by word on `batch`; none for a
    /// condition evaluated over whole rows.
    fn new(
        batch: &'a RecordBatch,
        condition: &Condition,
        codes: Option<&'a PassingCodes>,
    ) -> Result<Option<Self>> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Engine(format!("the surface has no column {name}")))
        };
        Ok(Some(match condition {
            Condition::Rows(_) => return Ok(None),
            Condition::Codes { column: name, .. } => {
                let codes = codes.expect("worked out for this batch");
                let array = column(name)?;
                let valid = valid_words(array.nulls()).map(|v| (v, codes.null));
                match array.data_type() {
                    DataType::Dictionary(k, _) if **k == DataType::Int8 => Lookup::Codes8(Codes {
                        keys: array.as_dictionary::<Int8Type>().keys().values(),
                        table: codes.table.as_slice().try_into().expect("256 entries"),
                        valid,
                    }),
                    _ => Lookup::Codes16(Codes {
                        keys: array.as_dictionary::<Int16Type>().keys().values(),
                        table: codes.table.as_slice().try_into().expect("65,536 entries"),
                        valid,
                    }),
                }
            }
            Condition::Range {
                column: name,
                lo,
                hi,
            } => {
                let array = column(name)?;
                let (lo, hi) = (*lo, *hi);
                let values = match array.data_type() {
                    DataType::Int8 => Numbers::I8(
                        array.as_primitive::<Int8Type>().values(),
                        bounds(lo, hi, i8::MIN, i8::MAX),
                    ),
                    DataType::Int16 => Numbers::I16(
                        array.as_primitive::<Int16Type>().values(),
                        bounds(lo, hi, i16::MIN, i16::MAX),
                    ),
                    DataType::Int32 => Numbers::I32(
                        array.as_primitive::<Int32Type>().values(),
                        bounds(lo, hi, i32::MIN, i32::MAX),
                    ),
                    DataType::Int64 => Numbers::I64(
                        array.as_primitive::<Int64Type>().values(),
                        bounds(lo, hi, i64::MIN, i64::MAX),
                    ),
                    other => {
                        return Err(Error::Engine(format!(
                            "{name} is {other}, not whole numbers"
                        )));
                    }
                };
                Lookup::Range(Range {
                    values,
                    valid: valid_words(array.nulls()),
                })
            }
        }))
    }

    /// Which of the rows `64 w ..` pass: bit `j` for row `64 w + j`.
    fn word(&self, w: usize) -> u64 {
        match self {
            Lookup::Codes8(c) => c.word(w, |k| k as u8 as usize),
            Lookup::Codes16(c) => c.word(w, |k| k as u16 as usize),
            Lookup::Range(r) => match r.values {
                Numbers::I8(v, b) => r.word(v, b, w),
                Numbers::I16(v, b) => r.word(v, b, w),
                Numbers::I32(v, b) => r.word(v, b, w),
                Numbers::I64(v, b) => r.word(v, b, w),
            },
        }
    }
}

/// The rows `64 w ..` of a column.
fn chunk<T>(values: &[T], w: usize) -> &[T] {
    let start = w * 64;
    &values[start..values.len().min(start + 64)]
}

/// 64 flags (each 0 or 1) as the bits of a word, the first flag lowest:
/// eight at a time, by a multiplication that moves each byte's bit into
/// the top byte.
fn pack(flags: &[u8; 64]) -> u64 {
    flags
        .chunks_exact(8)
        .enumerate()
        .fold(0, |bits, (i, eight)| {
            let x = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
            bits | ((x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i))
        })
}

/// Which of the rows `64 w ..` of a column `pass` (0 or 1 per value), as
/// the bits of a word. A whole word is a loop of known length, which the
/// compiler turns into vector instructions.
#[inline(always)]
fn word_of<T: Copy>(values: &[T], w: usize, pass: impl Fn(T) -> u8) -> u64 {
    let mut flags = [0u8; 64];
    let values = chunk(values, w);
    match <&[T; 64]>::try_from(values) {
        Ok(all) => {
            for (f, &v) in flags.iter_mut().zip(all) {
                *f = pass(v);
            }
        }
        Err(_) => {
            for (f, &v) in flags.iter_mut().zip(values) {
                *f = pass(v);
            }
        }
    }
    pack(&flags)
}

impl<K: Copy, const N: usize> Codes<'_, K, N> {
    fn word(&self, w: usize, index: impl Fn(K) -> usize) -> u64 {
        let bits = word_of(self.keys, w, |k| self.table[index(k)]);
        match &self.valid {
            None => bits,
            Some((valid, true)) => (bits & valid[w]) | !valid[w],
            Some((valid, false)) => bits & valid[w],
        }
    }
}

impl Range<'_> {
    fn word<T: Copy + PartialOrd>(&self, values: &[T], bounds: Option<(T, T)>, w: usize) -> u64 {
        let Some((lo, hi)) = bounds else { return 0 };
        let bits = word_of(values, w, |v| u8::from(v >= lo) & u8::from(v <= hi));
        match &self.valid {
            None => bits,
            Some(valid) => bits & valid[w],
        }
    }
}

/// Whether each of a dictionary's values passes `expr` (compiled against
/// the column as plain text), and last whether NULL does: unknown does not.
fn passing_codes(column: &str, values: &ArrayRef, expr: &Expr) -> Result<Vec<bool>> {
    let with_null = arrow::compute::concat(&[
        values.as_ref(),
        arrow::array::new_null_array(values.data_type(), 1).as_ref(),
    ])?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        column,
        values.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![with_null])?;
    let value = expr
        .evaluate(&batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(Error::from_df)?;
    let holds = value
        .as_boolean_opt()
        .ok_or_else(|| Error::Engine("a filter did not evaluate to booleans".into()))?;
    Ok((0..holds.len())
        .map(|i| holds.is_valid(i) && holds.value(i))
        .collect())
}

/// The conditions of `filter` that must all hold, compiled.
fn conjuncts(filter: &Filter, schema: &Schema, out: &mut Vec<Condition>) -> Result<()> {
    match filter {
        Filter::True => {}
        Filter::And(children) => {
            for c in children {
                conjuncts(c, schema, out)?;
            }
        }
        Filter::Range { column, min, max }
            if schema.field_with_name(column).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
                )
            }) =>
        {
            out.push(Condition::Range {
                column: column.clone(),
                lo: min.unwrap_or(i64::MIN),
                hi: max.unwrap_or(i64::MAX),
            });
        }
        other => out.push(condition(other, schema)?),
    }
    Ok(())
}

/// One condition: on a single dictionary-encoded column, worked out on the
/// dictionary; otherwise over the rows.
fn condition(filter: &Filter, schema: &Schema) -> Result<Condition> {
    let mut columns = filter.columns();
    columns.sort_unstable();
    columns.dedup();
    if let [column] = columns.as_slice()
        && let Ok(field) = schema.field_with_name(column)
        && let DataType::Dictionary(key, value) = field.data_type()
        && matches!(**key, DataType::Int8 | DataType::Int16)
    {
        let plain = Schema::new(vec![Field::new(*column, (**value).clone(), true)]);
        return Ok(Condition::Codes {
            column: (*column).to_owned(),
            expr: compile(filter, &plain)?,
        });
    }
    Ok(Condition::Rows(compile(filter, schema)?))
}

fn compile(filter: &Filter, schema: &Schema) -> Result<Expr> {
    Ok(match filter {
        Filter::True => literal(ScalarValue::Boolean(Some(true))),
        Filter::Not(inner) => Arc::new(NotExpr::new(compile(inner, schema)?)),
        Filter::And(children) => fold(children, Operator::And, schema)?,
        Filter::Or(children) => fold(children, Operator::Or, schema)?,
        Filter::IsNull { column } => Arc::new(IsNullExpr::new(column_expr(column, schema)?)),
        Filter::In { column, values } => in_values(column, values, schema)?,
        Filter::Range { column, min, max } => {
            let bounds: Vec<Value> = min.iter().chain(max).map(|v| Value::Int(*v)).collect();
            let (col, lits) = operands(column, &bounds, schema)?;
            let mut lits = lits.into_iter();
            let mut parts: Vec<Expr> = Vec::new();
            if min.is_some() {
                let lo = lits.next().expect("one literal per bound");
                parts.push(Arc::new(BinaryExpr::new(col.clone(), Operator::GtEq, lo)));
            }
            if max.is_some() {
                let hi = lits.next().expect("one literal per bound");
                parts.push(Arc::new(BinaryExpr::new(col.clone(), Operator::LtEq, hi)));
            }
            match parts.len() {
                0 => Arc::new(IsNotNullExpr::new(col)),
                _ => parts
                    .into_iter()
                    .reduce(|a, b| Arc::new(BinaryExpr::new(a, Operator::And, b)))
                    .expect("at least one bound"),
            }
        }
        Filter::Prefix { column, prefix } => {
            let col = column_expr(column, schema)?;
            let pattern = literal(ScalarValue::Utf8(Some(format!("{prefix}%"))));
            Arc::new(LikeExpr::new(false, false, col, pattern))
        }
    })
}

fn fold(children: &[Filter], op: Operator, schema: &Schema) -> Result<Expr> {
    let mut exprs = children.iter().map(|c| compile(c, schema));
    let first = match exprs.next() {
        Some(e) => e?,
        // An empty AND keeps everything, an empty OR nothing.
        None => return Ok(literal(ScalarValue::Boolean(Some(op == Operator::And)))),
    };
    exprs.try_fold(first, |acc, next| {
        Ok(Arc::new(BinaryExpr::new(acc, op, next?)) as Expr)
    })
}

/// `column IN (values)`, or `column = value` for one value.
fn in_values(column: &str, values: &[Value], schema: &Schema) -> Result<Expr> {
    let (col, lits) = operands(column, values, schema)?;
    Ok(match <[_; 1]>::try_from(lits) {
        Ok([one]) => Arc::new(BinaryExpr::new(col, Operator::Eq, one)),
        Err(lits) => {
            Arc::new(InListExpr::try_new(col, lits, false, schema).map_err(Error::from_df)?)
        }
    })
}

/// The column and the values as literals of one type: text as text (a
/// dictionary-encoded column compares its dictionary), whole numbers as the
/// column's integers, or both widened to 64 bits when a value does not fit.
fn operands(column: &str, values: &[Value], schema: &Schema) -> Result<(Expr, Vec<Expr>)> {
    let col = column_expr(column, schema)?;
    let data_type = schema
        .field_with_name(column)
        .map_err(|e| Error::Engine(e.to_string()))?
        .data_type();
    let value_type = match data_type {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    };
    // Whole numbers compare in the column's own type where every value fits
    // it, and else both are widened to 64 bits.
    let fits = |ty: &DataType| {
        values.iter().all(|v| match (v, ty) {
            (Value::Int(i), DataType::Int8) => i8::try_from(*i).is_ok(),
            (Value::Int(i), DataType::Int16) => i16::try_from(*i).is_ok(),
            (Value::Int(i), DataType::Int32) => i32::try_from(*i).is_ok(),
            _ => true,
        })
    };
    let integer = matches!(
        value_type,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    );
    let (col, int_type) = if integer && !fits(value_type) {
        (
            Arc::new(CastExpr::new(col, DataType::Int64, None)) as Expr,
            DataType::Int64,
        )
    } else {
        (col, value_type.clone())
    };
    let lits = values
        .iter()
        .map(|v| {
            let scalar = match (v, value_type) {
                (Value::Text(t), DataType::Utf8) => ScalarValue::Utf8(Some(t.clone())),
                (Value::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
                (Value::Int(i), _) if integer => match int_type {
                    DataType::Int8 => ScalarValue::Int8(Some(*i as i8)),
                    DataType::Int16 => ScalarValue::Int16(Some(*i as i16)),
                    DataType::Int32 => ScalarValue::Int32(Some(*i as i32)),
                    _ => ScalarValue::Int64(Some(*i)),
                },
                (v, t) => {
                    return Err(Error::Engine(format!(
                        "the value {v} does not fit {column} ({t})"
                    )));
                }
            };
            Ok(literal(scalar))
        })
        .collect::<Result<_>>()?;
    Ok((col, lits))
}

fn column_expr(name: &str, schema: &Schema) -> Result<Expr> {
    Ok(Arc::new(
        Column::new_with_schema(name, schema).map_err(Error::from_df)?,
    ))
}

fn literal(value: ScalarValue) -> Expr {
    Arc::new(Literal::new(value))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{ArrayRef, BooleanArray, Int16Array, Int32Array, StringDictionaryBuilder};
    use arrow::datatypes::{Field, Int8Type, Int16Type};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A row of the test table: each column's value, or none for NULL.
    type Row = BTreeMap<&'static str, Option<Value>>;

    const TEXTS: &[&str] = &["Female", "Male", "Unknown"];
    const CODES: &[&str] = &["S72.0", "S72.1", "M16.1", "C90.0"];

    fn rows(n: usize, rng: &mut impl Rng) -> Vec<Row> {
        (0..n)
            .map(|_| {
                let mut row = Row::new();
                let pick = |rng: &mut dyn rand::RngCore, of: &[&str]| {
                    Value::Text(of[rng.random_range(0..of.len())].to_owned())
                };
                row.insert("sex", Some(pick(rng, TEXTS)));
                row.insert("diagnosis", rng.random_bool(0.8).then(|| pick(rng, CODES)));
                row.insert("age", Some(Value::Int(rng.random_range(0..100))));
                row.insert(
                    "passage",
                    rng.random_bool(0.3)
                        .then(|| Value::Int(rng.random_range(0..6))),
                );
                row.insert("consent", Some(Value::Bool(rng.random_bool(0.5))));
                row
            })
            .collect()
    }

    /// The rows as the surface stores such columns: sex as small codes
    /// (8-bit keys), diagnoses as codes with 16-bit keys, age as 32-bit and
    /// passage as 16-bit numbers.
    fn batch(rows: &[Row]) -> RecordBatch {
        let text = |r: &Row, name: &str| match &r[name] {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let int = |r: &Row, name: &str| match &r[name] {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let mut sex = StringDictionaryBuilder::<Int8Type>::new();
        let mut diagnosis = StringDictionaryBuilder::<Int16Type>::new();
        for r in rows {
            sex.append_option(text(r, "sex"));
            diagnosis.append_option(text(r, "diagnosis"));
        }
        let age = Int32Array::from_iter(rows.iter().map(|r| int(r, "age").map(|i| i as i32)));
        let passage =
            Int16Array::from_iter(rows.iter().map(|r| int(r, "passage").map(|i| i as i16)));
        let flags = BooleanArray::from_iter(rows.iter().map(|r| match &r["consent"] {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }));
        let d = |k: DataType| DataType::Dictionary(Box::new(k), Box::new(DataType::Utf8));
        let schema = Schema::new(vec![
            Field::new("sex", d(DataType::Int8), false),
            Field::new("diagnosis", d(DataType::Int16), true),
            Field::new("age", DataType::Int32, false),
            Field::new("passage", DataType::Int16, true),
            Field::new("consent", DataType::Boolean, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(sex.finish()) as ArrayRef,
                Arc::new(diagnosis.finish()),
                Arc::new(age),
                Arc::new(passage),
                Arc::new(flags),
            ],
        )
        .unwrap()
    }

    /// What `WHERE f` does to `row` (the reference in the schemas crate).
    fn reference(f: &Filter, row: &Row) -> Option<bool> {
        f.evaluate(&|c| row.get(c).cloned().flatten())
    }

    fn random_filter(rng: &mut impl Rng, depth: u32) -> Filter {
        let leaf = |rng: &mut dyn rand::RngCore| -> Filter {
            let int = |rng: &mut dyn rand::RngCore| {
                // Now and then a bound beyond 32 bits.
                if rng.random_bool(0.05) {
                    Some(i64::from(i32::MAX) + 10)
                } else {
                    Some(rng.random_range(-5..110))
                }
            };
            match rng.random_range(0..6) {
                0 => Filter::In {
                    column: "sex".into(),
                    values: (0..rng.random_range(1..3))
                        .map(|_| Value::Text(TEXTS[rng.random_range(0..3)].into()))
                        .collect(),
                },
                1 => Filter::In {
                    column: "diagnosis".into(),
                    values: (0..rng.random_range(1..4))
                        .map(|_| Value::Text(CODES[rng.random_range(0..4)].into()))
                        .collect(),
                },
                2 => Filter::In {
                    column: "consent".into(),
                    values: vec![Value::Bool(rng.random_bool(0.5))],
                },
                3 => Filter::Range {
                    column: ["age", "passage"][rng.random_range(0..2)].into(),
                    min: if rng.random_bool(0.7) { int(rng) } else { None },
                    max: if rng.random_bool(0.7) { int(rng) } else { None },
                },
                4 => Filter::Prefix {
                    column: "diagnosis".into(),
                    prefix: ["S", "S72", "S72.1", "M", "X"][rng.random_range(0..5)].into(),
                },
                _ => Filter::IsNull {
                    column: ["diagnosis", "passage"][rng.random_range(0..2)].into(),
                },
            }
        };
        if depth == 0 || rng.random_bool(0.3) {
            return leaf(rng);
        }
        match rng.random_range(0..3) {
            0 => Filter::Not(Box::new(random_filter(rng, depth - 1))),
            k => {
                let children = (0..rng.random_range(1..4))
                    .map(|_| random_filter(rng, depth - 1))
                    .collect();
                if k == 1 {
                    Filter::And(children)
                } else {
                    Filter::Or(children)
                }
            }
        }
    }

    #[test]
    fn the_expression_keeps_exactly_the_rows_sql_keeps() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows = rows(2_000, &mut rng);
        let batch = batch(&rows);
        for _ in 0..500 {
            let f = random_filter(&mut rng, 4);
            let kept = CompiledFilter::new(&f, &batch.schema())
                .unwrap()
                .evaluation()
                .keeps(&batch)
                .unwrap();
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(
                    kept.value(i),
                    reference(&f, row) == Some(true),
                    "row {i} {row:?} under {f:?}"
                );
            }
        }
    }

    #[test]
    fn batches_with_their_own_dictionaries_are_each_read_with_theirs() {
        // Two batches whose dictionaries number the codes differently, read
        // in one pass: what was worked out for one must not be used for
        // the other.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (a, b) = (rows(300, &mut rng), rows(300, &mut rng));
        let mut b_reordered = b.clone();
        b_reordered.reverse();
        let batches = [batch(&a), batch(&b_reordered)];
        let f = Filter::And(vec![
            Filter::In {
                column: "sex".into(),
                values: vec![Value::Text("Male".into())],
            },
            Filter::Prefix {
                column: "diagnosis".into(),
                prefix: "S72".into(),
            },
        ]);
        let compiled = CompiledFilter::new(&f, &batches[0].schema()).unwrap();
        let mut evaluation = compiled.evaluation();
        for (batch, rows) in batches.iter().zip([&a, &b_reordered]) {
            let kept = evaluation.keeps(batch).unwrap();
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(kept.value(i), reference(&f, row) == Some(true), "row {i}");
            }
        }
    }

    #[test]
    fn flags_pack_into_bits_in_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..1_000 {
            let flags: [u8; 64] = std::array::from_fn(|_| u8::from(rng.random_bool(0.5)));
            let expected = (0..64).fold(0u64, |b, j| b | (u64::from(flags[j]) << j));
            assert_eq!(pack(&flags), expected, "{flags:?}");
        }
        assert_eq!(pack(&[1; 64]), u64::MAX);
        assert_eq!(pack(&[0; 64]), 0);
    }

    #[test]
    fn a_value_that_does_not_fit_the_column_is_an_engine_error() {
        let batch = batch(&rows(3, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1)));
        let f = Filter::In {
            column: "age".into(),
            values: vec![Value::Text("old".into())],
        };
        assert!(matches!(
            CompiledFilter::new(&f, &batch.schema()),
            Err(Error::Engine(_))
        ));
    }
}
