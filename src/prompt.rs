//! Pure text functions between planbox and a model: pulling JSON or code out of a reply that
//! may wrap it in prose or fences, and truncating long text to its head and tail.

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
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

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
    fn truncation_keeps_head_and_tail_on_char_boundaries() {
        assert_eq!(truncate_middle("short", 10), "short");
        let cut = truncate_middle("ééééééééééabc", 8);
        assert!(cut.starts_with("éé\n[..."), "{cut}");
        assert!(cut.ends_with("abc"), "{cut}");
    }
}

/// The planner's system message: identical and first in every planning call, so a server
/// that caches prompt prefixes reuses it.
pub const PLANNER_SYSTEM: &str = "\
You plan data analysis work for a Python sandbox. You do not write code here: you split a goal \
into small steps, and each step is later solved by one short Python script.
Rules:
- Each step does one thing: load and clean data, compute one result, draw one chart, or check earlier results.
- Input files are read-only at /data/<name>. A step writes its files into its working folder; later steps read them by name.
- \"reads\" lists every file the step opens: input file names, or files written by steps it depends on.
- \"writes\" lists the files the step creates, as plain names such as clean.csv or chart.png. Each file is written by exactly one step.
- \"depends_on\" lists the ids of the steps whose files or results this step needs. Steps that do not need each other must not depend on each other, so they run in parallel.
- Use kind \"verify\" for a step that checks earlier outputs (files exist, columns, row counts, value ranges) and raises an error when something is wrong.
- The instruction says exactly what to compute, from which file and columns, and what to write or print.
- The last step prints the final answer.
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
pub fn plan_messages(goal: &str, profiles: &[crate::profile::Profile], shape: Shape, max_steps: usize) -> Vec<crate::llm::Message> {
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
pub fn triage_messages(goal: &str, profiles: &[crate::profile::Profile]) -> Vec<crate::llm::Message> {
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
pub fn subgoal_messages(goal: &str, profiles: &[crate::profile::Profile], max: usize) -> Vec<crate::llm::Message> {
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
pub fn critique_messages(goal: &str, profiles: &[crate::profile::Profile], plan_json: &str) -> Vec<crate::llm::Message> {
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
                Column { name: "date".into(), kind: ColumnType::Date, missing: 0 },
                Column { name: "region".into(), kind: ColumnType::String, missing: 2 },
                Column { name: "revenue".into(), kind: ColumnType::Float, missing: 0 },
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
        messages.iter().map(|m| format!("[{:?}]\n{}\n", m.role, m.content)).collect()
    }

    #[test]
    fn dag_plan_prompt() {
        insta::assert_snapshot!(text(&plan_messages("Which region grew fastest in 2023? Chart it.", &profiles(), Shape::Dag, 12)));
    }

    #[test]
    fn linear_plan_prompt() {
        insta::assert_snapshot!(text(&plan_messages("Average revenue per region.", &profiles(), Shape::Linear, 6)));
    }

    #[test]
    fn triage_prompt() {
        insta::assert_snapshot!(text(&triage_messages("How many rows?", &profiles())));
    }

    #[test]
    fn subgoal_prompt() {
        insta::assert_snapshot!(text(&subgoal_messages("Forecast 2024 revenue per region.", &profiles(), 4)));
    }

    #[test]
    fn critique_prompt() {
        insta::assert_snapshot!(text(&critique_messages("How many rows?", &profiles(), "{\"steps\": []}")));
    }
}
