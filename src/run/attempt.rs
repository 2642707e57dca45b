//! A step's attempts in the run folder: the record of each attempt, the key that lets a
//! resumed run keep a finished step, and what finished steps printed, for the steps after them
//! and for the answer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DoneStep, RunFolder};
use crate::answer::compose::Printed;
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::plan::{Plan, Step};
use crate::prompt::Upstream;
use crate::sandbox::{Artifact, Output, Status};

/// One attempt's record (`result.json`), for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// How the script ended.
    pub status: Status,
    /// Whether the step's checks passed.
    pub ok: bool,
    /// What went wrong, for the model and the report.
    pub problem: Option<String>,
    /// Container start (create, check, start), in milliseconds.
    pub start_ms: u64,
    /// Script run, in milliseconds.
    pub run_ms: u64,
    /// Model time writing the script, in milliseconds.
    pub model_ms: u64,
    /// How much of the container start was hidden behind the model's writing (the start
    /// ran while the model wrote), in milliseconds.
    #[serde(default)]
    pub hidden_ms: u64,
    /// Bytes printed to stdout.
    pub stdout_bytes: u64,
    /// Bytes printed to stderr.
    pub stderr_bytes: u64,
    /// Files the script wrote.
    pub artifacts: Vec<Artifact>,
}

/// Hash of what decides a step's result: its script, the content of what it reads, the image.
pub fn cache_key(script: &str, input_hashes: &[&str], image: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(script.as_bytes());
    for hash in input_hashes {
        hasher.update([0]);
        hasher.update(hash.as_bytes());
    }
    hasher.update([0]);
    hasher.update(image.as_bytes());
    hex::encode(hasher.finalize())
}

/// Output files shown whole to the answer: text no larger than this.
const SMALL_FILE: u64 = 1500;

/// Files shown whole per step, at most.
const SMALL_FILES_PER_STEP: usize = 4;

/// What of a dependency's printed output the next step's prompt shows: its tail.
const UPSTREAM_TAIL: usize = 1500;

impl RunFolder {
    /// Attempts a step has made in this folder so far, over every run of it (resumes too).
    pub fn attempts_made(&self, step: &str) -> usize {
        std::fs::read_dir(self.dir().join("steps").join(step)).map_or(0, Iterator::count)
    }

    /// The step's finished attempt, when it ran before with the same script, inputs and image.
    pub fn reusable(&self, step: &str, input_hashes: &[&str], image: &str) -> Option<DoneStep> {
        let done = self.state().done.get(step)?.clone();
        let script = self
            .attempt_dir(step, done.attempt)
            .ok()
            .and_then(|dir| std::fs::read_to_string(dir.join("script.py")).ok())
            .unwrap_or_default();
        (done.key == cache_key(&script, input_hashes, image)).then_some(done)
    }

    /// Store what an attempt ran and printed, and its record.
    pub fn write_attempt(&self, dir: &Path, output: &Output, record: &AttemptRecord) -> Result<()> {
        write_atomic(&dir.join("stdout"), output.stdout.as_bytes())?;
        write_atomic(&dir.join("stderr"), output.stderr.as_bytes())?;
        let json = serde_json::to_string_pretty(record).expect("serializable");
        write_atomic(&dir.join("result.json"), json.as_bytes())
    }

    /// Record a passing attempt: its output files hashed, its cache key.
    pub fn pass(
        &self,
        step: &str,
        attempt: usize,
        script: &str,
        input_hashes: &[&str],
        image: &str,
        output: &Output,
    ) -> Result<()> {
        let files = self.attempt_dir(step, attempt)?.join("files");
        let mut outputs = BTreeMap::new();
        for artifact in &output.artifacts {
            outputs.insert(
                artifact.path.clone(),
                super::sha256_file(&files.join(&artifact.path))?,
            );
        }
        let exit_code = match output.status {
            Status::Exited(code) => code,
            Status::TimedOut
            | Status::OutOfMemory
            | Status::OutputLimit
            | Status::ArtifactRejected(_)
            | Status::PolicyRejected(_)
            | Status::StateTooLarge { .. } => 0,
        };
        let pickle = self
            .attempt_dir(step, attempt)?
            .join("state")
            .join(crate::sandbox::state::STATE_FILE);
        let state = if output.state.is_some() && pickle.is_file() {
            Some(super::sha256_file(&pickle)?)
        } else {
            None
        };
        self.mark_done(
            step,
            DoneStep {
                attempt,
                key: cache_key(script, input_hashes, image),
                outputs,
                exit_code,
                state,
            },
        )
    }

    /// What a finished step printed (empty when it printed nothing or is not done).
    /// Terminal escapes are removed: this text reaches a model and the reports.
    fn stdout_of(&self, step: &str, done: &DoneStep) -> String {
        let path = self.output_path(step, done.attempt, "");
        let stdout = path
            .parent()
            .and_then(|dir| std::fs::read_to_string(dir.join("stdout")).ok())
            .unwrap_or_default();
        crate::text::strip_escapes(&stdout)
    }

    /// What `step`'s direct dependencies left it: the tail of what each printed, the files
    /// of theirs it reads and the variables it gets from them, described.
    pub fn upstream(&self, plan: &Plan, step: &Step) -> Vec<Upstream> {
        let state = self.state();
        let mut inherited: BTreeMap<String, crate::run::vars::Inherited> =
            self.inherited(plan, step).into_iter().collect();
        step.depends_on
            .iter()
            .filter_map(|dep| {
                let dep_step = plan.steps.iter().find(|s| &s.id == dep)?;
                let done = state.done.get(dep)?;
                let files = step
                    .reads
                    .iter()
                    .filter(|f| dep_step.writes.contains(f))
                    .map(|f| {
                        let path = self.output_path(dep, done.attempt, f);
                        match crate::profile::profile(&path) {
                            Ok(profile) => crate::profile::render(&profile),
                            Err(_) => format!("/data/{f}\n"),
                        }
                    })
                    .collect();
                Some(Upstream {
                    step: dep.clone(),
                    title: dep_step.title.clone(),
                    stdout_tail: tail_chars(&self.stdout_of(dep, done), UPSTREAM_TAIL),
                    files,
                    state: inherited.remove(dep).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// What the finished steps of `plan` printed, and their small text files, for the answer.
    pub fn printed(&self, plan: Option<&Plan>) -> Printed {
        let state = self.state();
        let mut printed = Printed::default();
        for step in plan.map(|p| p.steps.as_slice()).unwrap_or_default() {
            let Some(done) = state.done.get(&step.id) else {
                continue;
            };
            let stdout = self.stdout_of(&step.id, done);
            printed.text.push_str(&stdout);
            printed.text.push('\n');
            let files: Vec<&String> = done.outputs.keys().collect();
            let mut text = stdout;
            if !files.is_empty() {
                let names: Vec<&str> = files.iter().map(|f| f.as_str()).collect();
                text.push_str(&format!("\n(files: {})", names.join(", ")));
            }
            // A step that wrote its result to a small file and printed nothing still gives
            // the answer something to read.
            let dir = self.output_path(&step.id, done.attempt, "");
            for (name, content) in small_text_files(&dir, &files) {
                text.push_str(&format!("\n(file {name}:\n{content})"));
                printed.text.push_str(&content);
                printed.text.push('\n');
            }
            printed.results.push((step.id.clone(), text));
        }
        printed
    }
}

/// The content of a step's small text outputs (CSV, TSV, TXT, JSON up to [`SMALL_FILE`]
/// bytes), by name.
fn small_text_files(dir: &Path, names: &[&String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            [".csv", ".tsv", ".txt", ".json"]
                .iter()
                .any(|e| lower.ends_with(e))
        })
        .filter_map(|name| {
            let path = dir.join(name.as_str());
            let small =
                std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= SMALL_FILE);
            let content = std::fs::read_to_string(&path).ok().filter(|_| small)?;
            // Shown to the model and to people: no terminal escapes.
            let content = crate::text::strip_escapes(content.trim_end());
            Some((name.to_string(), content))
        })
        .take(SMALL_FILES_PER_STEP)
        .collect()
}

fn tail_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]\n{}", &text[start..])
}
