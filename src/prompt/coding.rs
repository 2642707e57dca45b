//! Script prompts: the coder's system message, a step's request (its dependencies' outputs
//! described), repairs, fresh rewrites and the final synthesis.

use crate::answer::answer_names;
use crate::text::truncate_middle;

/// The code writer's system message: identical and first in every generation call.
pub const CODER_SYSTEM: &str = "\
You write one short, complete Python 3 script for one step of a data analysis.
Rules:
- Input files are read-only at /data/<name>. Read only the files the step lists.
- Write every output file into the current folder, with exactly the names the step lists.
- Variables that earlier steps left are already defined when the script starts: use them by name. Top-level variables the script assigns are kept for the steps after it.
- Python packages available: pandas, numpy, scipy, matplotlib (Agg backend), seaborn, scikit-learn, statsmodels, openpyxl (Excel), fastparquet (pandas.read_parquet). No other package can be installed and there is no network.
- Print the results the step asks for with clear labels, never whole tables: print summaries, counts and the requested values.
- CSV columns load as text or numbers: parse dates with pd.to_datetime before using .dt.
- Do not ask for input. Do not catch exceptions just to hide them: let errors raise.
- For charts use matplotlib, save with plt.savefig('<name>.png') and never call plt.show().
Reply with the script in one ```python code block and nothing else.";

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
    /// The variables it left that this step gets.
    pub state: super::variables::Inherited,
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
        text.push_str(&super::variables::render(&up.step, &up.state));
        if !up.stdout_tail.trim().is_empty() {
            text.push_str(&format!("  it printed:\n{}\n", indent(&up.stdout_tail)));
        }
    }
    if !step.uses.is_empty() {
        text.push_str(&format!(
            "\nUse the variables {} directly: they are already defined.\n",
            step.uses.join(", ")
        ));
    }
    if !step.produces.is_empty() {
        text.push_str(&format!(
            "\nAssign these top-level variables, with exactly these names, for the steps after this one: {}\n",
            step.produces.join(", ")
        ));
    }
    if step.writes.is_empty() {
        text.push_str("\nThis step writes no files.\n");
    } else {
        text.push_str(&format!(
            "\nWrite these files in the current folder: {}\n",
            step.writes.join(", ")
        ));
    }
    // A small model follows code better than prose: the variables it gets are shown again
    // as the script's first lines, last in the request, where it starts writing.
    let defined: Vec<String> = upstream
        .iter()
        .flat_map(|up| up.state.variables.iter())
        .map(|v| match v.columns.is_empty() {
            true => format!("# {}: {}", v.name, v.kind),
            false => format!(
                "# {}: {} with columns {}",
                v.name,
                v.kind,
                v.columns
                    .iter()
                    .take(12)
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect();
    let stub = (!defined.is_empty()).then(|| {
        format!(
            "\nStart your script from these lines; use these variables, do not read them from files.\n```python\nimport pandas as pd\n# Already defined by earlier steps:\n{}\n```\n",
            defined.join("\n")
        )
    });
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
    if let Some(stub) = stub {
        text.push_str(&stub);
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

#[cfg(test)]
mod tests {
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
            produces: Vec::new(),
            uses: Vec::new(),
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
}
