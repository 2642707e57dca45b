//! JSON inputs: an array of records or one record a line (JSONL), profiled as a table whose
//! columns are the records' keys; any other document is described by its top-level shape.

use std::path::Path;

use super::cells::{cell_type, merge};
use super::{Column, ColumnType, JSON_LIMIT, Profile, SAMPLE_ROWS, count_lines};

/// Columns from the keys of the records (objects) among `rows`; other values are skipped.
fn columns(rows: &[serde_json::Value]) -> Vec<Column> {
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

/// Fill `profile` from one JSON document: an array is a table of records.
pub(super) fn document(path: &Path, profile: &mut Profile) {
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
            profile.columns = columns(&rows[..profile.sampled_rows]);
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

/// Fill `profile` from JSON lines whose first bytes are `head`.
pub(super) fn lines(path: &Path, head: &[u8], profile: &mut Profile) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .take(SAMPLE_ROWS)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    profile.sampled_rows = rows.len();
    profile.columns = columns(&rows);
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
