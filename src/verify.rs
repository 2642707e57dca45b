//! Verification: a finished run's inputs hashed again and its final scripts re-run in fresh
//! containers, each output compared with the one the run recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::plan::{Plan, Step};
use crate::run::{DoneStep, RunFolder, sha256_file};
use crate::sandbox::state::{Save, StateIo};
use crate::sandbox::{Job, Sandbox, Status};

/// Outputs that may differ byte for byte from run to run and still be the same: renderers
/// stamp dates and ids into pictures.
const PICTURES: [&str; 4] = [".png", ".svg", ".jpg", ".pdf"];

/// What one check looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The run's input files, against their recorded hashes.
    Inputs,
    /// One done step, its script re-run.
    Step(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Inputs => f.pad("inputs"),
            Subject::Step(id) => f.pad(id),
        }
    }
}

/// One way a check did not reproduce the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An input's content is not what the run hashed.
    InputChanged {
        /// The input's name.
        name: String,
    },
    /// An input is no longer where the run read it.
    InputMissing {
        /// The input's name.
        name: String,
        /// Where the run read it.
        path: PathBuf,
    },
    /// The sandbox could not run the script; the error, described.
    Sandbox(String),
    /// The script ended otherwise than in the run.
    Status {
        /// How it ended now.
        now: Status,
        /// The exit code it had in the run.
        then: i64,
    },
    /// An output the run recorded was not written this time.
    NotWritten {
        /// The file, as the step wrote it.
        file: String,
    },
    /// An output differs from the recorded one.
    Differs {
        /// The file, as the step wrote it.
        file: String,
    },
    /// The step left variables in the run, and none this time.
    NoState,
    /// A picture the step wrote does not decode as its kind of image.
    NotAnImage {
        /// The file, as the step wrote it.
        file: String,
    },
    /// An `@name[value]` answer the step printed in the run is printed otherwise, or not.
    Answer {
        /// The answer's name.
        name: String,
        /// What the run printed.
        then: String,
        /// What the re-run printed; `None` when it printed no value for the name.
        now: Option<String>,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::InputChanged { name } => write!(f, "input {name} changed since the run"),
            Problem::InputMissing { name, path } => {
                write!(f, "input {name} is missing ({})", path.display())
            }
            Problem::Sandbox(error) => f.write_str(error),
            Problem::Status { now, then } => write!(f, "{now} (the run had exit code {then})"),
            Problem::NotWritten { file } => write!(f, "{file} was not written again"),
            Problem::Differs { file } => write!(f, "{file} differs"),
            Problem::NoState => f.write_str("it left no variables this time"),
            Problem::NotAnImage { file } => write!(f, "{file} is not a readable image"),
            Problem::Answer { name, then, now } => match now {
                Some(now) => write!(
                    f,
                    "it printed @{name}[{now}], the run printed @{name}[{then}]"
                ),
                None => write!(
                    f,
                    "it printed no @{name}[...], the run printed @{name}[{then}]"
                ),
            },
        }
    }
}

/// One check of a run: what was looked at, what did not reproduce and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub subject: Subject,
    /// Why it did not reproduce; empty when it did.
    pub problems: Vec<Problem>,
    /// Time the check took (zero for the inputs).
    pub took: Duration,
}

impl Check {
    /// Whether everything checked reproduced.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check `folder`'s inputs, then re-run the final script of every done step of `plan` in
/// `sandbox`, in dependency order, each seeing the files it saw in the run and loading the
/// variables its re-run dependencies left. Outputs must hash as recorded, except CSV files
/// whose numbers agree within the relative `tolerance` and pictures, which must decode as
/// images; every `@name[value]` the step printed in the run must be printed again (numbers
/// within the tolerance). A script that fails is a problem of its check; `Err` means the folder or the
/// machinery broke.
pub async fn verify<S: Sandbox>(
    folder: &RunFolder,
    plan: &Plan,
    sandbox: &S,
    tolerance: f64,
) -> Result<Vec<Check>> {
    let info = folder.info()?;
    let state = folder.state();
    let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch folder"))?;
    let mut problems = Vec::new();
    for input in &info.inputs {
        match sha256_file(&input.path) {
            Ok(hash) if hash == input.sha256 => {}
            Ok(_) => problems.push(Problem::InputChanged {
                name: input.name.clone(),
            }),
            Err(_) => problems.push(Problem::InputMissing {
                name: input.name.clone(),
                path: input.path.clone(),
            }),
        }
    }
    let mut checks = vec![Check {
        subject: Subject::Inputs,
        problems,
        took: Duration::ZERO,
    }];
    // Where run and batch keep it, else where older runs did.
    let max_state = info.options["agent"]["max_state"]
        .as_u64()
        .or_else(|| info.options["max_state"].as_u64())
        .unwrap_or(crate::agent::DEFAULT_MAX_STATE);
    // The states the re-runs left, by step: a dependent loads these, never the run's own.
    let mut rerun_states: std::collections::HashMap<String, PathBuf> = Default::default();
    for step in plan.topological_order() {
        let Some(done) = state.done.get(&step.id) else {
            continue;
        };
        let started = Instant::now();
        let state_dir = scratch.path().join("state").join(&step.id);
        let load = plan
            .steps
            .iter()
            .filter(|s| step.depends_on.contains(&s.id))
            .filter_map(|dep| Some((rerun_states.get(&dep.id)?.clone(), dep.id.clone())))
            .collect();
        let job = Job {
            inputs: folder
                .step_mounts(plan, step)?
                .into_iter()
                .map(|(path, _)| path)
                .collect(),
            out_dir: scratch.path().join("files").join(&step.id),
            run_id: format!("verify-{}", info.id),
            state: StateIo {
                load,
                save: Some(Save {
                    step: step.id.clone(),
                    dir: state_dir.clone(),
                    cap: max_state,
                    required: false,
                }),
            },
        };
        let (mut problems, left_state) =
            rerun(folder, step, done, sandbox, &job, tolerance).await?;
        if left_state {
            rerun_states.insert(
                step.id.clone(),
                state_dir.join(crate::sandbox::state::STATE_FILE),
            );
        } else if done.state.is_some() && problems.is_empty() {
            problems.push(Problem::NoState);
        }
        checks.push(Check {
            subject: Subject::Step(step.id.clone()),
            problems,
            took: started.elapsed(),
        });
    }
    Ok(checks)
}

/// Re-run one done step's final script as `job` and compare what it wrote with the run; also
/// says whether it left a state that passed its checks.
async fn rerun<S: Sandbox>(
    folder: &RunFolder,
    step: &Step,
    done: &DoneStep,
    sandbox: &S,
    job: &Job,
    tolerance: f64,
) -> Result<(Vec<Problem>, bool)> {
    let path = folder
        .attempt_dir(&step.id, done.attempt)?
        .join("script.py");
    let script =
        std::fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    let output = match sandbox.exec(job, &script).await {
        Ok(output) => output,
        Err(err) => return Ok((vec![Problem::Sandbox(format!("{err:#}"))], false)),
    };
    let mut problems = Vec::new();
    if output.status != Status::Exited(done.exit_code) {
        problems.push(Problem::Status {
            now: output.status,
            then: done.exit_code,
        });
    }
    for (file, hash) in &done.outputs {
        let fresh = job.out_dir.join(file);
        let recorded = folder.output_path(&step.id, done.attempt, file);
        let picture = PICTURES.iter().any(|extension| file.ends_with(extension));
        if !fresh.is_file() {
            problems.push(Problem::NotWritten { file: file.clone() });
        } else if picture {
            // A picture may differ byte for byte and still be the same chart; it must still
            // be one.
            if !crate::fsutil::is_readable_image(&fresh) {
                problems.push(Problem::NotAnImage { file: file.clone() });
            }
        } else if sha256_file(&fresh)? != *hash {
            let close = file.ends_with(".csv") && csv_close(&fresh, &recorded, tolerance);
            if !close {
                problems.push(Problem::Differs { file: file.clone() });
            }
        }
    }
    // What the step printed as answers, against the run.
    let printed = folder.attempt_dir(&step.id, done.attempt)?.join("stdout");
    let then = std::fs::read_to_string(&printed).unwrap_or_default();
    let now = crate::answer::answer_values(&output.stdout);
    for (name, value) in crate::answer::answer_values(&then) {
        let again = now.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        if !again
            .as_deref()
            .is_some_and(|v| same_value(v, &value, tolerance))
        {
            problems.push(Problem::Answer {
                name,
                then: value,
                now: again,
            });
        }
    }
    Ok((problems, output.state.is_some()))
}

/// Two printed values are the same: numbers within the relative tolerance, text as it is.
fn same_value(a: &str, b: &str, tolerance: f64) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0),
        _ => a.trim() == b.trim(),
    }
}

/// Whether two CSV files agree cell by cell, numbers within a relative tolerance.
fn csv_close(a: &Path, b: &Path, tolerance: f64) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::read_to_string(a), std::fs::read_to_string(b)) else {
        return false;
    };
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
            xs.len() == ys.len()
                && xs.iter().zip(&ys).all(|(p, q)| {
                    match (p.trim().parse::<f64>(), q.trim().parse::<f64>()) {
                        (Ok(p), Ok(q)) => {
                            (p - q).abs() <= tolerance * p.abs().max(q.abs()).max(1.0)
                        }
                        _ => p == q,
                    }
                })
        })
}

#[cfg(test)]
mod tests;
