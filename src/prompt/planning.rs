//! Planning prompts: the planner's system message, the plan, triage, sub-goal, critique and
//! replan requests, each a pure function of the goal, the input profiles and the plan so far.

/// The planner's system message: identical and first in every planning call, so a server
/// that caches prompt prefixes reuses it.
pub const PLANNER_SYSTEM: &str = "\
You plan data analysis work for a Python sandbox. You do not write code here: you split a goal \
into steps, and each step is later solved by one short Python script.
Rules:
- Use as few steps as the goal needs. A question about one value (a count, a mean, a correlation, a test) is one step. Add a step only for real work of its own: preparing data that later steps share, each chart, each independent result.
- Steps share variables: every top-level variable a step's script assigns (a DataFrame, a number, a fitted model) is already defined in the scripts of the steps that depend on it. \"produces\" names the variables a step leaves for later steps (such as df or monthly); \"uses\" names the variables it takes from the steps it depends on.
- Files are for what a person keeps: charts and tables the goal asks to save. Do not write intermediate results to files; leave them as variables.
- Input files are read-only at /data/<name>. \"reads\" lists the input files a step opens.
- \"writes\" lists the files the step creates, as plain names such as chart.png. Each file is written by exactly one step.
- \"depends_on\" lists the ids of the steps whose variables or files this step needs. Steps that do not need each other must not depend on each other, so they run in parallel.
- Use kind \"verify\" for a step that checks earlier results (columns, row counts, value ranges) and raises an error when something is wrong.
- The instruction says exactly what to compute, from which variables, files and columns, and what to leave, write or print.
- The last step prints the final answer.
- Optionally, \"fallback\" gives another way to do a step that may fail (for example a simpler method), leaving the same variables and files.
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
            "{}\n{shape} Use at most {max_steps} {}; use fewer when the goal is simple.\n\
             Reply with {{\"steps\": [{{\"id\", \"title\", \"instruction\", \"kind\", \"depends_on\", \"reads\", \"writes\", \"produces\", \"uses\"}}]}}.",
            goal_block(goal, profiles),
            if max_steps == 1 { "step" } else { "steps" },
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

/// The kept steps, one line each: id, title, the variables they left and the files they
/// wrote; `(none)` when there are none.
fn kept_lines(done: &[&crate::plan::Step]) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    };
    let lines: Vec<String> = done
        .iter()
        .map(|s| {
            format!(
                "- {} ({}): left variables {}; wrote {}",
                s.id,
                s.title,
                list(&s.produces),
                list(&s.writes)
            )
        })
        .collect();
    if lines.is_empty() {
        "(none)".to_string()
    } else {
        lines.join("\n")
    }
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
    let kept = kept_lines(done);
    messages[1].content.push_str(&format!(
        "\n\nThese steps already ran and are kept (depend on them by id to use their variables and files):\n{}\n\n\
         This step failed even after repairs:\n- {} ({}): {}\nProblem: {problem}\n\n\
         Reply with new steps that replace it and the steps after it, with new ids. Do not repeat the kept steps. \
         Take a different, simpler approach.",
        kept,
        failed.id,
        failed.title,
        failed.instruction,
    ));
    messages
}

/// The messages that plan a follow-up `question` of a run: the plan request for it, with the
/// steps that already ran for the `earlier` question listed as kept.
pub fn followup_messages(
    question: &str,
    profiles: &[crate::profile::Profile],
    done: &[&crate::plan::Step],
    earlier: &str,
    max_steps: usize,
) -> Vec<crate::llm::Message> {
    let mut messages = plan_messages(question, profiles, Shape::Dag, max_steps);
    let kept = kept_lines(done);
    messages[1].content.push_str(&format!(
        "\n\nThis is a follow-up. These steps already ran for the question \"{}\" and are kept (depend on them by id to use their variables and files; they do not run again):\n{}\n\n\
         Reply with the new steps that answer the question above, with new ids. Do not repeat the kept steps.",
        crate::text::truncate_middle(earlier, 400),
        kept,
    ));
    messages
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
