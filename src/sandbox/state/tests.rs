use super::*;

fn frame(variables: &str) -> String {
    format!("{{\"format\": 1, \"bytes\": 10, \"variables\": [{variables}], \"skipped\": []}}")
}

#[test]
fn a_description_reads_back() {
    let text = frame(
        r#"{"name": "monthly", "type": "pandas.DataFrame", "set_by": "load", "bytes": 900,
            "shape": [24, 3], "columns": [["region", "object"], ["revenue", "float64"]],
            "sample": "  region  revenue\n0 north 1.0"}"#,
    );
    let description = parse(text.as_bytes()).unwrap();
    assert_eq!(description.variables[0].name, "monthly");
    assert_eq!(
        description.variables[0].columns,
        vec![
            ("region".to_string(), "object".to_string()),
            ("revenue".to_string(), "float64".to_string())
        ]
    );
}

#[test]
fn hostile_descriptions_are_rejected() {
    let huge = frame(&format!(
        r#"{{"name": "x", "type": "str", "value": "{}"}}"#,
        "a".repeat(300_000)
    ));
    assert!(parse(huge.as_bytes()).unwrap_err().contains("bytes"));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(parse(deep.as_bytes()).unwrap_err().contains("nested"));
    let binary = b"{\"variables\": [{\"name\": \"\xff\xfe\"}]}";
    assert!(parse(binary).unwrap_err().contains("UTF-8"));
    let odd_name = frame(r#"{"name": "__import__('os')", "type": "str"}"#);
    assert!(
        parse(odd_name.as_bytes())
            .unwrap_err()
            .contains("identifier")
    );
    let many = frame(
        &(0..300)
            .map(|i| format!(r#"{{"name": "v{i}", "type": "int"}}"#))
            .collect::<Vec<_>>()
            .join(","),
    );
    assert!(parse(many.as_bytes()).unwrap_err().contains("more than"));
    assert!(parse(b"not json").unwrap_err().contains("not valid"));
}

#[test]
fn escapes_and_control_characters_are_removed_from_texts() {
    let text =
        frame(r#"{"name": "x", "type": "str", "value": "\u001b[31mred\u001b[0m\u0007 ok\u0000"}"#);
    let description = parse(text.as_bytes()).unwrap();
    assert_eq!(description.variables[0].value.as_deref(), Some("red ok"));
}

#[test]
fn imports_are_kept_only_as_dotted_names() {
    let text = r#"{"format": 1, "variables": [], "skipped": [], "imports": [
        {"name": "pd", "of": "pandas"}, {"name": "shapiro", "of": "scipy.stats._morestats:shapiro"},
        {"name": "odd name", "of": "os"}, {"name": "x", "of": "os; import sys"},
        {"name": "y", "of": "os:"}, {"name": "z", "of": "\u001b[31mos"}]}"#;
    let description = parse(text.as_bytes()).unwrap();
    let kept: Vec<(&str, bool)> = description
        .imports
        .iter()
        .map(|i| (i.name.as_str(), i.is_module()))
        .collect();
    assert_eq!(kept, vec![("pd", true), ("shapiro", false)]);
}

#[test]
fn quotes_inside_strings_do_not_count_as_nesting() {
    assert_eq!(depth(r#"{"a": "[[[[{{{{\"[[["}"#), 1);
    assert_eq!(depth(r#"{"a": [[1], {"b": []}]}"#), 4);
}
