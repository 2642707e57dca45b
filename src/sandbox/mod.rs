//! The sandbox: run one untrusted Python script in a fresh, locked-down container and report
//! what happened as a value, never as an error, unless the machinery itself broke.

pub mod capture;
mod cleanup;
pub mod docker;
pub mod engine;
pub mod harvest;
pub mod image;
pub mod owner;
pub mod policy;
pub mod pool;
pub mod seccomp;
pub mod state;
mod upload;
mod warm;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use docker::{Delivery, DockerSandbox};
pub use policy::Policy;
pub use pool::{EngineSpec, Pool};

use crate::error::Result;

/// How one script ended, read from the engine (`inspect`), never from the script's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Status {
    /// The script ran to its end with this exit code.
    Exited(i64),
    /// The host's wall deadline passed; the container was killed.
    TimedOut,
    /// The kernel killed a process for exceeding the memory limit.
    OutOfMemory,
    /// stdout or stderr went past the hard ceiling; the container was killed.
    OutputLimit,
    /// The output folder held something that is not a plain, bounded file.
    ArtifactRejected(String),
    /// The engine did not apply the policy as asked; the script never started.
    PolicyRejected(String),
    /// The variables the script left pickle to more than a step may keep; none were kept.
    StateTooLarge {
        /// Bytes pickled when the cap was passed.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
}

impl Status {
    /// True only for a clean exit with code 0.
    pub fn success(&self) -> bool {
        matches!(self, Status::Exited(0))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "exited with code {code}"),
            Status::TimedOut => f.write_str("timed out"),
            Status::OutOfMemory => f.write_str("out of memory"),
            Status::OutputLimit => f.write_str("output limit exceeded"),
            Status::ArtifactRejected(why) => write!(f, "artifact rejected: {why}"),
            Status::PolicyRejected(why) => write!(f, "policy rejected: {why}"),
            Status::StateTooLarge { bytes, cap } => write!(
                f,
                "left variables of {} MiB, more than the {} MiB a step may keep",
                bytes.div_ceil(1 << 20),
                cap >> 20
            ),
        }
    }
}

/// One file the script left in its output folder, copied to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the output folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Everything one script run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    /// How it ended.
    pub status: Status,
    /// Captured stdout (head and tail kept past the cap), decoded lossily.
    pub stdout: String,
    /// Captured stderr, likewise.
    pub stderr: String,
    /// Bytes the script wrote to stdout in all, kept or not.
    pub stdout_bytes: u64,
    /// Bytes the script wrote to stderr in all, kept or not.
    pub stderr_bytes: u64,
    /// Files harvested from the output folder, in path order.
    pub artifacts: Vec<Artifact>,
    /// Time to create and start the container(s); zero when it was warm already.
    pub start: Duration,
    /// Time from handing the script over to having the result.
    pub run: Duration,
    /// The variables the script left for the steps after it, described (when the job asked
    /// for them to be saved and the script exited 0).
    pub state: Option<state::Description>,
}

/// What a script may read and where its outputs go.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// Host files mounted read-only under `/data/<file name>`.
    pub inputs: Vec<PathBuf>,
    /// Host folder that receives the harvested output files (created if missing).
    pub out_dir: PathBuf,
    /// Run id written into the containers' labels.
    pub run_id: String,
    /// Variables to load before the script and to save after it.
    pub state: state::StateIo,
}

/// A container that is started and waits for its script on stdin.
pub trait Warm: Send {
    /// Hand the script over, wait for the end, harvest, and clean up.
    fn run(self, script: &str) -> impl Future<Output = Result<Output>> + Send;
}

/// Runs scripts, one fresh container each.
pub trait Sandbox: Send + Sync {
    /// The warm container type.
    type Warm: Warm;
    /// Start a container for `job` that waits for its script (call it while the script is
    /// still being written).
    fn prepare(&self, job: &Job) -> impl Future<Output = Result<Self::Warm>> + Send;
    /// Wait until every container and volume of finished runs is removed (removal runs in
    /// the background, off the path to the result).
    fn settle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Prepare and run in one go.
    fn exec(&self, job: &Job, script: &str) -> impl Future<Output = Result<Output>> + Send {
        async move {
            let start = std::time::Instant::now();
            let warm = self.prepare(job).await?;
            let started = start.elapsed();
            let mut output = warm.run(script).await?;
            output.start = started;
            Ok(output)
        }
    }
}
