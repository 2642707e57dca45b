//! The run report: the goal, the answer, the plan with each step's status, attempts and
//! timings, the final scripts, charts, and usage. [`Report::gather`] reads it from the run
//! folder once; [`markdown`] and [`html`] render it without touching the disk.

mod graph;
mod highlight;
mod html;

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use html::html;

use crate::error::Result;
use crate::llm::Totals;
use crate::plan::{Plan, Step};
use crate::run::{RunFolder, RunInfo, State};
use crate::sandbox::{Artifact, Status};

/// Largest image embedded in the HTML report; larger ones are named, not shown.
const MAX_IMAGE: u64 = 2 * 1024 * 1024;

/// Everything a report shows, read from the run folder.
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) info: RunInfo,
    pub(crate) answer: String,
    pub(crate) plan: Option<PlanView>,
    pub(crate) totals: Totals,
    pub(crate) wall: Duration,
}

/// The final plan with what became of each step.
#[derive(Debug, Clone)]
pub(crate) struct PlanView {
    /// Plan version (1 for the first plan; each replan adds one).
    pub(crate) version: usize,
    /// Replans used.
    pub(crate) replans: usize,
    pub(crate) steps: Vec<StepView>,
}

/// How a step of the final plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepStatus {
    /// An attempt passed.
    Done,
    /// It was attempted and no attempt passed.
    Failed,
    /// Never attempted (a dependency failed, or a budget ran out first).
    NotRun,
}

impl StepStatus {
    /// The one place that decides a step's status, for every renderer.
    fn of(state: &State, id: &str, attempts: usize) -> StepStatus {
        if state.done.contains_key(id) {
            StepStatus::Done
        } else if attempts > 0 {
            StepStatus::Failed
        } else {
            StepStatus::NotRun
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::NotRun => "not run",
        }
    }
}

/// One step of the final plan.
#[derive(Debug, Clone)]
pub(crate) struct StepView {
    pub(crate) step: Step,
    pub(crate) status: StepStatus,
    /// Attempts made (folders under `steps/<id>/`).
    pub(crate) attempts: usize,
    /// The attempt that passed, or else the last one made.
    pub(crate) last: Option<AttemptView>,
}

/// What one attempt left in its folder.
#[derive(Debug, Clone)]
pub(crate) struct AttemptView {
    pub(crate) number: usize,
    /// Its folder, relative to the run folder.
    pub(crate) dir: String,
    /// None when the model's reply held no usable code.
    pub(crate) script: Option<String>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// None when the script never ran (no code, or it did not compile).
    pub(crate) result: Option<AttemptResult>,
    pub(crate) files: Vec<FileView>,
}

/// The parts of an attempt's `result.json` (written by the agent after each run) shown here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AttemptResult {
    pub(crate) status: Option<Status>,
    pub(crate) ok: bool,
    pub(crate) problem: Option<String>,
    pub(crate) start_ms: u64,
    pub(crate) run_ms: u64,
    pub(crate) model_ms: u64,
    pub(crate) stdout_bytes: u64,
    pub(crate) stderr_bytes: u64,
    pub(crate) artifacts: Vec<Artifact>,
}

/// A file an attempt wrote.
#[derive(Debug, Clone)]
pub(crate) struct FileView {
    /// Path inside the attempt's `files/`.
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) image: Option<Image>,
}

/// A chart, read for embedding.
#[derive(Debug, Clone)]
pub(crate) enum Image {
    Embedded { mime: &'static str, bytes: Vec<u8> },
    TooLarge,
}

/// The media type of a file the report shows as a picture.
fn image_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "svg" => Some("image/svg+xml"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Numbers of the `attempt-<n>` folders of a step.
fn attempt_numbers(step_dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(step_dir) else {
        return Vec::new();
    };
    let mut numbers: Vec<usize> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("attempt-")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

fn read_attempt(folder: &Path, step: &str, number: usize, files: Option<&[String]>) -> AttemptView {
    let dir = format!("steps/{step}/attempt-{number}");
    let path = folder.join(&dir);
    let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
    let result: Option<AttemptResult> =
        read("result.json").and_then(|t| serde_json::from_str(&t).ok());
    // A done step lists the files it was checked with; otherwise what the run harvested.
    let names: Vec<String> = match (files, &result) {
        (Some(files), _) => files.to_vec(),
        (None, Some(result)) => result.artifacts.iter().map(|a| a.path.clone()).collect(),
        (None, None) => Vec::new(),
    };
    let files = names
        .into_iter()
        .map(|name| {
            let file = path.join("files").join(&name);
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            let image = image_type(&name).map(|mime| {
                if size > MAX_IMAGE {
                    Image::TooLarge
                } else {
                    Image::Embedded {
                        mime,
                        bytes: std::fs::read(&file).unwrap_or_default(),
                    }
                }
            });
            FileView { name, size, image }
        })
        .collect();
    AttemptView {
        number,
        dir,
        script: read("script.py"),
        stdout: read("stdout").unwrap_or_default(),
        stderr: read("stderr").unwrap_or_default(),
        result,
        files,
    }
}

impl Report {
    /// Read a run's report from its folder: `plan` is the final plan (None if none was made).
    pub fn gather(
        folder: &RunFolder,
        plan: Option<&Plan>,
        answer: &str,
        totals: &Totals,
        wall: Duration,
    ) -> Result<Report> {
        let info = folder.info()?;
        let state = folder.state();
        let plan = plan.map(|plan| PlanView {
            version: state.plan_version,
            replans: state.replans,
            steps: plan
                .steps
                .iter()
                .map(|step| {
                    let numbers = attempt_numbers(&folder.dir().join("steps").join(&step.id));
                    let status = StepStatus::of(&state, &step.id, numbers.len());
                    let last = match state.done.get(&step.id) {
                        Some(done) => {
                            let files: Vec<String> = done.outputs.keys().cloned().collect();
                            Some(read_attempt(
                                folder.dir(),
                                &step.id,
                                done.attempt,
                                Some(&files),
                            ))
                        }
                        None => numbers
                            .last()
                            .map(|&n| read_attempt(folder.dir(), &step.id, n, None)),
                    };
                    StepView {
                        step: step.clone(),
                        status,
                        attempts: numbers.len(),
                        last,
                    }
                })
                .collect(),
        });
        Ok(Report {
            info,
            answer: answer.to_string(),
            plan,
            totals: *totals,
            wall,
        })
    }
}

/// Gather a run's report from its folder and write it there as `report.md` and `report.html`.
pub fn write(
    folder: &RunFolder,
    plan: Option<&Plan>,
    answer: &str,
    totals: &Totals,
    wall: Duration,
) -> Result<()> {
    let report = Report::gather(folder, plan, answer, totals, wall)?;
    folder.write_text("report.md", &markdown(&report))?;
    folder.write_text("report.html", &html(&report))
}

/// The Markdown report of a run.
pub fn markdown(report: &Report) -> String {
    let info = &report.info;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", info.goal);
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
                "Attempt {} passed: model {} ms, container start {} ms, run {} ms.\n",
                last.number,
                timing(result.map(|r| r.model_ms)),
                timing(result.map(|r| r.start_ms)),
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
