//! What a cell's text says about its column: missing or not, and which type; how the types
//! of a column's cells combine into the column's type.

use super::{Column, ColumnType};

/// Columns from parallel lists of names, types and missing counts.
pub(super) fn columns(
    headers: Vec<String>,
    kinds: Vec<ColumnType>,
    missing: Vec<usize>,
) -> Vec<Column> {
    headers
        .into_iter()
        .zip(kinds)
        .zip(missing)
        .map(|((name, kind), missing)| Column {
            name,
            kind,
            missing,
        })
        .collect()
}

/// True when the cell holds one of the usual spellings of a missing value.
pub(super) fn is_missing(cell: &str) -> bool {
    matches!(
        cell.trim(),
        "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None" | "-"
    )
}

/// The type a single (not missing) cell's text looks like.
pub(super) fn cell_type(cell: &str) -> ColumnType {
    let cell = cell.trim();
    if cell.parse::<i64>().is_ok() {
        ColumnType::Integer
    } else if cell.parse::<f64>().is_ok()
        || cell.replace(',', "").parse::<f64>().is_ok() && cell.contains('.')
    {
        ColumnType::Float
    } else if matches!(cell.to_lowercase().as_str(), "true" | "false") {
        ColumnType::Boolean
    } else if looks_like_date(cell) {
        ColumnType::Date
    } else {
        ColumnType::String
    }
}

fn looks_like_date(cell: &str) -> bool {
    let b = cell.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    // 2023-01-31, 2023/01/31, optionally followed by a time.
    (b.len() >= 10 && digits(0..4) && matches!(b[4], b'-' | b'/') && digits(5..7) && b[7] == b[4] && digits(8..10))
        // 31/01/2023 or 01-31-2023
        || (b.len() >= 10 && digits(0..2) && matches!(b[2], b'-' | b'/' | b'.') && digits(3..5) && b[5] == b[2] && digits(6..10))
}

/// The type of a column holding cells of types `a` and `b`: numbers widen to float, any
/// other mix is text.
pub(super) fn merge(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    // Every variant is named (no wildcard), so a new column type must be placed here.
    match (a, b) {
        (Empty, x) | (x, Empty) => x,
        (Integer, Integer) => Integer,
        (Integer | Float, Integer | Float) => Float,
        (Boolean, Boolean) => Boolean,
        (Date, Date) => Date,
        (Integer | Float | Boolean | Date | String, Integer | Float | Boolean | Date | String) => {
            String
        }
    }
}
