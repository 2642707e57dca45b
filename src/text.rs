//! Text between planbox, models and people: pulling JSON or code out of a reply that may
//! wrap it in prose or fences (a script's missing conventional imports added), truncating
//! long text to its head and tail, and stripping terminal escapes from anything a script
//! printed.

/// Remove ANSI/VT escape sequences (CSI, OSC, single-character escapes) and control
/// characters other than newline and tab; carriage returns become newlines.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ESC \
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            // C1 CSI and OSC introducers.
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn strips_colour_cursor_and_title_sequences() {
        assert_eq!(strip_escapes("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(strip_escapes("a\u{1b}[2J\u{1b}[Hb"), "ab");
        assert_eq!(strip_escapes("\u{1b}]0;pwned\u{7}title"), "title");
        assert_eq!(strip_escapes("\u{1b}]8;;http://x\u{1b}\\link"), "link");
    }

    #[test]
    fn keeps_text_newlines_and_tabs_and_drops_other_controls() {
        assert_eq!(strip_escapes("a\tb\nc\u{7}\u{8}d"), "a\tb\ncd");
        assert_eq!(strip_escapes("progress\r50%\r\n"), "progress\n50%\n");
        assert_eq!(strip_escapes("\u{9b}1mbold"), "bold");
    }
}

/// The JSON value in a model reply: the whole reply, else a fenced ```json block, else the
/// first balanced `{...}` or `[...]` that parses. `None` when there is none.
pub fn extract_json(reply: &str) -> Option<serde_json::Value> {
    let trimmed = reply.trim();
    if let Ok(value) = serde_json::from_str(trimmed) {
        return Some(value);
    }
    for block in fenced_blocks(reply) {
        if let Ok(value) = serde_json::from_str(block.trim()) {
            return Some(value);
        }
    }
    let bytes = trimmed.as_bytes();
    for (start, &open) in bytes.iter().enumerate() {
        if open != b'{' && open != b'[' {
            continue;
        }
        if let Some(end) = balanced_end(&trimmed[start..])
            && let Ok(value) = serde_json::from_str(&trimmed[start..start + end])
        {
            return Some(value);
        }
    }
    None
}

/// The contents of every ``` fenced block, in order (the info string dropped).
pub fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(newline) = after.find('\n') else {
            break;
        };
        let body = &after[newline + 1..];
        match body.find("```") {
            Some(close) => {
                blocks.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => {
                // An unclosed fence (a reply cut at max tokens): take what is there.
                blocks.push(body);
                break;
            }
        }
    }
    blocks
}

/// The Python in a model reply: the first fenced block (any language tag), else the whole
/// reply when it looks like code.
pub fn extract_code(reply: &str) -> Option<String> {
    let blocks = fenced_blocks(reply);
    let code = blocks
        .iter()
        .find(|b| !b.trim().is_empty())
        .map(std::string::ToString::to_string)
        .unwrap_or_else(|| reply.to_string());
    let code = code.trim_matches('\n').to_string();
    let looks_like_code = code.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("import ")
            || l.starts_with("from ")
            || l.starts_with("print(")
            || l.contains(" = ")
    });
    (looks_like_code && !code.trim().is_empty()).then_some(code)
}

/// The aliases data scripts use by convention, each as its import, a pattern for a use of the
/// alias as a module (`plt.bar`, not `df.plt` nor `nplt`), and one for the script binding it.
static CONVENTIONAL_IMPORTS: std::sync::LazyLock<Vec<(&str, regex::Regex, regex::Regex)>> =
    std::sync::LazyLock::new(|| {
        [
            ("pd", "import pandas as pd"),
            ("np", "import numpy as np"),
            ("plt", "import matplotlib.pyplot as plt"),
            ("sns", "import seaborn as sns"),
        ]
        .into_iter()
        .map(|(alias, import)| {
            let used = format!(r"(?m)(?:^|[^\w.]){alias}\.[A-Za-z_]");
            let bound = format!(
                r"(?m)\bas\s+{alias}\b|\bimport\s+{alias}\b|^\s*{alias}\s*(?:=|,)|\bfor\s+{alias}\b|\bglobal\s+{alias}\b"
            );
            (
                import,
                regex::Regex::new(&used).expect("valid regex"),
                regex::Regex::new(&bound).expect("valid regex"),
            )
        })
        .collect()
    });

/// `code` with the conventional import of each alias (`pd`, `np`, `plt`, `sns`) it uses as a
/// module but never binds, added as its first lines (after its `from __future__` imports,
/// which must come first): drawing with a `plt` it never imported is a small model's
/// commonest slip, and each NameError costs a repair round. The script run, stored and
/// exported holds the lines.
pub fn with_conventional_imports(code: &str) -> String {
    let missing: Vec<&str> = CONVENTIONAL_IMPORTS
        .iter()
        .filter(|(_, used, bound)| used.is_match(code) && !bound.is_match(code))
        .map(|(import, _, _)| *import)
        .collect();
    if missing.is_empty() {
        return code.to_string();
    }
    let mut lines: Vec<&str> = code.lines().collect();
    // After the last `from __future__` import, and after its closing parenthesis when it
    // spans lines.
    let mut at = 0;
    let mut open = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("from __future__") {
            open = line.contains('(') && !line.contains(')');
            at = i + 1;
        } else if open {
            open = !line.contains(')');
            at = i + 1;
        }
    }
    lines.splice(at..at, missing);
    let mut with = lines.join("\n");
    if code.ends_with('\n') {
        with.push('\n');
    }
    with
}

/// Length of the balanced JSON object or array at the start of `text`, strings respected.
fn balanced_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Keep at most `max` bytes of `text`: its head and tail with a marker between, cut on
/// character boundaries.
pub fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let half = max / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[... {} bytes omitted ...]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

#[cfg(test)]
mod extraction_tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn a_conventional_alias_used_but_never_imported_is_imported_first() {
        let script = "import pandas as pd\ndf = pd.read_csv('/data/x.csv')\nplt.bar(df.a, df.b)\nnp.mean(df.a)\n";
        assert_eq!(
            with_conventional_imports(script),
            format!("import numpy as np\nimport matplotlib.pyplot as plt\n{script}")
        );
        // Bound by the script (an import, an assignment, a from-import), or not used as a
        // module: left as written.
        for kept in [
            "import matplotlib.pyplot as plt\nplt.bar([1], [2])",
            "from matplotlib import pyplot as plt\nplt.show()",
            "np = None\nprint(np)",
            "print(df.np.mean())",
            "nplt.bar()",
        ] {
            assert_eq!(with_conventional_imports(kept), kept);
        }
        assert_eq!(
            with_conventional_imports("from __future__ import annotations\nsns.histplot([1])"),
            "from __future__ import annotations\nimport seaborn as sns\nsns.histplot([1])"
        );
        assert_eq!(
            with_conventional_imports(
                "from __future__ import (\n    annotations,\n)\nnp.ones(2)\n"
            ),
            "from __future__ import (\n    annotations,\n)\nimport numpy as np\nnp.ones(2)\n"
        );
    }

    #[test]
    fn extracts_bare_fenced_and_surrounded_json() {
        assert_eq!(extract_json(r#"{"a": 1}"#), Some(json!({"a": 1})));
        assert_eq!(
            extract_json("Here:\n```json\n{\"a\": [1, 2]}\n```\nDone."),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(
            extract_json("Sure! {\"a\": \"}{\"} hope that helps"),
            Some(json!({"a": "}{"}))
        );
        assert_eq!(extract_json("list: [1, 2, 3]."), Some(json!([1, 2, 3])));
    }

    #[test]
    fn truncated_or_absent_json_is_none() {
        assert_eq!(extract_json(r#"{"steps": [{"id": "a""#), None);
        assert_eq!(extract_json("no json here"), None);
        assert_eq!(extract_json(""), None);
    }

    #[test]
    fn fenced_blocks_handle_info_strings_and_unclosed_fences() {
        assert_eq!(
            fenced_blocks("```python\nprint(1)\n```\n```\nx\n```"),
            vec!["print(1)\n", "x\n"]
        );
        assert_eq!(fenced_blocks("```py\nprint(2)\n"), vec!["print(2)\n"]);
    }

    #[test]
    fn code_is_taken_from_the_first_fence_or_the_bare_reply() {
        assert_eq!(
            extract_code("Here:\n```python\nprint(1)\n```\nbye"),
            Some("print(1)".into())
        );
        assert_eq!(
            extract_code("import pandas as pd\nprint(2)"),
            Some("import pandas as pd\nprint(2)".into())
        );
        assert_eq!(extract_code("I cannot help with that."), None);
        assert_eq!(extract_code("```\n\n```"), None);
    }

    #[test]
    fn truncation_keeps_head_and_tail_on_char_boundaries() {
        assert_eq!(truncate_middle("short", 10), "short");
        let cut = truncate_middle("ééééééééééabc", 8);
        assert!(cut.starts_with("éé\n[..."), "{cut}");
        assert!(cut.ends_with("abc"), "{cut}");
    }
}
