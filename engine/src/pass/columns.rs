//! A batch's columns as the pass reads them: each dimension's values as the
//! offset they add to a cell's index, and the values an aggregate sums.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};

use crate::{Aggregate, Error, Plan, Result};

/// A cell's index along one dimension that no public key has: the row is
/// dropped.
pub(super) const OFF: u32 = u32::MAX;

/// Where each dimension's public keys sit in a cell's index: the first
/// dimension most significant, as [`Plan::cells`] lists them.
pub(super) struct Layout {
    pub(super) strides: Vec<u32>,
    pub(super) cells: usize,
}

impl Layout {
    pub(super) fn new(plan: &Plan) -> Result<Self> {
        let mut strides = vec![1u32; plan.keys.len()];
        let mut cells: u64 = 1;
        for (d, keys) in plan.keys.iter().enumerate().rev() {
            strides[d] = u32::try_from(cells)
                .map_err(|_| Error::Engine("too many cells in one answer".into()))?;
            cells *= keys.len() as u64;
        }
        if cells >= u64::from(OFF) {
            return Err(Error::Engine("too many cells in one answer".into()));
        }
        Ok(Self {
            strides,
            cells: cells as usize,
        })
    }
}

/// One batch's columns as the pass reads them.
pub(super) struct Columns<'a> {
    pub(super) dimensions: Vec<Dimension<'a>>,
    /// Per aggregate, the column it sums or counts (64-bit), if any.
    pub(super) values: Vec<Option<arrow::array::Int64Array>>,
}

/// A dimension's column, and the offset its every value adds to a cell's
/// index (`OFF` for a value without a public key).
pub(super) struct Dimension<'a> {
    /// Dictionary keys of codes, or whole numbers.
    pub(super) values: Ints<'a>,
    pub(super) nulls: Option<&'a NullBuffer>,
    /// Per dictionary entry, or per number from `lowest`.
    pub(super) offsets: Vec<u32>,
    pub(super) lowest: i64,
    pub(super) null_offset: u32,
}

/// Whole numbers as the surface stores them.
pub(super) enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
}

impl<'a> Ints<'a> {
    /// Dictionary keys or numbers of an array, if it holds either.
    pub(super) fn of(array: &'a dyn Array) -> Option<(Self, Option<&'a NullBuffer>)> {
        let keys = |d: &'a dyn Array| match d.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int8 => {
                Some(Ints::I8(d.as_dictionary::<Int8Type>().keys().values()))
            }
            DataType::Dictionary(k, _) if **k == DataType::Int16 => {
                Some(Ints::I16(d.as_dictionary::<Int16Type>().keys().values()))
            }
            DataType::Int16 => Some(Ints::I16(d.as_primitive::<Int16Type>().values())),
            DataType::Int32 => Some(Ints::I32(d.as_primitive::<Int32Type>().values())),
            _ => None,
        };
        keys(array).map(|ints| (ints, array.nulls()))
    }
}

impl<'a> Columns<'a> {
    pub(super) fn of(plan: &Plan, layout: &Layout, batch: &'a RecordBatch) -> Result<Self> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Engine(format!("the surface has no column {name}")))
        };
        let mut dimensions = Vec::with_capacity(plan.dimensions.len());
        for ((name, keys), stride) in plan.dimensions.iter().zip(&plan.keys).zip(&layout.strides) {
            let offset_of = |key: Option<&str>| {
                keys.iter()
                    .position(|k| Some(k.as_str()) == key)
                    .map_or(OFF, |i| i as u32 * stride)
            };
            // A missing value reads as the key "none", where there is one.
            let null_offset = offset_of(Some("none"));
            let array = column(name)?;
            let (values, nulls) = Ints::of(array.as_ref()).ok_or_else(|| {
                Error::Engine(format!(
                    "the dimension {name} is stored as {}, not as codes or integers",
                    array.data_type()
                ))
            })?;
            let (offsets, lowest) = match array.as_any_dictionary_opt() {
                Some(dict) => {
                    let names = dict.values().as_string::<i32>();
                    let offsets = (0..names.len())
                        .map(|i| offset_of(names.is_valid(i).then(|| names.value(i))))
                        .collect();
                    (offsets, 0)
                }
                None => {
                    let parsed: Vec<i64> = keys.iter().filter_map(|k| k.parse().ok()).collect();
                    let lowest = parsed.iter().copied().min().unwrap_or(0);
                    let highest = parsed.iter().copied().max().unwrap_or(-1);
                    let offsets = (lowest..=highest)
                        .map(|v| offset_of(Some(&v.to_string())))
                        .collect();
                    (offsets, lowest)
                }
            };
            dimensions.push(Dimension {
                values,
                nulls,
                offsets,
                lowest,
                null_offset,
            });
        }
        let values = plan
            .aggregates
            .iter()
            .map(|a| match a {
                Aggregate::Sum { column: c, .. } | Aggregate::Count { column: c } => Ok(Some(
                    cast(column(c)?, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                )),
                Aggregate::Samples | Aggregate::Donors => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(Self { dimensions, values })
    }

    /// The value aggregate `a` reads from the row: none where the column is
    /// empty (it then adds nothing, as SQL's SUM and COUNT skip NULL).
    pub(super) fn value(&self, a: usize, row: usize) -> Option<i64> {
        let column = self.values[a].as_ref()?;
        column.is_valid(row).then(|| column.value(row))
    }
}

impl Dimension<'_> {
    /// Adds each row's offset along this dimension to its cell; a value
    /// without a public key makes the cell `OFF` for good (it saturates).
    pub(super) fn add_offsets(&self, rows: &[u32], cells: &mut [u32]) {
        match self.values {
            Ints::I8(v) => self.add(v, rows, cells),
            Ints::I16(v) => self.add(v, rows, cells),
            Ints::I32(v) => self.add(v, rows, cells),
        }
    }

    pub(super) fn add<T: Copy + Into<i64>>(&self, values: &[T], rows: &[u32], cells: &mut [u32]) {
        for (&row, cell) in rows.iter().zip(cells.iter_mut()) {
            let row = row as usize;
            let offset = if self.nulls.is_some_and(|n| n.is_null(row)) {
                self.null_offset
            } else {
                usize::try_from(values[row].into() - self.lowest)
                    .ok()
                    .and_then(|i| self.offsets.get(i).copied())
                    .unwrap_or(OFF)
            };
            *cell = cell.saturating_add(offset);
        }
    }
}
