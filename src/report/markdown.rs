//! The Markdown report: the goal, answer, inputs, plan table, each passing step's script,
//! output and files, and usage, as text that reads well in a terminal or a repository.

use std::fmt::Write;

use super::{Report, StepStatus};

/// The Markdown report of a run.
pub fn markdown(report: &Report) -> String {
    let info = &report.info;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", info.goal);
    for (n, question) in info.followups.iter().enumerate() {
        let _ = writeln!(out, "Follow-up {}: {question}\n", n + 1);
    }
    let _ = writeln!(out, "## Answer\n\n{}\n", report.answer);
    let _ = writeln!(out, "## Inputs\n");
    for input in &info.inputs {
        let _ = writeln!(
            out,
            "- `{}` (sha256 `{}`)",
            input.name,
            input.sha256.get(..12).unwrap_or(&input.sha256)
        );
    }
    if let Some(plan) = &report.plan {
        let _ = writeln!(
            out,
            "\n## Plan (version {}, {} replan(s))\n",
            plan.version, plan.replans
        );
        let _ = writeln!(
            out,
            "| step | kind | after | status | attempts |\n|---|---|---|---|---|"
        );
        for view in &plan.steps {
            let step = &view.step;
            let _ = writeln!(
                out,
                "| {} — {} | {:?} | {} | {} | {} |",
                step.id,
                step.title.replace('|', "/"),
                step.kind,
                step.depends_on.join(", "),
                view.status.label(),
                view.attempts
            );
        }
        let _ = writeln!(out, "\n## Steps\n");
        for view in &plan.steps {
            let step = &view.step;
            let _ = writeln!(
                out,
                "### {}: {}\n\n{}\n",
                step.id, step.title, step.instruction
            );
            // Markdown shows passing attempts only; the HTML report also shows failures.
            let (StepStatus::Done, Some(last)) = (view.status, &view.last) else {
                continue;
            };
            let timing = |ms: Option<u64>| ms.map_or("?".to_string(), |ms| ms.to_string());
            let result = last.result.as_ref();
            let _ = writeln!(
                out,
                "Attempt {} passed: model {} ms, container start {} ms ({} ms of it while the model wrote), run {} ms.\n",
                last.number,
                timing(result.map(|r| r.model_ms)),
                timing(result.map(|r| r.start_ms)),
                timing(result.map(|r| r.hidden_ms)),
                timing(result.map(|r| r.run_ms)),
            );
            let script = last.script.as_deref().unwrap_or_default();
            let _ = writeln!(out, "```python\n{}\n```\n", script.trim_end());
            if !last.stdout.trim().is_empty() {
                let _ = writeln!(
                    out,
                    "Output:\n\n```text\n{}\n```\n",
                    crate::text::truncate_middle(
                        &crate::text::strip_escapes(last.stdout.trim_end()),
                        4000
                    )
                );
            }
            for file in &last.files {
                let (name, dir) = (&file.name, &last.dir);
                if file.image.is_some() {
                    let _ = writeln!(out, "![{name}]({dir}/files/{name})\n");
                } else {
                    let _ = writeln!(out, "- [{name}]({dir}/files/{name})");
                }
            }
            out.push('\n');
        }
    }
    let totals = &report.totals;
    let _ = writeln!(out, "## Usage\n\n| | |\n|---|---|");
    let _ = writeln!(out, "| model calls | {} |", totals.calls);
    let _ = writeln!(out, "| prompt tokens | {} |", totals.prompt_tokens);
    let _ = writeln!(out, "| completion tokens | {} |", totals.completion_tokens);
    if let Some(cost) = totals.cost {
        let _ = writeln!(out, "| estimated cost | {cost:.4} |");
    }
    let _ = writeln!(out, "| wall time | {:.1} s |", report.wall.as_secs_f64());
    let _ = writeln!(out, "| sandbox image | `{}` |", info.image);
    out
}
