//! Which kind of file an input is: magic bytes first, then the extension, then a look at the
//! text (a JSON opening, a delimiter that splits every line alike).

use super::{FileType, SAMPLE_BYTES};

/// The kind of the file called `name` whose first bytes are `head`.
pub(super) fn file_type(name: &str, head: &[u8]) -> FileType {
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
pub(super) fn sniff_delimiter(head: &[u8]) -> Option<u8> {
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
