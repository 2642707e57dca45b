//! What the inputs look like, found without a model: file type and size, and for tables the
//! columns, inferred types, row count, missing values and a few sample rows. Large files are
//! profiled from a bounded sample and streamed for their row count, never loaded whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod cells;
mod columnar;
mod delimited;
mod detect;
mod json;
mod render;
#[cfg(test)]
mod tests;

pub use render::render;

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

impl Profile {
    /// A profile of `name` that knows only its size and type; the readers fill in the rest.
    pub fn empty(name: String, bytes: u64, file_type: FileType) -> Profile {
        Profile {
            name,
            bytes,
            file_type,
            columns: vec![],
            rows: None,
            rows_estimated: false,
            sampled_rows: 0,
            sample: vec![],
            delimiter: None,
            notes: vec![],
        }
    }
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
    let file_type = detect::file_type(&name, &head);
    let mut profile = Profile::empty(name, meta.len(), file_type);
    match profile.file_type {
        FileType::Csv | FileType::Tsv => {
            delimited::table(path, &head, &mut profile).map_err(|err| bad(err.to_string()))?
        }
        FileType::Json => json::document(path, &mut profile),
        FileType::Jsonl => {
            json::lines(path, &head, &mut profile).map_err(|err| bad(err.to_string()))?
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
