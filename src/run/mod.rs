//! The run folder: everything a run planned, wrote, ran and concluded, laid out so a crash at
//! any moment leaves it consistent (every file is written then renamed into place), so a run
//! can be resumed, audited and verified later.
//!
//! ```text
//! runs/<id>/run.json            goal, inputs (path, name, sha256), options, image
//! runs/<id>/plan.json           the current plan; plan-1.json, plan-2.json... every version
//! runs/<id>/events.jsonl        every RunEvent, one per line
//! runs/<id>/state.json          the steps that are done, with their cache keys
//! runs/<id>/steps/<step>/attempt-<n>/{script.py,stdout,stderr,result.json,files/,state/}
//! runs/<id>/answer.md, report.md, report.html
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::{RunEvent, Sink};
use crate::fsutil::write_atomic;

pub mod attempt;
pub mod history;
pub mod vars;

pub use attempt::{AttemptRecord, cache_key};

/// One input file as the run saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// File name inside the sandbox (`/data/<name>`).
    pub name: String,
    /// sha256 of its content when the run started.
    pub sha256: String,
}

/// The run's identity and settings (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run id (the folder's name).
    pub id: String,
    /// The goal.
    pub goal: String,
    /// The inputs.
    pub inputs: Vec<Input>,
    /// Sandbox image tag.
    pub image: String,
    /// Options, as given (for resume).
    pub options: serde_json::Value,
    /// Unix time of creation.
    pub created: u64,
    /// Follow-up questions asked of the run (`planbox ask`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followups: Vec<String>,
}

impl RunInfo {
    /// The question the run answers now: the last follow-up, else the goal.
    pub fn question(&self) -> &str {
        self.followups.last().map_or(&self.goal, String::as_str)
    }
}

/// A finished step, kept for resume and verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneStep {
    /// The attempt that passed.
    pub attempt: usize,
    /// Hash of script, inputs read and image: a resumed run reuses the step only if equal.
    pub key: String,
    /// Files it wrote, with their sha256.
    pub outputs: BTreeMap<String, String>,
    /// Exit code of the passing attempt.
    pub exit_code: i64,
    /// sha256 of the variables it left (`state/state.pkl`), when it left any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The run's progress (`state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Current plan version.
    pub plan_version: usize,
    /// Done steps by id.
    pub done: BTreeMap<String, DoneStep>,
    /// Replans used so far.
    pub replans: usize,
}

/// An open run folder.
pub struct RunFolder {
    dir: PathBuf,
    events: Mutex<std::fs::File>,
    state: Mutex<State>,
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn new_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    // UTC date and time from the epoch, without a date crate.
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let (y, mo, d) = civil(days as i64);
    format!(
        "{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}-{:04x}",
        fastrand::u16(..)
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|source| Error::RunFolderDamaged {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("serializable")
            .as_bytes(),
    )
}

impl RunFolder {
    /// Add a follow-up question to `run.json`: the run answers it next.
    pub fn add_followup(&self, question: &str) -> Result<()> {
        let mut info = self.info()?;
        info.followups.push(question.to_string());
        write_json(&self.dir.join("run.json"), &info)
    }

    /// Note in `run.json` that the run was resumed with `overrides` (option, value): its
    /// options list every resume under `resumes`, so what a run ran with stays on record.
    pub fn record_resume(&self, overrides: &[(String, serde_json::Value)]) -> Result<()> {
        let mut info = self.info()?;
        let resume: serde_json::Map<String, serde_json::Value> =
            overrides.iter().cloned().collect();
        if !info.options.is_object() {
            info.options = serde_json::json!({});
        }
        let resumes = info
            .options
            .as_object_mut()
            .expect("an object")
            .entry("resumes");
        let list = resumes.or_insert_with(|| serde_json::json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(serde_json::json!({"overrides": resume}));
        }
        write_json(&self.dir.join("run.json"), &info)
    }

    /// Create a new run folder under `runs_dir`, checking and hashing the inputs first.
    pub fn create(
        runs_dir: &Path,
        goal: &str,
        inputs: &[PathBuf],
        image: &str,
        options: serde_json::Value,
    ) -> Result<(RunFolder, RunInfo)> {
        let mut seen = std::collections::HashSet::new();
        let mut listed = Vec::new();
        for path in inputs {
            let bad = |reason: String| Error::Input {
                path: path.clone(),
                reason,
            };
            let meta = std::fs::metadata(path).map_err(|err| {
                bad(match err.kind() {
                    std::io::ErrorKind::NotFound => "no such file".into(),
                    _ => err.to_string(),
                })
            })?;
            if !meta.is_file() {
                return Err(bad("is not a regular file".into()));
            }
            let absolute = std::fs::canonicalize(path).map_err(|err| bad(err.to_string()))?;
            let name = absolute
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| bad("the name is not UTF-8".into()))?
                .to_string();
            if !seen.insert(name.clone()) {
                return Err(bad(format!("another input is also named {name}")));
            }
            listed.push(Input {
                sha256: sha256_file(&absolute)?,
                path: absolute,
                name,
            });
        }
        let id = new_id();
        let dir = runs_dir.join(&id);
        std::fs::create_dir_all(dir.join("steps"))
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        let info = RunInfo {
            id,
            goal: goal.to_string(),
            inputs: listed,
            image: image.to_string(),
            options,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            followups: Vec::new(),
        };
        write_json(&dir.join("run.json"), &info)?;
        let folder = RunFolder::open_dir(&dir)?;
        folder.save_state()?;
        Ok((folder, info))
    }

    /// Find a run by folder path or by id under `runs_dir`.
    pub fn locate(run: &str, runs_dir: &Path) -> Result<PathBuf> {
        let direct = PathBuf::from(run);
        for candidate in [direct.clone(), runs_dir.join(run)] {
            if candidate.join("run.json").is_file() {
                return Ok(candidate);
            }
        }
        Err(Error::NoSuchRun {
            run: run.to_string(),
            runs_dir: runs_dir.to_path_buf(),
        })
    }

    /// Open an existing run folder.
    pub fn open_dir(dir: &Path) -> Result<RunFolder> {
        let events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .map_err(Error::io(format!("opening {}/events.jsonl", dir.display())))?;
        let state_path = dir.join("state.json");
        let state = if state_path.exists() {
            read_json(&state_path)?
        } else {
            State::default()
        };
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            events: Mutex::new(events),
            state: Mutex::new(state),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `run.json`.
    pub fn info(&self) -> Result<RunInfo> {
        read_json(&self.dir.join("run.json"))
    }

    /// A copy of the state.
    pub fn state(&self) -> State {
        self.state.lock().expect("state poisoned").clone()
    }

    fn save_state(&self) -> Result<()> {
        let state = self.state();
        write_json(&self.dir.join("state.json"), &state)
    }

    /// Store a plan version as `plan-<version>.json` and `plan.json`.
    pub fn write_plan(&self, version: usize, plan: &serde_json::Value) -> Result<()> {
        write_json(&self.dir.join(format!("plan-{version}.json")), plan)?;
        write_json(&self.dir.join("plan.json"), plan)?;
        self.state.lock().expect("state poisoned").plan_version = version;
        self.save_state()
    }

    /// The current plan, if one was written.
    pub fn plan(&self) -> Result<Option<crate::planner::Planned>> {
        let path = self.dir.join("plan.json");
        if !path.exists() {
            return Ok(None);
        }
        let value: serde_json::Value = read_json(&path)?;
        let plan = crate::plan::Plan {
            goal: value["goal"].as_str().unwrap_or_default().to_string(),
            steps: serde_json::from_value(value["steps"].clone())
                .map_err(|source| Error::RunFolderDamaged { path, source })?,
        };
        let mode =
            serde_json::from_value(value["mode"].clone()).unwrap_or(crate::planner::Mode::Dag);
        let notes = serde_json::from_value(value["notes"].clone()).unwrap_or_default();
        Ok(Some(crate::planner::Planned { plan, mode, notes }))
    }

    /// The folder of one attempt (created).
    pub fn attempt_dir(&self, step: &str, attempt: usize) -> Result<PathBuf> {
        let dir = self
            .dir
            .join("steps")
            .join(step)
            .join(format!("attempt-{attempt}"));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    }

    /// Where a done step's output file lives.
    pub fn output_path(&self, step: &str, attempt: usize, file: &str) -> PathBuf {
        self.dir
            .join("steps")
            .join(step)
            .join(format!("attempt-{attempt}"))
            .join("files")
            .join(file)
    }

    /// The files `step` of `plan` gets mounted, with their sha256: every run input, then every
    /// plain-named file its finished ancestors wrote, declared or not (a model often reads an
    /// ancestor's file it forgot to declare). A name already mounted keeps its first file.
    /// The agent and `verify` both mount through here, so a verified script sees what it saw.
    pub fn step_mounts(
        &self,
        plan: &crate::plan::Plan,
        step: &crate::plan::Step,
    ) -> Result<Vec<(PathBuf, String)>> {
        let info = self.info()?;
        let state = self.state();
        let mut names: std::collections::BTreeSet<String> =
            info.inputs.iter().map(|i| i.name.clone()).collect();
        let mut mounts: Vec<(PathBuf, String)> = info
            .inputs
            .iter()
            .map(|i| (i.path.clone(), i.sha256.clone()))
            .collect();
        // Ancestors in plan order, so a clash resolves the same way every time.
        let ancestors = plan.ancestors(&step.id);
        for writer in plan.steps.iter().filter(|s| ancestors.contains(&s.id)) {
            let done = state
                .done
                .get(&writer.id)
                .ok_or_else(|| Error::DependencyNotDone {
                    step: step.id.clone(),
                    dependency: writer.id.clone(),
                })?;
            for (file, hash) in &done.outputs {
                if !file.contains('/') && names.insert(file.clone()) {
                    mounts.push((
                        self.output_path(&writer.id, done.attempt, file),
                        hash.clone(),
                    ));
                }
            }
        }
        Ok(mounts)
    }

    /// Record a step as done.
    pub fn mark_done(&self, step: &str, done: DoneStep) -> Result<()> {
        self.state
            .lock()
            .expect("state poisoned")
            .done
            .insert(step.to_string(), done);
        self.save_state()
    }

    /// Forget done steps (their plan was replaced) and count a replan.
    pub fn replanned(&self, dropped: &[String]) -> Result<()> {
        {
            let mut state = self.state.lock().expect("state poisoned");
            for id in dropped {
                state.done.remove(id);
            }
            state.replans += 1;
        }
        self.save_state()
    }

    /// Write a text file at the top of the run folder.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.dir.join(name), text.as_bytes())
    }
}

impl Sink for RunFolder {
    fn emit(&self, event: &RunEvent) {
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        // One write per line: a crash leaves whole lines (at most a torn last one).
        let mut file = self.events.lock().expect("events poisoned");
        if let Err(err) = file.write_all(&line) {
            tracing::warn!(%err, "could not append to events.jsonl");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_783), (2026, 11, 26));
    }

    #[test]
    fn a_run_folder_round_trips_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.csv");
        std::fs::write(&input, "x\n1\n").unwrap();
        let (folder, info) = RunFolder::create(
            &dir.path().join("runs"),
            "goal",
            &[input],
            "img:1",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(info.inputs[0].name, "a.csv");
        folder
            .mark_done(
                "s",
                DoneStep {
                    attempt: 2,
                    key: "k".into(),
                    outputs: BTreeMap::new(),
                    exit_code: 0,
                    state: None,
                },
            )
            .unwrap();
        folder.emit(&RunEvent::StepDone {
            step: "s".into(),
            reused: false,
        });
        let again = RunFolder::open_dir(folder.dir()).unwrap();
        assert_eq!(again.state().done["s"].attempt, 2);
        let events = std::fs::read_to_string(folder.dir().join("events.jsonl")).unwrap();
        assert_eq!(
            events,
            "{\"event\":\"step_done\",\"step\":\"s\",\"reused\":false}\n"
        );
        let located = RunFolder::locate(&info.id, &dir.path().join("runs")).unwrap();
        assert_eq!(located, folder.dir());
    }
}
