//! A profile as compact text, for a prompt or a person.

use super::{ColumnType, FileType, Profile};

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
                // A name with spaces around it is quoted, so the spaces show.
                let name = match c.name.trim() == c.name {
                    true => c.name.clone(),
                    false => format!("{:?}", c.name),
                };
                if c.missing > 0 {
                    format!(
                        "{name} ({kind}, {} missing of {} sampled)",
                        c.missing, profile.sampled_rows
                    )
                } else {
                    format!("{name} ({kind})")
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
