//! Failure hints: what a failed attempt most likely needs, read from its status and error.
//! Each hint is a row of [`HINTS`]: what it recognises, what it says, and the case that
//! motivated it, so that a run can switch any of them off ([`Rules`]) and a measurement can
//! say which earn their place.

pub mod digest;

use std::sync::LazyLock;

use regex::Regex;

use crate::rules::Rules;
use crate::sandbox::Status;
use digest::failing_line;

/// What a hint reads of a failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// How the script ended.
    pub status: &'a Status,
    /// Its error output, with the script's own lines under its frames.
    pub stderr: &'a str,
    /// Declared files it did not write.
    pub missing: &'a [String],
    /// Variables the step produces that its script did not leave.
    pub undefined: &'a [String],
    /// Variables earlier steps left, defined when the script started.
    pub defined: &'a [String],
}

/// One failure hint.
pub struct Hint {
    /// Stable id, used to switch the hint off.
    pub id: &'static str,
    /// The failure it recognises.
    pub recognises: &'static str,
    /// The case that motivated it.
    pub motivated_by: &'static str,
    /// Its text for a failure it recognises; `None` otherwise.
    pub text: fn(&Failure<'_>) -> Option<String>,
}

/// Every hint, the most specific first: the first that recognises a failure gives its text.
pub static HINTS: &[Hint] = &[
    Hint {
        id: "missing_package",
        recognises: "ModuleNotFoundError: No module named X",
        motivated_by: "scripts that import a package the image lacks and then try to install it",
        text: |f| {
            let module = raised(f)?
                .lines()
                .rev()
                .find_map(|l| l.split("No module named ").nth(1))?
                .trim_matches(|c| c == '\'' || c == '"' || c == ' ');
            Some(format!(
                "The image has no package {module}: do not install anything; use only pandas, numpy, scipy, matplotlib, seaborn, scikit-learn, statsmodels and the standard library."
            ))
        },
    },
    Hint {
        id: "file_not_found",
        recognises: "FileNotFoundError",
        motivated_by: "inputs read from the current folder instead of /data",
        text: |f| {
            raised(f)?.contains("FileNotFoundError").then(|| {
                let mut text = String::from("A file was not found: read inputs only from /data/<name> with the names listed, and write outputs in the current folder.");
                if !f.defined.is_empty() {
                    text.push_str(&format!(" These variables from earlier steps are already defined: use them instead of reading a file: {}.", f.defined.join(", ")));
                }
                text
            })
        },
    },
    Hint {
        id: "dt_on_text",
        recognises: "Can only use .dt accessor with datetimelike values",
        motivated_by: "a CSV date column used with .dt before it was parsed",
        text: |f| {
            let stderr = raised(f)?;
            stderr.contains("Can only use .dt accessor").then(|| match dt_column(stderr) {
                Some(col) => format!("Column '{col}' holds text, not dates: read it as dates with pd.read_csv(path, parse_dates=['{col}']), or convert it with df['{col}'] = pd.to_datetime(df['{col}']) before using .dt."),
                None => "The column holds text, not dates: parse it first with df[col] = pd.to_datetime(df[col]), then use .dt.".into(),
            })
        },
    },
    Hint {
        id: "single_value",
        recognises: "a number or other single value has no attribute X",
        motivated_by: "`top['revenue'].values[0]` on a value that was already a numpy float",
        text: |f| {
            let stderr = raised(f)?;
            let (kind, attribute) = single_value_error(stderr)?;
            let expression = Regex::new(&format!(
                r#"([A-Za-z_][\w.]*(?:\[[^\]]*\])*)\.{}\b"#,
                regex::escape(&attribute)
            ))
            .expect("valid regex");
            let subject = failing_line(stderr)
                .and_then(|l| expression.captures(l))
                .map_or("That value".to_string(), |c| format!("`{}`", &c[1]));
            Some(format!(
                "{subject} is already a single value ({kind}), not a column or a table: use it as it is, without .{attribute} (no .values, .iloc or [0] either)."
            ))
        },
    },
    Hint {
        id: "undefined_name",
        recognises: "NameError: name X is not defined",
        motivated_by: "a step using a variable an earlier step computed",
        text: |f| {
            let name = raised(f)?.lines().rev().find_map(|l| {
                let rest = l.trim().strip_prefix("NameError: name '")?;
                Some(rest.split('\'').next()?.to_string())
            })?;
            Some(format!(
                "{name} is not defined in this script: each script runs on its own, so import, define or compute it here; only the variables the request lists from earlier steps are defined when it starts."
            ))
        },
    },
    Hint {
        id: "timed_out",
        recognises: "the script ran past its time limit",
        motivated_by: "loops over rows on large tables",
        text: |f| {
            matches!(f.status, Status::TimedOut).then(|| "The script ran past its time limit: make it faster (vectorize with pandas, no loops over rows, sample large data).".into())
        },
    },
    Hint {
        id: "out_of_memory",
        recognises: "the script was killed for memory",
        motivated_by: "whole large files read at once",
        text: |f| {
            matches!(f.status, Status::OutOfMemory).then(|| "The script ran out of memory: process the data in chunks (pd.read_csv(..., chunksize=...)), read only the needed columns (usecols=...), use smaller dtypes.".into())
        },
    },
    Hint {
        id: "output_limit",
        recognises: "the script printed past the output ceiling",
        motivated_by: "whole tables printed",
        text: |f| {
            matches!(f.status, Status::OutputLimit).then(|| "The script printed far too much: print summaries and the requested values only, never whole tables or columns.".into())
        },
    },
    Hint {
        id: "artifact_rejected",
        recognises: "an output file the sandbox refused",
        motivated_by: "links and odd names in the output folder",
        text: |f| match f.status {
            Status::ArtifactRejected(why) => Some(format!(
                "An output file was refused ({why}): write plain files with simple names in the current folder, no links."
            )),
            Status::Exited(_)
            | Status::TimedOut
            | Status::OutOfMemory
            | Status::OutputLimit
            | Status::PolicyRejected(_)
            | Status::StateTooLarge { .. } => None,
        },
    },
    Hint {
        id: "state_too_large",
        recognises: "the variables a step left were over the state cap",
        motivated_by: "the sandbox's per-step state cap",
        text: |f| {
            matches!(f.status, Status::StateTooLarge { .. }).then(|| "The variables this script leaves are too large to keep for the next steps: write the large table to a file (df.to_parquet('name.parquet') or to_csv) that later steps read, and `del` the large variables before the script ends.".into())
        },
    },
    Hint {
        id: "undefined_variable",
        recognises: "exit 0 without a variable the step produces",
        motivated_by: "values computed inside a function or under another name, so later steps could not use them",
        text: |f| {
            (f.status.success() && !f.undefined.is_empty()).then(|| format!("The script did not leave {} as top-level variables: assign them at the top level of the script (not inside a function), with exactly these names; later steps use them.", f.undefined.join(", ")))
        },
    },
    Hint {
        id: "missing_output",
        recognises: "exit 0 without a declared file",
        motivated_by: "results printed instead of written",
        text: |f| {
            (f.status.success() && !f.missing.is_empty()).then(|| format!("The script did not write {}: save them in the current folder with exactly these names.", f.missing.join(", ")))
        },
    },
];

/// The hint for a failed attempt: the first row of [`HINTS`] that recognises it and is not
/// switched off, else what its status says.
pub fn failure_hint(failure: &Failure<'_>, rules: &Rules) -> String {
    if let Some((_, text)) = matching(failure, rules) {
        return text;
    }
    match failure.status {
        // The sandbox's own refusal is not the script's to fix: it is said as it is.
        Status::PolicyRejected(why) => format!("The sandbox refused to start: {why}."),
        Status::Exited(_)
        | Status::TimedOut
        | Status::OutOfMemory
        | Status::OutputLimit
        | Status::ArtifactRejected(_)
        | Status::StateTooLarge { .. } => {
            "Fix the error shown; keep the rest of the script.".into()
        }
    }
}

/// The first hint switched on that recognises `failure`, with its text.
pub fn matching(failure: &Failure<'_>, rules: &Rules) -> Option<(&'static Hint, String)> {
    HINTS
        .iter()
        .filter(|hint| rules.on(hint.id))
        .find_map(|hint| (hint.text)(failure).map(|text| (hint, text)))
}

/// The error output of a script that raised (exited non-zero); exception hints read only it.
fn raised<'a>(failure: &Failure<'a>) -> Option<&'a str> {
    matches!(failure.status, Status::Exited(_)).then_some(failure.stderr)
}

/// The column a failing `.dt` accessor was used on, read from the line that raised:
/// `df['Date'].dt.year` gives `Date`.
fn dt_column(stderr: &str) -> Option<String> {
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?:\[\s*['"]([^'"]+)['"]\s*\]|\.([A-Za-z_]\w*))\s*\.dt\b"#).expect("valid")
    });
    let found = PATTERN.captures(failing_line(stderr)?)?;
    let column = found.get(1).or(found.get(2))?.as_str();
    (column != "index").then(|| column.to_string())
}

/// The `(type, attribute)` of the last `AttributeError` on a plain value.
fn attribute_error(stderr: &str) -> Option<(String, String)> {
    static ERROR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"'(numpy\.(?:float|int|uint|bool|str_|datetime64|timedelta64)\w*|float|int|str|bool|Timestamp)' object has no attribute '(\w+)'",
        )
        .expect("valid")
    });
    let found = stderr.lines().rev().find_map(|l| ERROR.captures(l))?;
    Some((found[1].to_string(), found[2].to_string()))
}

/// [`attribute_error`] on a value that is not text: a number, a flag, a timestamp.
fn single_value_error(stderr: &str) -> Option<(String, String)> {
    attribute_error(stderr).filter(|(kind, _)| kind != "str")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Status;
    use pretty_assertions::assert_eq;

    fn hint_for(status: &Status, stderr: &str, missing: &[String]) -> String {
        failure_hint(
            &Failure {
                status,
                stderr,
                missing,
                undefined: &[],
                defined: &[],
            },
            &Rules::default(),
        )
    }

    #[test]
    fn hints_name_the_missing_package() {
        let hint = hint_for(
            &crate::sandbox::Status::Exited(1),
            "ModuleNotFoundError: No module named 'plotly'\n",
            &[],
        );
        assert!(
            hint.starts_with("The image has no package plotly"),
            "{hint}"
        );
    }

    #[test]
    fn a_dt_on_text_names_the_column_to_parse() {
        let exited = crate::sandbox::Status::Exited(1);
        let error = "\nAttributeError: Can only use .dt accessor with datetimelike values\n";
        for line in [
            "df['Date'].dt.year == 2023",
            "sales.date.dt.month",
            "d[ \"day\" ].dt.day",
        ] {
            let stderr = format!("  File \"<stdin>\", line 3, in <module>\n    {line}{error}");
            let hint = hint_for(&exited, &stderr, &[]);
            let col = if line.starts_with("df") {
                "Date"
            } else if line.starts_with("sales") {
                "date"
            } else {
                "day"
            };
            assert!(
                hint.starts_with(&format!("Column '{col}' holds text"))
                    && hint.contains(&format!("parse_dates=['{col}']")),
                "{line}: {hint}"
            );
        }
        // Only the line that raised names the column; an index is not a column.
        for stderr in [
            error.to_string(),
            format!(
                "    df['Date'].dt.year\n  File \"<stdin>\", line 9, in <module>\n    x = f(){error}"
            ),
            format!("  File \"<stdin>\", line 3, in <module>\n    df.index.dt.year{error}"),
        ] {
            let unnamed = hint_for(&exited, &stderr, &[]);
            assert!(
                unnamed.starts_with("The column holds text"),
                "{stderr}: {unnamed}"
            );
        }
    }

    #[test]
    fn an_attribute_on_a_single_value_names_the_value() {
        let exited = crate::sandbox::Status::Exited(1);
        let stderr = "  File \"<stdin>\", line 16, in <module>\n    revenue = top['revenue'].values[0]\nAttributeError: 'numpy.float64' object has no attribute 'values'\n";
        let hint = hint_for(&exited, stderr, &[]);
        assert_eq!(
            hint,
            "`top['revenue']` is already a single value (numpy.float64), not a column or a table: use it as it is, without .values (no .values, .iloc or [0] either)."
        );
        let unnamed = hint_for(
            &exited,
            "AttributeError: 'float' object has no attribute 'iloc'\n",
            &[],
        );
        assert!(
            unnamed.starts_with("That value is already a single value (float)"),
            "{unnamed}"
        );
        // An array is not a single value, and neither is text.
        let array = hint_for(
            &exited,
            "AttributeError: 'numpy.ndarray' object has no attribute 'iloc'\n",
            &[],
        );
        assert!(!array.contains("single value"), "{array}");
        let text = hint_for(
            &exited,
            "AttributeError: 'str' object has no attribute 'year'\n",
            &[],
        );
        assert!(!text.contains("single value"), "{text}");
    }

    #[test]
    fn an_undefined_name_says_each_script_runs_alone() {
        let hint = hint_for(
            &crate::sandbox::Status::Exited(1),
            "    filtered = filter_2023()\nNameError: name 'filter_2023' is not defined\n",
            &[],
        );
        assert!(
            hint.starts_with(
                "filter_2023 is not defined in this script: each script runs on its own"
            ),
            "{hint}"
        );
    }
}
