//! Fakes for the agent loop: a sandbox that plays back queued script results and a model that
//! plays back queued replies. Both record what they were asked and fail loudly when they run
//! dry, so a test states exactly how many scripts ran and how many calls were made.

#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use planbox::llm::{Llm, Reply, Request, Usage};
use planbox::sandbox::state::{self, StateIo};
use planbox::sandbox::{Artifact, Job, Output, Sandbox, Status, Warm};

/// What one script run gives back.
#[derive(Debug, Clone)]
pub struct Run {
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
    /// Files the script "wrote" into its output folder.
    pub files: Vec<(String, Vec<u8>)>,
    /// The runner's description of the variables the script left (JSON), if any.
    pub state: Option<String>,
}

impl Run {
    /// A script that exited 0 after printing `stdout`.
    pub fn prints(stdout: &str) -> Run {
        Run {
            status: Status::Exited(0),
            stdout: stdout.into(),
            stderr: String::new(),
            files: Vec::new(),
            state: None,
        }
    }

    /// A script that raised: exit 1 with this error output.
    pub fn raises(stderr: &str) -> Run {
        Run {
            status: Status::Exited(1),
            stdout: String::new(),
            stderr: stderr.into(),
            files: Vec::new(),
            state: None,
        }
    }

    /// The run also left variables, as the runner describes them (a JSON object).
    pub fn leaves(mut self, description: serde_json::Value) -> Run {
        self.state = Some(description.to_string());
        self
    }

    /// The run also wrote `name` with `content`.
    pub fn writes(mut self, name: &str, content: &str) -> Run {
        self.files.push((name.into(), content.as_bytes().to_vec()));
        self
    }

    /// The run also wrote `name` with these bytes.
    pub fn writes_bytes(mut self, name: &str, content: &[u8]) -> Run {
        self.files.push((name.into(), content.to_vec()));
        self
    }
}

/// One script the fake sandbox ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// File names mounted under /data.
    pub inputs: Vec<String>,
    /// The steps whose states were loaded, in load order.
    pub states: Vec<String>,
    pub script: String,
}

#[derive(Default)]
struct Played {
    queue: VecDeque<Run>,
    ran: Vec<Ran>,
    prepared: usize,
}

/// A sandbox that plays back queued runs, in order.
#[derive(Clone, Default)]
pub struct FakeSandbox(Arc<Mutex<Played>>);

impl FakeSandbox {
    pub fn new(runs: impl IntoIterator<Item = Run>) -> Self {
        let sandbox = FakeSandbox::default();
        sandbox.0.lock().unwrap().queue.extend(runs);
        sandbox
    }

    /// Every script run so far.
    pub fn ran(&self) -> Vec<Ran> {
        self.0.lock().unwrap().ran.clone()
    }

    /// Containers prepared (run or dropped unused).
    pub fn prepared(&self) -> usize {
        self.0.lock().unwrap().prepared
    }

    /// Runs still queued.
    pub fn left(&self) -> usize {
        self.0.lock().unwrap().queue.len()
    }
}

pub struct FakeWarm {
    played: Arc<Mutex<Played>>,
    inputs: Vec<PathBuf>,
    out_dir: PathBuf,
    state: StateIo,
}

impl Sandbox for FakeSandbox {
    type Warm = FakeWarm;

    async fn prepare(&self, job: &Job) -> planbox::Result<FakeWarm> {
        self.0.lock().unwrap().prepared += 1;
        Ok(FakeWarm {
            played: self.0.clone(),
            inputs: job.inputs.clone(),
            out_dir: job.out_dir.clone(),
            state: job.state.clone(),
        })
    }
}

impl Warm for FakeWarm {
    async fn run(self, script: &str) -> planbox::Result<Output> {
        let run = {
            let mut played = self.played.lock().unwrap();
            played.ran.push(Ran {
                inputs: self
                    .inputs
                    .iter()
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect(),
                states: self
                    .state
                    .load
                    .iter()
                    .map(|(_, step)| step.clone())
                    .collect(),
                script: script.into(),
            });
            played.queue.pop_front()
        };
        let run =
            run.unwrap_or_else(|| panic!("the fake sandbox ran dry; it was given:\n{script}"));
        std::fs::create_dir_all(&self.out_dir).unwrap();
        let mut artifacts = Vec::new();
        for (name, content) in &run.files {
            std::fs::write(self.out_dir.join(name), content).unwrap();
            artifacts.push(Artifact {
                path: name.clone(),
                size: content.len() as u64,
            });
        }
        // The runner's folder, as a real harvest brings it back, settled the same way.
        if let Some(description) = &run.state {
            let dir = self.out_dir.join(state::STATE_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(state::STATE_FILE), b"pickled").unwrap();
            std::fs::write(dir.join(state::DESCRIPTION_FILE), description).unwrap();
            for name in [state::STATE_FILE, state::DESCRIPTION_FILE] {
                artifacts.push(Artifact {
                    path: format!("{}/{name}", state::STATE_DIR),
                    size: 1,
                });
            }
        }
        let settled = state::settle(&self.out_dir, artifacts, run.status, &self.state).unwrap();
        Ok(Output {
            status: settled.status,
            stdout_bytes: run.stdout.len() as u64,
            stderr_bytes: run.stderr.len() as u64,
            stdout: run.stdout,
            stderr: run.stderr,
            artifacts: settled.artifacts,
            start: Duration::ZERO,
            run: Duration::ZERO,
            state: settled.state,
        })
    }
}

/// One queued answer of the scripted model.
pub enum Scripted {
    /// A reply with this text.
    Reply(String),
    /// The call fails with this error.
    Fail(fn() -> planbox::Error),
}

/// A model that answers with queued replies, in order, and records every request.
#[derive(Default)]
pub struct ScriptedModel {
    replies: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Request>>,
    usage: Mutex<Vec<u64>>,
}

impl ScriptedModel {
    pub fn new<S: Into<String>>(replies: impl IntoIterator<Item = S>) -> Self {
        Self::answering(replies.into_iter().map(|r| Scripted::Reply(r.into())))
    }

    /// A model that gives these answers, errors included.
    pub fn answering(answers: impl IntoIterator<Item = Scripted>) -> Self {
        ScriptedModel {
            replies: Mutex::new(answers.into_iter().collect()),
            requests: Mutex::default(),
            usage: Mutex::default(),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The last user message of request `n` (from 0).
    pub fn asked(&self, n: usize) -> String {
        let requests = self.requests.lock().unwrap();
        requests[n].messages.last().unwrap().content.clone()
    }

    /// Tokens the first `calls` replies used in all, as a meter counts them.
    pub fn tokens_after(&self, calls: usize) -> u64 {
        let usage = self.usage.lock().unwrap();
        assert!(usage.len() >= calls, "only {} calls were made", usage.len());
        usage[..calls].iter().sum()
    }

    /// Replies still queued.
    pub fn left(&self) -> usize {
        self.replies.lock().unwrap().len()
    }
}

impl Llm for ScriptedModel {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        self.requests.lock().unwrap().push(request.clone());
        let answer = self.replies.lock().unwrap().pop_front().unwrap_or_else(|| {
            let asked: Vec<&str> = request
                .messages
                .iter()
                .map(|m| m.content.as_str())
                .collect();
            panic!(
                "the scripted model ran dry; it was asked:\n{}",
                asked.join("\n---\n")
            )
        });
        let text = match answer {
            Scripted::Reply(text) => text,
            Scripted::Fail(error) => return Err(error()),
        };
        let usage = Usage::estimate(request, &text);
        self.usage.lock().unwrap().push(usage.total());
        Ok(Reply {
            usage,
            text,
            model: "scripted".into(),
            mode: None,
            latency: Duration::ZERO,
        })
    }
}

/// A reply holding `script` as a fenced Python block.
pub fn code(script: &str) -> String {
    format!("```python\n{script}\n```")
}
