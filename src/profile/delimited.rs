//! Delimited text tables (CSV, TSV): header, column types, missing values and sample rows
//! from the sampled bytes; the row count streamed from the whole file.

use std::path::Path;

use super::cells::{cell_type, columns, is_missing, merge};
use super::detect::sniff_delimiter;
use super::{ColumnType, FileType, Profile, SAMPLE_BYTES, SAMPLE_ROWS, count_lines};

/// Fill `profile` from a delimited table whose first bytes are `head`.
pub(super) fn table(path: &Path, head: &[u8], profile: &mut Profile) -> std::io::Result<()> {
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
    // Names as pandas reads them: spaces around a name stay (`" WINDSPEED"`), and a script
    // told the trimmed name fails on a KeyError; only a byte-order mark goes, as in pandas.
    let headers: Vec<String> = reader
        .headers()
        .map(|h| {
            h.iter()
                .enumerate()
                .map(|(i, s)| match i {
                    0 => s.trim_start_matches('\u{feff}').to_string(),
                    _ => s.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(spaced) = headers.iter().find(|h| h.trim() != h.as_str()) {
        profile.notes.push(format!(
            "column names keep the spaces around them when read ({spaced:?}): use them as \
             shown, or strip them all first (df.columns = df.columns.str.strip()) and use the \
             trimmed names"
        ));
    }
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
