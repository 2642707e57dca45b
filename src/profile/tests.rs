use std::path::Path;

use pretty_assertions::assert_eq;

use super::*;

/// Each column's name, type and missing count.
pub(super) fn shape(p: &Profile) -> Vec<(&str, ColumnType, usize)> {
    p.columns
        .iter()
        .map(|c| (c.name.as_str(), c.kind, c.missing))
        .collect()
}

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
fn column_names_are_shown_as_pandas_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}DATE TIME, WINDSPEED, DIR\n01/01/2015 00:00,2.72,288\n";
    let p = profile(&write(dir.path(), "baro.csv", text.as_bytes())).unwrap();
    let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["DATE TIME", " WINDSPEED", " DIR"]);
    let shown = render(&p);
    assert!(
        shown.contains(r#"columns: DATE TIME (date as text, parse with pd.to_datetime), " WINDSPEED" (float), " DIR" (integer)"#),
        "{shown}"
    );
    assert!(
        shown.contains("df.columns = df.columns.str.strip()"),
        "{shown}"
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
