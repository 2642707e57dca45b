//! The run report: the goal, the answer, the plan with each step's status, attempts and
//! timings, the final scripts, charts inline, and usage. Built from the run folder.

use std::fmt::Write;
use std::time::Duration;

use crate::error::Result;
use crate::llm::Totals;
use crate::plan::Plan;
use crate::run::RunFolder;

/// The Markdown report of a run.
pub fn markdown(
    folder: &RunFolder,
    plan: Option<&Plan>,
    answer: &str,
    totals: &Totals,
    wall: Duration,
) -> Result<String> {
    let info = folder.info()?;
    let state = folder.state();
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", info.goal);
    let _ = writeln!(out, "## Answer\n\n{answer}\n");
    let _ = writeln!(out, "## Inputs\n");
    for input in &info.inputs {
        let _ = writeln!(
            out,
            "- `{}` (sha256 `{}`)",
            input.name,
            &input.sha256[..12.min(input.sha256.len())]
        );
    }
    if let Some(plan) = plan {
        let _ = writeln!(
            out,
            "\n## Plan (version {}, {} replan(s))\n",
            state.plan_version, state.replans
        );
        let _ = writeln!(
            out,
            "| step | kind | after | status | attempts |\n|---|---|---|---|---|"
        );
        for step in &plan.steps {
            let attempts = std::fs::read_dir(folder.dir().join("steps").join(&step.id))
                .map_or(0, Iterator::count);
            let status = if state.done.contains_key(&step.id) {
                "done"
            } else if attempts > 0 {
                "failed"
            } else {
                "not run"
            };
            let _ = writeln!(
                out,
                "| {} — {} | {:?} | {} | {status} | {attempts} |",
                step.id,
                step.title.replace('|', "/"),
                step.kind,
                step.depends_on.join(", ")
            );
        }
        let _ = writeln!(out, "\n## Steps\n");
        for step in &plan.steps {
            let _ = writeln!(
                out,
                "### {}: {}\n\n{}\n",
                step.id, step.title, step.instruction
            );
            let Some(done) = state.done.get(&step.id) else {
                continue;
            };
            let dir = format!("steps/{}/attempt-{}", step.id, done.attempt);
            let script = std::fs::read_to_string(folder.dir().join(&dir).join("script.py"))
                .unwrap_or_default();
            let stdout =
                std::fs::read_to_string(folder.dir().join(&dir).join("stdout")).unwrap_or_default();
            let result: serde_json::Value =
                std::fs::read_to_string(folder.dir().join(&dir).join("result.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
            let _ = writeln!(
                out,
                "Attempt {} passed: model {} ms, container start {} ms, run {} ms.\n",
                done.attempt, result["model_ms"], result["start_ms"], result["run_ms"]
            );
            let _ = writeln!(out, "```python\n{}\n```\n", script.trim_end());
            if !stdout.trim().is_empty() {
                let _ = writeln!(
                    out,
                    "Output:\n\n```text\n{}\n```\n",
                    crate::prompt::truncate_middle(
                        &crate::text::strip_escapes(stdout.trim_end()),
                        4000
                    )
                );
            }
            for file in done.outputs.keys() {
                if file.ends_with(".png") || file.ends_with(".svg") || file.ends_with(".jpg") {
                    let _ = writeln!(out, "![{file}]({dir}/files/{file})\n");
                } else {
                    let _ = writeln!(out, "- [{file}]({dir}/files/{file})");
                }
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "## Usage\n\n| | |\n|---|---|");
    let _ = writeln!(out, "| model calls | {} |", totals.calls);
    let _ = writeln!(out, "| prompt tokens | {} |", totals.prompt_tokens);
    let _ = writeln!(out, "| completion tokens | {} |", totals.completion_tokens);
    if let Some(cost) = totals.cost {
        let _ = writeln!(out, "| estimated cost | {cost:.4} |");
    }
    let _ = writeln!(out, "| wall time | {:.1} s |", wall.as_secs_f64());
    let _ = writeln!(out, "| sandbox image | `{}` |", info.image);
    Ok(out)
}
