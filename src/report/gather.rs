//! Reading a report from the run folder: the final plan's steps, the attempt shown for each
//! (the one that passed, or the last), its script, output, timings and files, charts read
//! for embedding. The only part of the report that touches the disk.

use std::path::Path;
use std::time::Duration;

use super::{AttemptResult, AttemptView, FileView, Image, MAX_IMAGE, PlanView, Report, StepView};
use crate::error::Result;
use crate::llm::Totals;
use crate::plan::Plan;
use crate::run::RunFolder;
use crate::run::history::{StepStatus, attempt_numbers};

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
