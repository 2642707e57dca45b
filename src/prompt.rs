//! Pure message builders: the prompts planbox sends to a model, and the failure digest,
//! hints and answer format they carry.

use crate::text::truncate_middle;
/// The planner's system message: identical and first in every planning call, so a server
/// that caches prompt prefixes reuses it.
pub const PLANNER_SYSTEM: &str = "\
You plan data analysis work for a Python sandbox. You do not write code here: you split a goal \
into small steps, and each step is later solved by one short Python script.
Rules:
- Each step does one thing: clean data, compute one result, draw one chart, or check earlier results. Every script reads its files itself: no step only loads data.
- Scripts share nothing but files. A step that adds a column or changes the data writes the new table to a file (for example with_size.csv), and the steps that use that column read that file.
- Input files are read-only at /data/<name>. A step writes its files into its working folder; later steps read them by name.
- \"reads\" lists every file the step opens: input file names, or files written by steps it depends on.
- \"writes\" lists the files the step creates, as plain names such as clean.csv or chart.png. Each file is written by exactly one step.
- \"depends_on\" lists the ids of the steps whose files or results this step needs. Steps that do not need each other must not depend on each other, so they run in parallel.
- Use kind \"verify\" for a step that checks earlier outputs (files exist, columns, row counts, value ranges) and raises an error when something is wrong.
- The instruction says exactly what to compute, from which file and columns, and what to write or print.
- The last step prints the final answer.
- Optionally, \"fallback\" gives another way to do a step that may fail (for example a simpler method), writing the same files.
- Python packages available: pandas, numpy, scipy, matplotlib, seaborn, scikit-learn, statsmodels. There is no network.
Reply with JSON only.";

/// How the steps may depend on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A chain: each step after the previous one.
    Linear,
    /// Any acyclic graph.
    Dag,
}

/// The user message describing the goal and the inputs.
fn goal_block(goal: &str, profiles: &[crate::profile::Profile]) -> String {
    let mut text = format!("Goal: {goal}\n\nInput files:\n");
    if profiles.is_empty() {
        text.push_str("(none)\n");
    }
    for profile in profiles {
        text.push_str(&crate::profile::render(profile));
    }
    text
}

/// Messages asking for a plan of `shape` with at most `max_steps` steps.
pub fn plan_messages(
    goal: &str,
    profiles: &[crate::profile::Profile],
    shape: Shape,
    max_steps: usize,
) -> Vec<crate::llm::Message> {
    let shape = match shape {
        Shape::Linear => "The steps form a chain: each step depends on the step before it.",
        Shape::Dag => "Steps may run in parallel when they do not depend on each other.",
    };
    vec![
        crate::llm::Message::system(PLANNER_SYSTEM),
        crate::llm::Message::user(format!(
            "{}\n{shape} Use at most {max_steps} steps; use fewer when the goal is simple.\n\
             Reply with {{\"steps\": [{{\"id\", \"title\", \"instruction\", \"kind\", \"depends_on\", \"reads\", \"writes\"}}]}}.",
            goal_block(goal, profiles)
        )),
    ]
}

/// Messages asking whether the goal needs a plan at all.
pub fn triage_messages(
    goal: &str,
    profiles: &[crate::profile::Profile],
) -> Vec<crate::llm::Message> {
    vec![
        crate::llm::Message::system(PLANNER_SYSTEM),
        crate::llm::Message::user(format!(
            "{}\nDoes this goal need several steps, or can one short script do it? A single lookup, \
             count or statistic on one file needs no plan; cleaning, joining, several results or a \
             chart plus an answer need one.\nReply with {{\"plan\": true or false, \"reason\": \"...\"}}.",
            goal_block(goal, profiles)
        )),
    ]
}

/// Messages asking for sub-goals (the first level of a hierarchical plan).
pub fn subgoal_messages(
    goal: &str,
    profiles: &[crate::profile::Profile],
    max: usize,
) -> Vec<crate::llm::Message> {
    vec![
        crate::llm::Message::system(PLANNER_SYSTEM),
        crate::llm::Message::user(format!(
            "{}\nFirst split the goal into at most {max} sub-goals, in the same JSON shape as steps. \
             Set \"atomic\": true on a sub-goal that one short script can do; it stays one step. \
             A sub-goal with \"atomic\": false is split into steps later; its \"writes\" are the files \
             it must produce for the sub-goals after it.\n\
             Reply with {{\"steps\": [{{\"id\", \"title\", \"instruction\", \"kind\", \"depends_on\", \"reads\", \"writes\", \"atomic\"}}]}}.",
            goal_block(goal, profiles)
        )),
    ]
}

/// Messages asking for a critique of `plan_json`.
pub fn critique_messages(
    goal: &str,
    profiles: &[crate::profile::Profile],
    plan_json: &str,
) -> Vec<crate::llm::Message> {
    vec![
        crate::llm::Message::system(PLANNER_SYSTEM),
        crate::llm::Message::user(format!(
            "{}\nHere is a plan:\n{plan_json}\n\nReview it: missing steps, wrong order, steps too big \
             for one short script, results nobody checks, files read before they are written. \
             Reply with {{\"problems\": [\"...\"]}}; an empty list when the plan is good.",
            goal_block(goal, profiles)
        )),
    ]
}

#[cfg(test)]
mod prompt_snapshots {
    use super::*;
    use crate::profile::{Column, ColumnType, FileType, Profile};

    fn profiles() -> Vec<Profile> {
        vec![Profile {
            name: "sales.csv".into(),
            bytes: 5120,
            file_type: FileType::Csv,
            columns: vec![
                Column {
                    name: "date".into(),
                    kind: ColumnType::Date,
                    missing: 0,
                },
                Column {
                    name: "region".into(),
                    kind: ColumnType::String,
                    missing: 2,
                },
                Column {
                    name: "revenue".into(),
                    kind: ColumnType::Float,
                    missing: 0,
                },
            ],
            rows: Some(192),
            rows_estimated: false,
            sampled_rows: 192,
            sample: vec![vec!["2022-01-01".into(), "north".into(), "1250.00".into()]],
            delimiter: Some(','),
            notes: vec![],
        }]
    }

    fn text(messages: &[crate::llm::Message]) -> String {
        messages
            .iter()
            .map(|m| format!("[{:?}]\n{}\n", m.role, m.content))
            .collect()
    }

    #[test]
    fn dag_plan_prompt() {
        insta::assert_snapshot!(text(&plan_messages(
            "Which region grew fastest in 2023? Chart it.",
            &profiles(),
            Shape::Dag,
            12
        )));
    }

    #[test]
    fn linear_plan_prompt() {
        insta::assert_snapshot!(text(&plan_messages(
            "Average revenue per region.",
            &profiles(),
            Shape::Linear,
            6
        )));
    }

    #[test]
    fn triage_prompt() {
        insta::assert_snapshot!(text(&triage_messages("How many rows?", &profiles())));
    }

    #[test]
    fn subgoal_prompt() {
        insta::assert_snapshot!(text(&subgoal_messages(
            "Forecast 2024 revenue per region.",
            &profiles(),
            4
        )));
    }

    #[test]
    fn critique_prompt() {
        insta::assert_snapshot!(text(&critique_messages(
            "How many rows?",
            &profiles(),
            "{\"steps\": []}"
        )));
    }
}

/// The code writer's system message: identical and first in every generation call.
pub const CODER_SYSTEM: &str = "\
You write one short, complete Python 3 script for one step of a data analysis.
Rules:
- Input files are read-only at /data/<name>. Read only the files the step lists.
- Write every output file into the current folder, with exactly the names the step lists.
- Python packages available: pandas, numpy, scipy, matplotlib (Agg backend), seaborn, scikit-learn, statsmodels, openpyxl (Excel), fastparquet (pandas.read_parquet). No other package can be installed and there is no network.
- Print the results the step asks for with clear labels, never whole tables: print summaries, counts and the requested values.
- CSV columns load as text or numbers: parse dates with pd.to_datetime before using .dt.
- Do not ask for input. Do not catch exceptions just to hide them: let errors raise.
- For charts use matplotlib, save with plt.savefig('<name>.png') and never call plt.show().
Reply with the script in one ```python code block and nothing else.";

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
fn failing_line(stderr: &str) -> Option<&str> {
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

/// The column a failing `.dt` accessor was used on, read from the line that raised:
/// `df['Date'].dt.year` gives `Date`.
fn dt_column(stderr: &str) -> Option<String> {
    let pattern = regex::Regex::new(r#"(?:\[\s*['"]([^'"]+)['"]\s*\]|\.([A-Za-z_]\w*))\s*\.dt\b"#)
        .expect("valid");
    let found = pattern.captures(failing_line(stderr)?)?;
    let column = found.get(1).or(found.get(2))?.as_str();
    (column != "index").then(|| column.to_string())
}

/// Attributes of a date that text lacks: a date column never parsed.
const DATE_PARTS: &[&str] = &[
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "weekday",
    "dayofweek",
    "strftime",
    "date",
    "dt",
    "days",
    "quarter",
];

/// Methods of text that a missing value (a float NaN) lacks.
const TEXT_METHODS: &[&str] = &[
    "split",
    "lower",
    "upper",
    "strip",
    "replace",
    "startswith",
    "endswith",
    "str",
    "find",
    "isdigit",
    "title",
    "contains",
];

/// A hint for an `AttributeError` on a plain value: a single number used as a column
/// (`top['revenue'].values[0]`), a date still held as text, or a missing value in a text column.
fn attribute_hint(stderr: &str) -> Option<String> {
    let error = regex::Regex::new(
        r"'(numpy\.(?:float|int|uint|bool|str_|datetime64|timedelta64)\w*|float|int|str|bool|Timestamp)' object has no attribute '(\w+)'",
    )
    .expect("valid");
    let found = stderr.lines().rev().find_map(|l| error.captures(l))?;
    let (kind, attribute) = (&found[1], &found[2]);
    if kind == "str" && DATE_PARTS.contains(&attribute) {
        return Some("A date is still text (str): parse its column with pd.to_datetime(df[col]), or parse_dates=[col] in pd.read_csv, before using its date parts.".into());
    }
    if kind == "str" {
        return None;
    }
    if attribute.starts_with("to_") {
        return Some(format!(
            "A single value ({kind}) has no .{attribute}: write it as a one-row table, pd.DataFrame({{'value': [x]}}).to_csv('name.csv', index=False), or as text, open('name.txt', 'w').write(str(x))."
        ));
    }
    if kind == "float" && TEXT_METHODS.contains(&attribute) {
        return Some("A text column holds missing values (NaN, a float): drop or fill them first (df[col].dropna() or df[col].fillna('')), or use the .str accessor (df[col].str.lower()), which skips them.".into());
    }
    let expression = regex::Regex::new(&format!(
        r#"([A-Za-z_][\w.]*(?:\[[^\]]*\])*)\.{attribute}\b"#
    ))
    .expect("valid");
    let subject = failing_line(stderr)
        .and_then(|l| expression.captures(l))
        .map_or("That value".to_string(), |c| format!("`{}`", &c[1]));
    Some(format!(
        "{subject} is already a single value ({kind}), not a column or a table: use it as it is, without .{attribute} (no .values, .iloc or [0] either)."
    ))
}

/// The column name a `KeyError` reports: `KeyError: 'Size'` or `KeyError: "['Size'] not in
/// index"` give `Size`; a number is a row label, not a column.
fn missing_key(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("KeyError: "))?;
    let quoted = regex::Regex::new(r#"'([^']+)'"#).expect("valid");
    let key = quoted.captures(line)?[1].to_string();
    (key.parse::<f64>().is_err()).then_some(key)
}

/// The name a `NameError` reports, if any.
fn undefined_name(stderr: &str) -> Option<String> {
    stderr.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("NameError: name '")?;
        Some(rest.split('\'').next()?.to_string())
    })
}

/// Text for a failed attempt: what happened and a specific hint.
pub fn failure_hint(status: &crate::sandbox::Status, stderr: &str, missing: &[String]) -> String {
    use crate::sandbox::Status;
    if let Status::Exited(_) = status
        && let Some(hint) = exception_hint(stderr)
    {
        return hint;
    }
    match status {
        Status::TimedOut => "The script ran past its time limit: make it faster (vectorize with pandas, no loops over rows, sample large data).".into(),
        Status::OutOfMemory => "The script ran out of memory: process the data in chunks (pd.read_csv(..., chunksize=...)), read only the needed columns (usecols=...), use smaller dtypes.".into(),
        Status::OutputLimit => "The script printed far too much: print summaries and the requested values only, never whole tables or columns.".into(),
        Status::ArtifactRejected(why) => format!("An output file was refused ({why}): write plain files with simple names in the current folder, no links."),
        Status::PolicyRejected(why) => format!("The sandbox refused to start: {why}."),
        Status::Exited(0) if !missing.is_empty() => format!("The script did not write {}: save them in the current folder with exactly these names.", missing.join(", ")),
        Status::Exited(_) => "Fix the error shown; keep the rest of the script.".into(),
    }
}

/// A hint read from the error a script raised, the most specific first; `None` when the
/// error is not one of those known.
fn exception_hint(stderr: &str) -> Option<String> {
    let module = stderr
        .lines()
        .rev()
        .find_map(|l| l.split("No module named ").nth(1))
        .map(|m| m.trim_matches(|c| c == '\'' || c == '"' || c == ' '));
    if let Some(module) = module {
        return Some(format!(
            "The image has no package {module}: do not install anything; use only pandas, numpy, scipy, matplotlib, seaborn, scikit-learn, statsmodels and the standard library."
        ));
    }
    if stderr.contains("FileNotFoundError") {
        return Some("A file was not found: read inputs only from /data/<name> with the names listed, and write outputs in the current folder.".into());
    }
    if stderr.contains("Can only use .dt accessor") {
        return Some(match dt_column(stderr) {
            Some(col) => format!("Column '{col}' holds text, not dates: read it as dates with pd.read_csv(path, parse_dates=['{col}']), or convert it with df['{col}'] = pd.to_datetime(df['{col}']) before using .dt."),
            None => "The column holds text, not dates: parse it first with df[col] = pd.to_datetime(df[col]), then use .dt.".into(),
        });
    }
    if let Some(hint) = attribute_hint(stderr) {
        return Some(hint);
    }
    if let Some(name) = undefined_name(stderr) {
        return Some(format!(
            "{name} is not defined in this script: each script runs on its own, so import, define or compute it here; earlier steps share only the files they wrote."
        ));
    }
    if row_key_error(stderr) {
        return Some("df[x] selects a column, and there is no column x: select a row by its label with df.loc[x] (for example df.loc[df[col].idxmax()]) or by position with df.iloc[x].".into());
    }
    if let Some(key) = missing_key(stderr) {
        return Some(format!(
            "'{key}' is not a column of the data this script read (names are case-sensitive; the file descriptions list the real ones). If it is a column to derive, as the step or the goal describes, compute it in this script first: a column an earlier step added exists only in a file that step wrote."
        ));
    }
    if stderr.contains("KeyError") {
        return Some("A column or key does not exist: use exactly the column names shown in the file descriptions (they are case-sensitive).".into());
    }
    None
}

/// A `KeyError` on a number: a row index used where pandas expects a column name.
fn row_key_error(stderr: &str) -> bool {
    stderr.lines().rev().take(3).any(|line| {
        line.trim()
            .strip_prefix("KeyError: ")
            .is_some_and(|key| key.parse::<f64>().is_ok())
    })
}

/// What a step's script sees of one dependency: its files and the tail of what it printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Step id.
    pub step: String,
    /// Step title.
    pub title: String,
    /// The tail of its stdout.
    pub stdout_tail: String,
    /// Its output files this step reads, described.
    pub files: Vec<String>,
}

/// Messages asking for one step's script. Their size depends on this step and its direct
/// dependencies only, never on how many steps ran before.
pub fn step_messages(
    goal: &str,
    step: &crate::plan::Step,
    profiles: &[crate::profile::Profile],
    upstream: &[Upstream],
    ends_analysis: bool,
) -> Vec<crate::llm::Message> {
    let mut text = format!(
        "Write the script for one step of an analysis.\nThis step: {}\n{}\n",
        step.title, step.instruction
    );
    if step.kind == crate::plan::StepKind::Verify {
        text.push_str("This is a check: raise an AssertionError with a clear message when something is wrong, and print what was checked.\n");
    }
    let read_inputs: Vec<&crate::profile::Profile> = profiles
        .iter()
        .filter(|p| step.reads.contains(&p.name))
        .collect();
    if !read_inputs.is_empty() {
        text.push_str("\nInput files:\n");
        for profile in read_inputs {
            text.push_str(&crate::profile::render(profile));
        }
    }
    for up in upstream {
        text.push_str(&format!(
            "\nFrom earlier step {} ({}):\n",
            up.step, up.title
        ));
        for file in &up.files {
            text.push_str(file);
        }
        if !up.stdout_tail.trim().is_empty() {
            text.push_str(&format!("  it printed:\n{}\n", indent(&up.stdout_tail)));
        }
    }
    if step.writes.is_empty() {
        text.push_str("\nThis step writes no files.\n");
    } else {
        text.push_str(&format!(
            "\nWrite these files in the current folder: {}\n",
            step.writes.join(", ")
        ));
    }
    // Only a step that ends the analysis sees the goal: a small model that sees it solves the
    // whole goal in every step, whatever the step asks.
    if ends_analysis {
        let names = answer_names(goal);
        if !names.is_empty() {
            text.push_str(&format!(
                "\nThis step ends the analysis: print each requested value it computes on its own line as {}, \
                 with exactly these names and the real computed value between the brackets.\n",
                names
                    .iter()
                    .map(|n| format!("@{n}[...]"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        text.push_str(&format!("\nThe whole analysis answers: {goal}\n"));
    } else {
        text.push_str(
            "\nThis script is one step of a larger analysis and other steps do the rest: \
             do only what this step asks, and print only this step's results.\n",
        );
    }
    vec![
        crate::llm::Message::system(CODER_SYSTEM),
        crate::llm::Message::user(text),
    ]
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Messages asking to repair a failed script.
pub fn repair_messages(
    first: Vec<crate::llm::Message>,
    script: &str,
    problem: &str,
) -> Vec<crate::llm::Message> {
    let mut messages = first;
    messages.push(crate::llm::Message::assistant(format!(
        "```python\n{script}\n```"
    )));
    messages.push(crate::llm::Message::user(format!(
        "The script failed.\n{problem}\nReply with the complete corrected script in one ```python code block."
    )));
    messages
}

/// Messages for a fresh write after the model returned a script that already failed: the
/// step's own request with the error added, without the failed script, which a small model
/// otherwise copies again.
pub fn rewrite_messages(
    first: Vec<crate::llm::Message>,
    problem: &str,
) -> Vec<crate::llm::Message> {
    let mut messages = first;
    if let Some(last) = messages.last_mut() {
        last.content.push_str(&format!(
            "\n\n{REWRITE_NOTE}\n{problem}\nWrite a new script that cannot raise this error."
        ));
    }
    messages
}

/// How a fresh write after a repeated failed script begins its note.
pub const REWRITE_NOTE: &str = "An earlier script for this step failed, and asking to fix it gave the same script back. It failed with:";

/// An answer's `@name[` opening; the name is the first group.
const ANSWER_NAME: &str = r"@([A-Za-z_][A-Za-z0-9_]*)\[";

/// An answer token `@name[value]`: the name, then the value (one line, no `]`).
const ANSWER_TOKEN: &str = r"@([A-Za-z_][A-Za-z0-9_]*)\[([^\]\n]*)\]";

/// The `@name[value]` names a goal asks for, in order.
pub fn answer_names(goal: &str) -> Vec<String> {
    let re = regex::Regex::new(ANSWER_NAME).expect("valid regex");
    let mut names: Vec<String> = Vec::new();
    for capture in re.captures_iter(goal) {
        let name = capture[1].to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Every `@name[value]` printed, last one per name winning.
pub fn answer_values(text: &str) -> Vec<(String, String)> {
    answer_values_where(text, |_, _| true)
}

/// [`answer_values`] keeping only the `(name, value)` pairs `keep` accepts, before the last
/// of each name wins.
pub fn answer_values_where(text: &str, keep: impl Fn(&str, &str) -> bool) -> Vec<(String, String)> {
    let re = regex::Regex::new(ANSWER_TOKEN).expect("valid regex");
    let mut values: Vec<(String, String)> = Vec::new();
    for capture in re.captures_iter(text) {
        let (name, value) = (capture[1].to_string(), capture[2].trim().to_string());
        if value.is_empty() || value.contains("value") && value.len() < 8 || !keep(&name, &value) {
            continue;
        }
        values.retain(|(n, _)| n != &name);
        values.push((name, value));
    }
    values
}

/// Whether a printed value is no result at all: not a number, infinite, or empty ("nan",
/// "None", "null", "inf").
pub fn is_no_result(value: &str) -> bool {
    let value = value
        .trim()
        .trim_start_matches(['-', '+'])
        .to_ascii_lowercase();
    [
        "nan", "none", "null", "inf", "infinity", "n/a", "<na>", "nat",
    ]
    .contains(&value.as_str())
}

/// Whether `value` is only the placeholder the goal wrote for `name` (`country_name` in
/// `@country[country_name]`), compared ignoring case and surrounding space.
pub fn is_placeholder(goal: &str, name: &str, value: &str) -> bool {
    let re = regex::Regex::new(ANSWER_TOKEN).expect("valid regex");
    // A goal that writes the name more than once lists choices (`@normal[yes]` or
    // `@normal[no]`): any of them may be the answer.
    let written: Vec<String> = re
        .captures_iter(goal)
        .filter(|c| &c[1] == name)
        .map(|c| c[2].trim().to_string())
        .collect();
    matches!(written.as_slice(), [only] if !only.is_empty() && only.eq_ignore_ascii_case(value.trim()))
}

/// Whether an answer value comes from `text`: it appears there, or it is a number that one of
/// the numbers printed there rounds to (15.2 from 15.191933, 3 from 2.96 but not from 2.4).
pub fn grounded_in(value: &str, text: &str) -> bool {
    let Ok(wanted) = value.trim().parse::<f64>() else {
        return text.contains(value);
    };
    let decimals = value
        .trim()
        .split_once('.')
        .map_or(0, |(_, frac)| frac.len())
        .min(12);
    let scale = 10f64.powi(decimals as i32);
    let number = regex::Regex::new(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?").expect("valid regex");
    number.find_iter(text).any(|found| {
        let token = found.as_str();
        token.parse::<f64>().is_ok_and(|printed| {
            let printed_decimals = token.split_once('.').map_or(0, |(_, f)| f.len());
            // A zero is grounded by a printed zero or a number in scientific notation (a
            // p-value), not by any small number that happens to round to it.
            let rounds = printed_decimals >= decimals
                && ((printed * scale).round() - wanted * scale).abs() < 0.5
                && (wanted != 0.0 || printed == 0.0 || token.contains(['e', 'E']));
            token == value.trim() || rounds
        })
    })
}

/// The decimal places a piece of a goal asks for: every "to N decimal(s)" it names.
fn decimal_places(text: &str) -> std::collections::BTreeSet<usize> {
    let asked = regex::Regex::new(r"(?i)\bto\s+(\w+)\s+decimal").expect("valid regex");
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    asked
        .captures_iter(text)
        .filter_map(|c| {
            let n = c[1].to_lowercase();
            n.parse::<usize>()
                .ok()
                .or_else(|| words.iter().position(|w| *w == n))
        })
        .collect()
}

/// The answer with its `@name[number]` values rounded as the goal asks ("rounded to two
/// decimal places"), only values with more decimals than asked. A value's precision is the one
/// the text after its `@name[...]` names, up to the next `@name[...]` ("@mean[m] rounded to 2
/// decimal places, @r[r] rounded to 3"); failing that, the goal's, when it names only one.
/// Anything else is left as printed.
pub fn round_as_asked(goal: &str, answer: &str) -> String {
    // Every "to N decimal(s)" counts, "rounded" or not: "rounded to 1 decimal and the
    // correlation to 3 decimals" names two precisions.
    if !goal.to_lowercase().contains("round") {
        return answer.to_string();
    }
    let one = |places: std::collections::BTreeSet<usize>| match places
        .into_iter()
        .collect::<Vec<_>>()[..]
    {
        [places] => Some(places),
        _ => None,
    };
    let overall = one(decimal_places(goal));
    let name = regex::Regex::new(ANSWER_NAME).expect("valid regex");
    let marks: Vec<(usize, String)> = name
        .captures_iter(goal)
        .map(|c| (c.get(0).map_or(0, |m| m.start()), c[1].to_string()))
        .collect();
    let mut own: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        std::collections::BTreeMap::new();
    for (i, (start, name)) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(goal.len(), |(next, _)| *next);
        own.entry(name.clone())
            .or_default()
            .extend(decimal_places(&goal[*start..end]));
    }
    let token =
        regex::Regex::new(r"@([A-Za-z_][A-Za-z0-9_]*)\[(-?\d+\.\d+)\]").expect("valid regex");
    token
        .replace_all(answer, |c: &regex::Captures| {
            let places = match own.get(&c[1]) {
                Some(places) if !places.is_empty() => one(places.clone()),
                _ => overall,
            };
            let value = &c[2];
            let decimals = value.split_once('.').map_or(0, |(_, f)| f.len());
            match (value.parse::<f64>(), places) {
                (Ok(number), Some(places)) if decimals > places => {
                    format!("@{}[{number:.places$}]", &c[1])
                }
                _ => c[0].to_string(),
            }
        })
        .into_owned()
}

/// Messages asking for the final answer from the steps' results.
pub fn synthesis_messages(goal: &str, results: &[(String, String)]) -> Vec<crate::llm::Message> {
    let mut text = format!("Goal: {goal}\n\nResults of the steps that ran:\n");
    for (step, output) in results {
        text.push_str(&format!(
            "\n[{step}]\n{}\n",
            truncate_middle(output.trim(), 1500)
        ));
    }
    let names = answer_names(goal);
    text.push_str(
        "\nAnswer the goal using only these results. Every number you give must appear in a result above; \
         name the step it comes from. If the results do not establish something, say that it could not be determined.",
    );
    if !names.is_empty() {
        text.push_str(&format!(
            " End with the answer in exactly the requested format, using exactly these names: {}.",
            names
                .iter()
                .map(|n| format!("@{n}[...]"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    vec![
        crate::llm::Message::system(
            "You report the results of a data analysis briefly and exactly. You never invent numbers.",
        ),
        crate::llm::Message::user(text),
    ]
}

/// Messages asking to replace a failed step and everything after it.
pub fn replan_messages(
    goal: &str,
    profiles: &[crate::profile::Profile],
    done: &[&crate::plan::Step],
    failed: &crate::plan::Step,
    problem: &str,
    max_steps: usize,
) -> Vec<crate::llm::Message> {
    let mut messages = plan_messages(goal, profiles, Shape::Dag, max_steps);
    let kept: Vec<String> = done
        .iter()
        .map(|s| {
            format!(
                "- {} ({}): wrote {}",
                s.id,
                s.title,
                if s.writes.is_empty() {
                    "nothing".into()
                } else {
                    s.writes.join(", ")
                }
            )
        })
        .collect();
    messages[1].content.push_str(&format!(
        "\n\nThese steps already ran and are kept (depend on them by id and read their files):\n{}\n\n\
         This step failed even after repairs:\n- {} ({}): {}\nProblem: {problem}\n\n\
         Reply with new steps that replace it and the steps after it, with new ids. Do not repeat the kept steps. \
         Take a different, simpler approach.",
        if kept.is_empty() { "(none)".to_string() } else { kept.join("\n") },
        failed.id,
        failed.title,
        failed.instruction,
    ));
    messages
}

#[cfg(test)]
mod agent_prompt_tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_step_prompt_leads_with_the_step_and_keeps_the_goal_as_context() {
        let step = crate::plan::Step {
            id: "growth".into(),
            title: "growth per region".into(),
            instruction: "From clean.csv, compute the growth per region.".into(),
            kind: crate::plan::StepKind::Action,
            depends_on: vec![],
            reads: vec![],
            writes: vec![],
            fallback: None,
        };
        let goal = "Which region grew most? Answer as @region[name].";
        let ending = step_messages(goal, &step, &[], &[], true);
        let text = &ending[1].content;
        assert!(
            text.starts_with(
                "Write the script for one step of an analysis.\nThis step: growth per region\n"
            ),
            "{text}"
        );
        assert!(text.contains("as @region[...]"), "{text}");
        assert!(text.contains(&format!("answers: {goal}")), "{text}");
        let inner = step_messages(goal, &step, &[], &[], false);
        let text = &inner[1].content;
        assert!(!text.contains("Which region"), "{text}");
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("do only what this step asks"), "{text}");
    }

    #[test]
    fn answers_are_rounded_as_the_goal_asks() {
        let answer = "Skew is small. @skew[0.1405] @n[4440] @kurt[-0.25] @name[x1.234]";
        assert_eq!(
            round_as_asked(
                "All values should be rounded to two decimal places.",
                answer
            ),
            "Skew is small. @skew[0.14] @n[4440] @kurt[-0.25] @name[x1.234]"
        );
        assert_eq!(
            round_as_asked("Report it rounded off to 3 decimals.", "@m[0.25789]"),
            "@m[0.258]"
        );
        assert_eq!(
            round_as_asked(
                "The mean should be calculated rounding up to two decimal places.",
                "@m[0.8796]"
            ),
            "@m[0.88]"
        );
        // No precision, or two different ones: left as printed.
        assert_eq!(
            round_as_asked("What is the mean?", "@m[0.25789]"),
            "@m[0.25789]"
        );
        assert_eq!(
            round_as_asked(
                "r rounded to two decimal places, p rounded to four decimal places.",
                "@r[0.12345]"
            ),
            "@r[0.12345]"
        );
        assert_eq!(
            round_as_asked(
                "growth rounded to 1 decimal and the correlation to 3 decimals.",
                "@c[-0.2551]"
            ),
            "@c[-0.2551]"
        );
        // Each value with the precision its own description names.
        let format = "1. @count[n] an integer. 2. @mean[m] rounded to 2 decimal places. 3. @acc[a] a percentage rounded to 3 decimal places.";
        assert_eq!(
            round_as_asked(format, "@count[0] @mean[-89.04421682] @acc[97.123456]"),
            "@count[0] @mean[-89.04] @acc[97.123]"
        );
        assert_eq!(
            round_as_asked(
                "Answer @a[x] and @b[y], all rounded to two decimal places.",
                "@a[1.2345] @b[2.3456]"
            ),
            "@a[1.23] @b[2.35]",
            "a name without a precision of its own takes the goal's only one"
        );
        assert_eq!(
            round_as_asked("Give it to 2 decimals.", "@m[0.25789]"),
            "@m[0.25789]"
        );
    }

    #[test]
    fn a_rounded_printed_number_grounds_an_answer_value() {
        let printed = "growth_pct: 15.191933\ncount 2.96\nregion south";
        assert!(grounded_in("south", printed));
        assert!(grounded_in("15.2", printed));
        assert!(grounded_in("15.19", printed));
        assert!(grounded_in("3", printed));
        assert!(!grounded_in("15.3", printed));
        assert!(!grounded_in("2.4", printed));
        assert!(!grounded_in("north", printed));
        // A value more precise than anything printed was not read from the output.
        assert!(!grounded_in("15.1919331", printed));
        assert!(!grounded_in("2.960", printed));
        // Numbers match whole printed numbers, not parts of them.
        assert!(!grounded_in("5.19", printed));
        assert!(!grounded_in("91", printed));
        // A zero needs a printed zero or a number in scientific notation.
        let small = "kurtosis 0.0023\np 3.2e-05\nmin 0.000";
        assert!(!grounded_in("0.00", "kurtosis 0.0023"));
        assert!(grounded_in("0.0", small));
        assert!(grounded_in("0.00", small));
        assert!(grounded_in("0.000", small));
    }

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
    fn hints_name_the_missing_package() {
        let hint = failure_hint(
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
            let hint = failure_hint(&exited, &stderr, &[]);
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
            let unnamed = failure_hint(&exited, &stderr, &[]);
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
        let hint = failure_hint(&exited, stderr, &[]);
        assert_eq!(
            hint,
            "`top['revenue']` is already a single value (numpy.float64), not a column or a table: use it as it is, without .values (no .values, .iloc or [0] either)."
        );
        let unnamed = failure_hint(
            &exited,
            "AttributeError: 'float' object has no attribute 'iloc'\n",
            &[],
        );
        assert!(
            unnamed.starts_with("That value is already a single value (float)"),
            "{unnamed}"
        );
        // An array is not a single value; text with date parts is an unparsed date; a float
        // with text methods is a missing value in a text column.
        let array = failure_hint(
            &exited,
            "AttributeError: 'numpy.ndarray' object has no attribute 'iloc'\n",
            &[],
        );
        assert!(!array.contains("single value"), "{array}");
        let date = failure_hint(
            &exited,
            "AttributeError: 'str' object has no attribute 'year'\n",
            &[],
        );
        assert!(date.starts_with("A date is still text"), "{date}");
        let write = failure_hint(
            &exited,
            "AttributeError: 'numpy.float64' object has no attribute 'to_csv'\n",
            &[],
        );
        assert!(
            write.contains("pd.DataFrame({'value': [x]}).to_csv"),
            "{write}"
        );
        let missing = failure_hint(
            &exited,
            "AttributeError: 'float' object has no attribute 'split'\n",
            &[],
        );
        assert!(
            missing.starts_with("A text column holds missing values"),
            "{missing}"
        );
    }

    #[test]
    fn an_undefined_name_says_each_script_runs_alone() {
        let hint = failure_hint(
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

    #[test]
    fn a_rewrite_adds_the_error_to_the_step_request_without_the_script() {
        let first = vec![
            crate::llm::Message::system("sys"),
            crate::llm::Message::user("This step: sum"),
        ];
        let messages = rewrite_messages(first, "KeyError: 0");
        assert_eq!(messages.len(), 2);
        assert!(messages[1].content.starts_with("This step: sum\n\n"));
        assert!(messages[1].content.contains(REWRITE_NOTE));
        assert!(messages[1].content.contains("KeyError: 0"));
    }

    #[test]
    fn a_number_used_as_a_column_gets_the_row_selection_hint() {
        let exited = crate::sandbox::Status::Exited(1);
        let row = failure_hint(
            &exited,
            "  File \"/x.py\", line 3\n    raise KeyError(key) from err\nKeyError: 0\n",
            &[],
        );
        assert!(row.contains("df.loc[df[col].idxmax()]"), "{row}");
        for stderr in [
            "KeyError: 'Happiness'\n",
            "KeyError: \"['Happiness'] not in index\"\n",
        ] {
            let column = failure_hint(&exited, stderr, &[]);
            assert!(
                column.starts_with("'Happiness' is not a column of the data this script read")
                    && column.contains("compute it in this script first"),
                "{column}"
            );
        }
        let key = failure_hint(&exited, "KeyError: (1, 2)\n", &[]);
        assert!(key.starts_with("A column or key does not exist"), "{key}");
    }

    #[test]
    fn a_value_that_is_the_goal_s_placeholder_was_not_computed() {
        let goal = "Which country? Answer as @country[country_name] @score[score value].";
        assert!(is_placeholder(goal, "country", "country_name"));
        assert!(is_placeholder(goal, "country", " Country_Name "));
        assert!(is_placeholder(goal, "score", "score value"));
        assert!(!is_placeholder(goal, "country", "Switzerland"));
        assert!(!is_placeholder(goal, "score", "country_name"));
        assert!(!is_placeholder(goal, "other", "country_name"));
        for none in ["nan", "NaN", " -inf ", "None", "null", "NaT"] {
            assert!(is_no_result(none), "{none}");
        }
        for value in ["0", "nanometre", "Nancy", "0.14"] {
            assert!(!is_no_result(value), "{value}");
        }
        let choices = "Is it normal? Answer @normal[yes] or @normal[no].";
        assert!(!is_placeholder(choices, "normal", "yes"));
    }

    #[test]
    fn answer_names_and_values_follow_the_at_format() {
        assert_eq!(
            answer_names("Report @mean_age[value] and @count[n]."),
            vec!["mean_age", "count"]
        );
        assert_eq!(
            answer_values("x\n@mean_age[29.70]\n@count[891]\n@mean_age[29.7]\n"),
            vec![
                ("count".to_string(), "891".to_string()),
                ("mean_age".to_string(), "29.7".to_string())
            ]
        );
    }
}
