//! The run report: the goal, the answer, the plan with each step's status, attempts and
//! timings, the final scripts, charts, and usage. [`Report::gather`] reads it from the run
//! folder once; [`markdown`] and [`html`] render it without touching the disk.

mod gather;
mod graph;
mod highlight;
mod html;
mod markdown;
mod markup;

use std::time::Duration;

use serde::Deserialize;

pub use html::html;
pub use markdown::markdown;

use crate::llm::Totals;
use crate::plan::Step;
use crate::run::RunInfo;
pub(crate) use crate::run::history::StepStatus;
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
    pub(crate) hidden_ms: u64,
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

/// Gather a run's report from its folder and write it there as `report.md` and `report.html`.
pub fn write(
    folder: &crate::run::RunFolder,
    plan: Option<&crate::plan::Plan>,
    answer: &str,
    totals: &crate::llm::Totals,
    wall: std::time::Duration,
) -> crate::Result<()> {
    let report = Report::gather(folder, plan, answer, totals, wall)?;
    folder.write_text("report.md", &markdown(&report))?;
    folder.write_text("report.html", &html(&report))
}
