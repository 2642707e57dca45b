//! What the inputs look like, found without a model: file type and size, and for tables the
//! columns, inferred types, row count, missing values and a few sample rows. Large files are
//! profiled from a bounded sample and streamed for their row count, never loaded whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod columnar;

/// Bytes read for type inference and samples.
const SAMPLE_BYTES: usize = 256 * 1024;
/// Rows looked at for types and missing values.
const SAMPLE_ROWS: usize = 2000;
/// Files above this size get an estimated row count.
const COUNT_LIMIT: u64 = 512 * 1024 * 1024;
/// JSON documents above this size are not parsed.
const JSON_LIMIT: u64 = 32 * 1024 * 1024;

/// The kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// Comma-separated (or semicolon, pipe) table.
    Csv,
    /// Tab-separated table.
    Tsv,
    /// One JSON document.
    Json,
    /// One JSON value per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
    /// Excel workbook.
    Excel,
    /// Other text.
    Text,
    /// Binary data.
    Binary,
    /// Zero bytes.
    Empty,
}

/// A column's inferred type, from the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Whole numbers.
    Integer,
    /// Decimal numbers.
    Float,
    /// true/false.
    Boolean,
    /// Dates or date-times (ISO-like).
    Date,
    /// Anything else.
    String,
    /// Only missing values in the sample.
    Empty,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Header name.
    pub name: String,
    /// Inferred type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Missing values in the sampled rows.
    pub missing: usize,
}

/// Everything known about one input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// File name as the script sees it (`/data/<name>`).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Detected type.
    pub file_type: FileType,
    /// Columns, for tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// Data rows (header excluded), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// True when `rows` is estimated from the sample.
    #[serde(default)]
    pub rows_estimated: bool,
    /// Rows the column types and missing counts were computed from.
    #[serde(default)]
    pub sampled_rows: usize,
    /// The first few rows, as text cells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Vec<String>>,
    /// The delimiter of a delimited table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// What could not be profiled, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Profile one file.
pub fn profile(path: &Path) -> Result<Profile> {
    let bad = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|err| bad(err.to_string()))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("the file name is not UTF-8".into()))?
        .to_string();
    let mut head = Vec::with_capacity(SAMPLE_BYTES.min(meta.len() as usize));
    File::open(path)
        .and_then(|f| f.take(SAMPLE_BYTES as u64).read_to_end(&mut head))
        .map_err(|err| bad(err.to_string()))?;
    let mut profile = Profile {
        name: name.clone(),
        bytes: meta.len(),
        file_type: detect(&name, &head),
        columns: vec![],
        rows: None,
        rows_estimated: false,
        sampled_rows: 0,
        sample: vec![],
        delimiter: None,
        notes: vec![],
    };
    match profile.file_type {
        FileType::Csv | FileType::Tsv => {
            table(path, &head, &mut profile).map_err(|err| bad(err.to_string()))?
        }
        FileType::Json => json_document(path, &mut profile),
        FileType::Jsonl => {
            json_lines(path, &head, &mut profile).map_err(|err| bad(err.to_string()))?
        }
        // A damaged workbook or Parquet file is named in the profile, not fatal: the user
        // sees why it has no columns, and the goal may not need it.
        FileType::Parquet => {
            if let Err(reason) = columnar::parquet(path, &mut profile) {
                profile.notes.push(reason);
            }
        }
        FileType::Excel => {
            if let Err(reason) = columnar::excel(path, &mut profile) {
                profile.notes.push(reason);
            }
        }
        FileType::Text => {
            profile.rows = Some(
                count_lines(path, meta.len(), &head, &mut profile.rows_estimated)
                    .map_err(|err| bad(err.to_string()))?,
            );
        }
        FileType::Binary | FileType::Empty => {}
    }
    Ok(profile)
}

fn detect(name: &str, head: &[u8]) -> FileType {
    let lower = name.to_lowercase();
    if head.is_empty() {
        return FileType::Empty;
    }
    if head.starts_with(b"PAR1") {
        return FileType::Parquet;
    }
    if head.starts_with(b"PK\x03\x04") && (lower.ends_with(".xlsx") || lower.ends_with(".xlsm")) {
        return FileType::Excel;
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) && lower.ends_with(".xls") {
        return FileType::Excel;
    }
    let text_like = !head.contains(&0)
        && std::str::from_utf8(&head[..head.len().min(SAMPLE_BYTES - 4)]).is_ok()
        || String::from_utf8_lossy(head)
            .chars()
            .filter(|c| *c == '\u{fffd}')
            .count()
            * 100
            < head.len();
    if !text_like || head.contains(&0) {
        return FileType::Binary;
    }
    if lower.ends_with(".tsv") || lower.ends_with(".tab") {
        return FileType::Tsv;
    }
    if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        return FileType::Jsonl;
    }
    if lower.ends_with(".json") {
        return FileType::Json;
    }
    if lower.ends_with(".csv") || lower.ends_with(".txt") && sniff_delimiter(head).is_some() {
        return FileType::Csv;
    }
    let trimmed = String::from_utf8_lossy(head);
    let trimmed = trimmed.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return FileType::Json;
    }
    if sniff_delimiter(head).is_some() {
        FileType::Csv
    } else {
        FileType::Text
    }
}

/// The delimiter that splits the first lines into the same number (> 1) of fields.
fn sniff_delimiter(head: &[u8]) -> Option<u8> {
    let text = String::from_utf8_lossy(head);
    let lines: Vec<&str> = text
        .lines()
        .take(20)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    [b',', b'\t', b';', b'|']
        .into_iter()
        .filter_map(|d| {
            let counts: Vec<usize> = lines.iter().map(|l| l.matches(d as char).count()).collect();
            let first = counts[0];
            let consistent = counts.iter().filter(|c| **c == first).count();
            (first > 0 && consistent * 10 >= counts.len() * 8).then_some((first, d))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, d)| d)
}

/// Columns from parallel lists of names, types and missing counts.
fn columns(headers: Vec<String>, kinds: Vec<ColumnType>, missing: Vec<usize>) -> Vec<Column> {
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

fn is_missing(cell: &str) -> bool {
    matches!(
        cell.trim(),
        "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None" | "-"
    )
}

fn cell_type(cell: &str) -> ColumnType {
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

fn merge(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    match (a, b) {
        (Empty, x) | (x, Empty) => x,
        (x, y) if x == y => x,
        (Integer, Float) | (Float, Integer) => Float,
        _ => String,
    }
}

fn table(path: &Path, head: &[u8], profile: &mut Profile) -> std::io::Result<()> {
    let delimiter = if profile.file_type == FileType::Tsv {
        b'\t'
    } else {
        sniff_delimiter(head).unwrap_or(b',')
    };
    profile.delimiter = Some(delimiter as char);
    // Parse only the sampled bytes, cut at the last full line.
    let cut = if head.len() == SAMPLE_BYTES {
        head.iter()
            .rposition(|b| *b == b'\n')
            .map_or(head.len(), |p| p + 1)
    } else {
        head.len()
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(&head[..cut]);
    let headers: Vec<String> = reader
        .headers()
        .map(|h| h.iter().map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let mut kinds = vec![ColumnType::Empty; headers.len()];
    let mut missing = vec![0usize; headers.len()];
    let mut ragged = 0usize;
    for record in reader.records().take(SAMPLE_ROWS) {
        let Ok(record) = record else {
            profile
                .notes
                .push("some sampled rows could not be parsed (quoting?)".into());
            break;
        };
        profile.sampled_rows += 1;
        if record.len() != headers.len() {
            ragged += 1;
        }
        for (i, cell) in record.iter().enumerate().take(headers.len()) {
            if is_missing(cell) {
                missing[i] += 1;
            } else {
                kinds[i] = merge(kinds[i], cell_type(cell));
            }
        }
        for count in missing.iter_mut().skip(record.len()) {
            *count += 1;
        }
        if profile.sample.len() < 3 {
            profile.sample.push(
                record
                    .iter()
                    .map(|c| crate::text::truncate_middle(c, 60))
                    .collect(),
            );
        }
    }
    if ragged > 0 {
        profile.notes.push(format!(
            "{ragged} of {} sampled rows have a different number of fields than the header",
            profile.sampled_rows
        ));
    }
    profile.columns = columns(headers, kinds, missing);
    let lines = count_lines(path, profile.bytes, head, &mut profile.rows_estimated)?;
    profile.rows = Some(lines.saturating_sub(1));
    if profile.rows_estimated {
        profile.notes.push(format!(
            "{} bytes: row count estimated from the first {} KiB",
            profile.bytes,
            SAMPLE_BYTES / 1024
        ));
    }
    Ok(())
}

/// Lines in the file (a last line without newline counts), streamed; estimated past the limit.
fn count_lines(path: &Path, bytes: u64, head: &[u8], estimated: &mut bool) -> std::io::Result<u64> {
    if bytes > COUNT_LIMIT {
        *estimated = true;
        let sample_lines = head.iter().filter(|b| **b == b'\n').count().max(1) as u64;
        return Ok(bytes * sample_lines / head.len().max(1) as u64);
    }
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        lines += buffer.iter().filter(|b| **b == b'\n').count() as u64;
        last = *buffer.last().unwrap_or(&b'\n');
        let n = buffer.len();
        reader.consume(n);
    }
    Ok(lines + u64::from(last != b'\n'))
}

fn json_columns(rows: &[serde_json::Value]) -> Vec<Column> {
    let mut columns: Vec<Column> = Vec::new();
    for row in rows {
        let Some(object) = row.as_object() else {
            continue;
        };
        for (key, value) in object {
            let kind = match value {
                serde_json::Value::Null => ColumnType::Empty,
                serde_json::Value::Bool(_) => ColumnType::Boolean,
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ColumnType::Integer,
                serde_json::Value::Number(_) => ColumnType::Float,
                serde_json::Value::String(s) => cell_type(s),
                _ => ColumnType::String,
            };
            match columns.iter_mut().find(|c| &c.name == key) {
                Some(column) => column.kind = merge(column.kind, kind),
                None => columns.push(Column {
                    name: key.clone(),
                    kind,
                    missing: 0,
                }),
            }
        }
    }
    for column in &mut columns {
        column.missing = rows
            .iter()
            .filter(|r| r.get(&column.name).is_none_or(serde_json::Value::is_null))
            .count();
    }
    columns
}

fn json_document(path: &Path, profile: &mut Profile) {
    if profile.bytes > JSON_LIMIT {
        profile.notes.push(format!(
            "JSON of {} bytes: not parsed here; read it in chunks",
            profile.bytes
        ));
        return;
    }
    let value: serde_json::Value = match std::fs::read(path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(value)) => value,
        _ => {
            profile.notes.push("not valid JSON".into());
            return;
        }
    };
    match &value {
        serde_json::Value::Array(rows) => {
            profile.rows = Some(rows.len() as u64);
            profile.sampled_rows = rows.len().min(SAMPLE_ROWS);
            profile.columns = json_columns(&rows[..profile.sampled_rows]);
            profile.sample = rows
                .iter()
                .take(3)
                .map(|r| vec![crate::text::truncate_middle(&r.to_string(), 200)])
                .collect();
        }
        serde_json::Value::Object(object) => {
            profile.notes.push(format!(
                "a JSON object with keys: {}",
                object
                    .keys()
                    .take(30)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        _ => profile.notes.push("a single JSON scalar".into()),
    }
}

fn json_lines(path: &Path, head: &[u8], profile: &mut Profile) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .take(SAMPLE_ROWS)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    profile.sampled_rows = rows.len();
    profile.columns = json_columns(&rows);
    profile.sample = rows
        .iter()
        .take(3)
        .map(|r| vec![crate::text::truncate_middle(&r.to_string(), 200)])
        .collect();
    profile.rows = Some(count_lines(
        path,
        profile.bytes,
        head,
        &mut profile.rows_estimated,
    )?);
    Ok(())
}

/// The profile as compact text for a prompt or a person.
pub fn render(profile: &Profile) -> String {
    let kind = format!("{:?}", profile.file_type).to_lowercase();
    let rows = match (profile.rows, profile.rows_estimated) {
        (Some(n), false) => format!(", {n} rows"),
        (Some(n), true) => format!(", about {n} rows"),
        (None, _) => String::new(),
    };
    let mut out = format!(
        "/data/{} ({kind}, {} bytes{rows})\n",
        profile.name, profile.bytes
    );
    if !profile.columns.is_empty() {
        let columns: Vec<String> = profile
            .columns
            .iter()
            .map(|c| {
                let kind = column_kind(profile.file_type, c.kind);
                if c.missing > 0 {
                    format!(
                        "{} ({kind}, {} missing of {} sampled)",
                        c.name, c.missing, profile.sampled_rows
                    )
                } else {
                    format!("{} ({kind})", c.name)
                }
            })
            .collect();
        out.push_str(&format!("  columns: {}\n", columns.join(", ")));
    }
    for row in &profile.sample {
        out.push_str(&format!("  sample: {}\n", row.join(" | ")));
    }
    for note in &profile.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// A column's type as a script must treat it: dates in text files are text until parsed.
fn column_kind(file: FileType, kind: ColumnType) -> String {
    let text_file = matches!(
        file,
        FileType::Csv | FileType::Tsv | FileType::Json | FileType::Jsonl
    );
    if kind == ColumnType::Date && text_file {
        "date as text, parse with pd.to_datetime".into()
    } else {
        format!("{kind:?}").to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column's name, type and missing count.
    pub(super) fn shape(p: &Profile) -> Vec<(&str, ColumnType, usize)> {
        p.columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.missing))
            .collect()
    }
    use pretty_assertions::assert_eq;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn profiles_a_csv_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "sales.csv", b"date,region,units,price,ok\n2023-01-01,north,3,1.5,true\n2023-01-02,,4,NA,false\n2023-01-03,south,5,2,true\n");
        let p = profile(&path).unwrap();
        assert_eq!(
            (p.file_type, p.rows, p.delimiter),
            (FileType::Csv, Some(3), Some(','))
        );
        assert_eq!(
            shape(&p),
            vec![
                ("date", ColumnType::Date, 0),
                ("region", ColumnType::String, 1),
                ("units", ColumnType::Integer, 0),
                ("price", ColumnType::Float, 1),
                ("ok", ColumnType::Boolean, 0),
            ]
        );
        assert_eq!(p.sample.len(), 3);
        assert_eq!(
            render(&p).lines().take(2).collect::<Vec<_>>(),
            vec![
                "/data/sales.csv (csv, 104 bytes, 3 rows)",
                "  columns: date (date as text, parse with pd.to_datetime), region (string, 1 missing of 3 sampled), \
                 units (integer), price (float, 1 missing of 3 sampled), ok (boolean)"
            ]
        );
        let mut typed = p.clone();
        typed.file_type = FileType::Parquet;
        assert!(
            render(&typed).contains("date (date),"),
            "{}",
            render(&typed)
        );
    }

    #[test]
    fn sniffs_semicolons_and_tabs() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(&write(dir.path(), "x.csv", b"a;b\n1;2\n3;4\n")).unwrap();
        assert_eq!((p.delimiter, p.columns.len()), (Some(';'), 2));
        let p = profile(&write(dir.path(), "x.tsv", b"a\tb\n1\t2\n")).unwrap();
        assert_eq!((p.file_type, p.delimiter), (FileType::Tsv, Some('\t')));
    }

    #[test]
    fn profiles_json_records_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(&write(
            dir.path(),
            "r.json",
            br#"[{"a": 1, "b": "x"}, {"a": 2.5, "b": null}]"#,
        ))
        .unwrap();
        assert_eq!(p.rows, Some(2));
        assert_eq!(p.columns[0].kind, ColumnType::Float);
        assert_eq!(p.columns[1].missing, 1);
        let p = profile(&write(dir.path(), "r.jsonl", b"{\"a\": 1}\n{\"a\": 2}\n")).unwrap();
        assert_eq!((p.file_type, p.rows), (FileType::Jsonl, Some(2)));
    }

    #[test]
    fn empty_binary_and_missing_files_are_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            profile(&write(dir.path(), "e.csv", b"")).unwrap().file_type,
            FileType::Empty
        );
        assert_eq!(
            profile(&write(dir.path(), "b.bin", &[0, 1, 2, 255, 0]))
                .unwrap()
                .file_type,
            FileType::Binary
        );
        let parquet = profile(&write(dir.path(), "t.parquet", b"PAR1\x00\x00")).unwrap();
        assert_eq!(parquet.file_type, FileType::Parquet);
        assert!(!parquet.notes.is_empty());
        let err = profile(&dir.path().join("none.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.csv"), "{err}");
    }

    #[test]
    fn a_large_table_is_sampled_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("id,value\n");
        for i in 0..100_000 {
            text.push_str(&format!("{i},{}\n", i * 2));
        }
        let p = profile(&write(dir.path(), "big.csv", text.as_bytes())).unwrap();
        assert_eq!(p.rows, Some(100_000));
        assert_eq!(p.sampled_rows, SAMPLE_ROWS);
        assert_eq!(p.columns[1].kind, ColumnType::Integer);
    }
}
