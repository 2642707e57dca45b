//! Parquet and Excel profiles. Parquet is read from its footer (schema, exact row count, null
//! counts from the column statistics) plus the first rows of the first row group, so a file of
//! any size costs a few reads. Excel reads the first sheet, bounded by `EXCEL_LIMIT`.

use std::fs::File;
use std::path::Path;

use std::io::BufReader;

use calamine::{Data, Reader, Sheets};
use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;

use super::cells::{cell_type, columns, is_missing, merge};
use super::{Column, ColumnType, Profile, SAMPLE_ROWS};
use crate::text::truncate_middle;

/// Workbooks above this size are not opened (a sheet is read into memory whole).
const EXCEL_LIMIT: u64 = 64 * 1024 * 1024;
/// Most columns profiled in a sheet.
const MAX_COLUMNS: usize = 512;
/// Sample rows shown.
const SAMPLE_SHOWN: usize = 3;

/// Fill `profile` from a Parquet file's footer and first rows.
pub(super) fn parquet(path: &Path, profile: &mut Profile) -> Result<(), String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let reader = SerializedFileReader::new(file)
        .map_err(|err| format!("not a readable Parquet file: {err}"))?;
    let meta = reader.metadata();
    let rows = meta.file_metadata().num_rows().max(0) as u64;
    profile.rows = Some(rows);
    let schema = meta.file_metadata().schema_descr();
    let mut exact_missing = true;
    profile.columns = schema
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let nulls: Option<u64> = meta
                .row_groups()
                .iter()
                .map(|group| {
                    group
                        .column(i)
                        .statistics()
                        .and_then(parquet::file::statistics::Statistics::null_count_opt)
                })
                .sum();
            exact_missing &= nulls.is_some();
            Column {
                name: column.path().string(),
                kind: parquet_type(column),
                missing: nulls.unwrap_or(0) as usize,
            }
        })
        .collect();
    profile.sampled_rows = rows as usize;
    if !exact_missing {
        profile
            .notes
            .push("some columns carry no null counts: their missing values are unknown".into());
    }
    if meta.num_row_groups() > 0 {
        let group = reader.get_row_group(0).map_err(|err| err.to_string())?;
        let rows = group
            .get_row_iter(None)
            .map_err(|err| format!("reading the first rows: {err}"))?;
        for row in rows.take(SAMPLE_SHOWN) {
            let row = row.map_err(|err| format!("reading the first rows: {err}"))?;
            profile.sample.push(
                row.get_column_iter()
                    .map(|(_, field)| truncate_middle(&field.to_string(), 60))
                    .collect(),
            );
        }
    }
    profile.notes.push(
        "read it with pandas.read_parquet (engine fastparquet is installed; pyarrow is not)".into(),
    );
    Ok(())
}

fn parquet_type(column: &ColumnDescriptor) -> ColumnType {
    match column.logical_type_ref() {
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json | LogicalType::Uuid) => {
            return ColumnType::String;
        }
        Some(LogicalType::Date | LogicalType::Timestamp { .. }) => return ColumnType::Date,
        Some(LogicalType::Decimal { .. }) => return ColumnType::Float,
        Some(LogicalType::Integer { .. }) => return ColumnType::Integer,
        _ => {}
    }
    match column.converted_type() {
        ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON => {
            return ColumnType::String;
        }
        ConvertedType::DATE | ConvertedType::TIMESTAMP_MILLIS | ConvertedType::TIMESTAMP_MICROS => {
            return ColumnType::Date;
        }
        ConvertedType::DECIMAL => return ColumnType::Float,
        _ => {}
    }
    match column.physical_type() {
        Physical::BOOLEAN => ColumnType::Boolean,
        Physical::INT32 | Physical::INT64 => ColumnType::Integer,
        // INT96 is the legacy timestamp encoding.
        Physical::INT96 => ColumnType::Date,
        Physical::FLOAT | Physical::DOUBLE => ColumnType::Float,
        Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY => ColumnType::String,
    }
}

/// Fill `profile` from an Excel workbook's first sheet; the other sheets are named.
pub(super) fn excel(path: &Path, profile: &mut Profile) -> Result<(), String> {
    if profile.bytes > EXCEL_LIMIT {
        profile.notes.push(format!(
            "workbook of {} bytes: not opened here; read it with pandas.read_excel",
            profile.bytes
        ));
        return Ok(());
    }
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|err| format!("not a readable Excel workbook: {err}"))?;
    let sheets = book.sheet_names();
    let Some(first) = sheets.first().cloned() else {
        profile.notes.push("the workbook has no sheets".into());
        return Ok(());
    };
    let (data_rows, sampled) =
        first_rows(&mut book, &first).map_err(|err| format!("reading sheet {first:?}: {err}"))?;
    let mut rows = sampled.into_iter();
    let headers: Vec<String> = rows
        .next()
        .map(|row| {
            row.iter()
                .map(|c| c.to_string().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut kinds = vec![ColumnType::Empty; headers.len()];
    let mut missing = vec![0usize; headers.len()];
    for row in rows {
        profile.sampled_rows += 1;
        for (i, cell) in row.iter().enumerate().take(headers.len()) {
            match excel_type(cell) {
                None => missing[i] += 1,
                Some(kind) => kinds[i] = merge(kinds[i], kind),
            }
        }
        if profile.sample.len() < SAMPLE_SHOWN {
            profile.sample.push(
                row.iter()
                    .map(|c| truncate_middle(&c.to_string(), 60))
                    .collect(),
            );
        }
    }
    profile.rows = Some(data_rows);
    profile.columns = columns(headers, kinds, missing);
    let sheet_note = if sheets.len() > 1 {
        format!(
            "sheet {first:?} profiled; other sheets: {} (pandas.read_excel(path, sheet_name=...))",
            sheets[1..]
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("one sheet, {first:?}; read it with pandas.read_excel (openpyxl is installed)")
    };
    profile.notes.push(sheet_note);
    Ok(())
}

/// The header and up to `SAMPLE_ROWS` rows of `sheet` (at most `MAX_COLUMNS` wide), and how
/// many data rows it has. An xlsx sheet is streamed cell by cell: a sheet's bounding box can be
/// huge (one stray cell at XFD1048576) and must never be allocated whole.
fn first_rows(
    book: &mut Sheets<BufReader<File>>,
    sheet: &str,
) -> Result<(u64, Vec<Vec<Data>>), String> {
    let mut rows: Vec<Vec<Data>> = Vec::new();
    let mut put = |row: usize, col: usize, value: Data| {
        if col >= MAX_COLUMNS {
            return;
        }
        if rows.len() <= row {
            rows.resize_with(row + 1, Vec::new);
        }
        if rows[row].len() <= col {
            rows[row].resize(col + 1, Data::Empty);
        }
        rows[row][col] = value;
    };
    if let Sheets::Xlsx(xlsx) = book {
        let mut cells = xlsx
            .worksheet_cells_reader(sheet)
            .map_err(|err| err.to_string())?;
        let dims = cells.dimensions();
        let (mut top, mut last) = (None, 0u32);
        while let Some(cell) = cells.next_cell().map_err(|err| err.to_string())? {
            let (row, col) = cell.get_position();
            let top = *top.get_or_insert(row);
            last = last.max(row);
            let index = (row - top) as usize;
            if index > SAMPLE_ROWS {
                break;
            }
            put(
                index,
                col.saturating_sub(dims.start.1) as usize,
                cell.get_value().clone().into(),
            );
        }
        let data_rows = top.map_or(0, |top| u64::from(dims.end.0.max(last) - top));
        return Ok((data_rows, rows));
    }
    // Other formats are parsed whole by the reader anyway (and bounded by EXCEL_LIMIT).
    let range = book.worksheet_range(sheet).map_err(|err| err.to_string())?;
    for (index, row) in range.rows().take(SAMPLE_ROWS + 1).enumerate() {
        for (col, cell) in row.iter().enumerate().take(MAX_COLUMNS) {
            put(index, col, cell.clone());
        }
    }
    Ok((range.height().saturating_sub(1) as u64, rows))
}

/// A cell's type, or None when it is missing.
fn excel_type(cell: &Data) -> Option<ColumnType> {
    match cell {
        Data::Empty | Data::Error(_) => None,
        Data::Int(_) => Some(ColumnType::Integer),
        // Excel stores every number as a float: whole values read as integers.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(ColumnType::Integer),
        Data::Float(_) => Some(ColumnType::Float),
        Data::Bool(_) => Some(ColumnType::Boolean),
        Data::DateTime(_) | Data::DateTimeIso(_) | Data::DurationIso(_) => Some(ColumnType::Date),
        Data::String(s) if is_missing(s) => None,
        Data::String(s) => Some(cell_type(s)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::super::tests::shape;
    use super::super::{FileType, profile};
    use super::*;

    /// Two row groups of (id, region, revenue) with missing regions and revenues.
    fn write_parquet(path: &Path) {
        let schema = Arc::new(
            parse_message_type(
                "message sales { REQUIRED INT64 id; OPTIONAL BYTE_ARRAY region (UTF8); \
                 OPTIONAL DOUBLE revenue; }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let mut writer =
            SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
        for group in 0..2i64 {
            let mut rows = writer.next_row_group().unwrap();
            let ids: Vec<i64> = (0..4).map(|i| group * 4 + i).collect();
            let mut column = rows.next_column().unwrap().unwrap();
            column
                .typed::<Int64Type>()
                .write_batch(&ids, None, None)
                .unwrap();
            column.close().unwrap();
            let mut column = rows.next_column().unwrap().unwrap();
            let regions: Vec<ByteArray> = ["north", "south", "east"]
                .iter()
                .map(|r| ByteArray::from(*r))
                .collect();
            column
                .typed::<ByteArrayType>()
                .write_batch(&regions, Some(&[1, 1, 0, 1]), None)
                .unwrap();
            column.close().unwrap();
            let mut column = rows.next_column().unwrap().unwrap();
            column
                .typed::<DoubleType>()
                .write_batch(&[10.5, 20.25], Some(&[1, 0, 1, 0]), None)
                .unwrap();
            column.close().unwrap();
            rows.close().unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn parquet_columns_rows_and_nulls_come_from_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sales.parquet");
        write_parquet(&path);
        let p = profile(&path).unwrap();
        assert_eq!(p.file_type, FileType::Parquet);
        assert_eq!(p.rows, Some(8));
        assert_eq!(
            shape(&p),
            vec![
                ("id", ColumnType::Integer, 0),
                ("region", ColumnType::String, 2),
                ("revenue", ColumnType::Float, 4),
            ]
        );
        assert_eq!(p.sample.len(), 3);
        assert_eq!(p.sample[0][..2], ["0".to_string(), "\"north\"".to_string()]);
        assert!(p.notes.iter().any(|n| n.contains("read_parquet")), "{p:?}");
    }

    #[test]
    fn a_truncated_parquet_file_is_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.parquet");
        write_parquet(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let p = profile(&path).unwrap();
        assert!(p.columns.is_empty());
        assert!(
            p.notes.iter().any(|n| n.contains("not a readable Parquet")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn excel_cells_map_to_column_types() {
        assert_eq!(excel_type(&Data::Float(3.0)), Some(ColumnType::Integer));
        assert_eq!(excel_type(&Data::Float(3.5)), Some(ColumnType::Float));
        assert_eq!(
            excel_type(&Data::String("2024-01-31".into())),
            Some(ColumnType::Date)
        );
        assert_eq!(excel_type(&Data::String("NA".into())), None);
        assert_eq!(excel_type(&Data::Empty), None);
    }

    #[test]
    fn the_bundled_workbook_profiles_its_first_sheet() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profile/stores.xlsx");
        let p = profile(&path).unwrap();
        assert_eq!(p.file_type, FileType::Excel);
        assert_eq!(p.rows, Some(5));
        assert_eq!(
            shape(&p),
            vec![
                ("store", ColumnType::String, 0),
                ("opened", ColumnType::Date, 0),
                ("staff", ColumnType::Integer, 1),
                ("revenue", ColumnType::Float, 0),
            ]
        );
        assert!(
            p.notes.iter().any(|n| n.contains("\"targets\"")),
            "the second sheet is named: {:?}",
            p.notes
        );
    }

    #[test]
    fn a_parquet_file_written_by_pandas_profiles() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profile/visits.parquet");
        let p = profile(&path).unwrap();
        assert_eq!(p.rows, Some(40));
        assert_eq!(
            shape(&p),
            vec![
                ("day", ColumnType::Date, 0),
                ("store", ColumnType::String, 0),
                ("visitors", ColumnType::Float, 5),
            ]
        );
        assert_eq!(p.sample.len(), 3);
    }

    #[test]
    fn a_sparse_sheet_is_streamed_not_allocated() {
        // One stray cell at XFD1048576 makes a bounding box of 17 billion cells.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profile/sparse.xlsx");
        let p = profile(&path).unwrap();
        assert_eq!(p.rows, Some(1_048_575));
        assert_eq!(
            shape(&p),
            vec![
                ("id", ColumnType::Integer, 0),
                ("score", ColumnType::Float, 0)
            ]
        );
        assert_eq!(p.sampled_rows, 2);
    }
}
