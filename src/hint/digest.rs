//! What a model sees of a failed script's error output: every line capped, the traceback's
//! last frame and exception kept, and the script's own line under each of its frames.

use crate::text::truncate_middle;

/// Longest line kept from a script's error output: one line that repeats a data column must
/// not push the exception out of view.
const LINE_CAP: usize = 300;

/// A compact view of stderr for a model: every line capped, and for a Python traceback the
/// last frame and the exception kept whatever the length.
pub fn error_digest(stderr: &str, max: usize) -> String {
    let capped: Vec<String> = crate::text::strip_escapes(stderr)
        .lines()
        .map(|line| {
            if line.len() > LINE_CAP {
                let mut end = LINE_CAP;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{} [... line cut, {} bytes]", &line[..end], line.len())
            } else {
                line.to_string()
            }
        })
        .collect();
    let last_frame = capped
        .iter()
        .rposition(|l| l.trim_start().starts_with("File \""));
    let key: Vec<String> = match last_frame {
        Some(i) => capped[i..].iter().take(6).cloned().collect(),
        None => capped.iter().rev().take(3).rev().cloned().collect(),
    };
    let key_text = key.join("\n");
    let all = capped.join("\n");
    if all.len() <= max {
        return all;
    }
    let room = max.saturating_sub(key_text.len() + 40);
    format!(
        "{}\n[...]\n{key_text}",
        truncate_middle(&all[..all.len().min(room.max(1) * 2)], room)
    )
}

/// Stderr with the script's own line under each of its traceback frames. Python reads the
/// script from stdin, so its tracebacks name `<stdin>` and a line number but cannot show the
/// line; the model needs the line to see what raised.
pub fn with_source_lines(stderr: &str, script: &str) -> String {
    let source: Vec<&str> = script.lines().collect();
    let lines: Vec<&str> = stderr.lines().collect();
    let mut out = String::with_capacity(stderr.len());
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        let number = line
            .trim_start()
            .strip_prefix("File \"<stdin>\", line ")
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse::<usize>().ok());
        let Some(code) = number.and_then(|n| source.get(n.wrapping_sub(1))) else {
            continue;
        };
        let code = code.trim();
        // Python shows the line itself when it can; never twice.
        let shown = lines.get(i + 1).is_some_and(|next| next.trim() == code);
        if !code.is_empty() && !shown {
            let indent = line.len() - line.trim_start().len();
            out.push_str(&format!("{}{code}\n", " ".repeat(indent + 2)));
        }
    }
    if !stderr.ends_with('\n') {
        out.pop();
    }
    out
}

/// The script's line that raised: the source shown under the last `<stdin>` frame (see
/// [`with_source_lines`]).
pub(crate) fn failing_line(stderr: &str) -> Option<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    let frame = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("File \"<stdin>\""))?;
    let next = lines.get(frame + 1)?.trim();
    let is_source = !next.is_empty()
        && !next.starts_with("File \"")
        && !next.contains("Error:")
        && !next.starts_with('^');
    is_source.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_huge_error_line_does_not_hide_the_exception() {
        let column = "1.0, ".repeat(20_000);
        let stderr = format!(
            "Traceback (most recent call last):\n  File \"<stdin>\", line 3, in <module>\nValueError: could not convert: [{column}]\n"
        );
        let digest = error_digest(&stderr, 2000);
        assert!(digest.len() < 2100, "{}", digest.len());
        assert!(digest.contains("File \"<stdin>\", line 3"), "{digest}");
        assert!(digest.contains("ValueError: could not convert"), "{digest}");
    }

    #[test]
    fn stdin_frames_show_the_script_line_once() {
        let script =
            "import pandas as pd\ndf = pd.read_csv('/data/s.csv')\n  y = df['Date'].dt.year\n";
        let stderr = "Traceback (most recent call last):\n  File \"<stdin>\", line 3, in <module>\n  File \"/usr/lib/python3/dist-packages/pandas/core/generic.py\", line 6299, in __getattr__\n    return object.__getattribute__(self, name)\nAttributeError: Can only use .dt accessor with datetimelike values\n";
        let shown = with_source_lines(stderr, script);
        assert_eq!(
            shown,
            "Traceback (most recent call last):\n  File \"<stdin>\", line 3, in <module>\n    y = df['Date'].dt.year\n  File \"/usr/lib/python3/dist-packages/pandas/core/generic.py\", line 6299, in __getattr__\n    return object.__getattribute__(self, name)\nAttributeError: Can only use .dt accessor with datetimelike values\n"
        );
        // Already shown, out of range, or not a number: unchanged.
        assert_eq!(with_source_lines(&shown, script), shown);
        for odd in [
            "  File \"<stdin>\", line 99, in <module>\nNameError: x",
            "  File \"<stdin>\", line x\nSyntaxError",
        ] {
            assert_eq!(with_source_lines(odd, script), odd);
        }
    }
}
