//! The warm container: a started script container waiting on stdin. Running it hands the
//! script over, streams the output under the deadline, reads the status from the engine and
//! harvests the output folder through the holder container.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::capture::Capture;
use super::cleanup::Cleanup;
use super::harvest::{self, Caps};
use super::policy::{OUT_DIR, Policy};
use super::{Output, Status, Warm};
use crate::error::{Error, Result};

/// Whether the script container may run.
pub(super) enum WarmState {
    /// Started and attached: it waits for the script.
    Ready(bollard::container::AttachContainerResults),
    /// The engine did not apply the policy as asked (why): it never starts.
    Rejected(String),
}

/// A started container waiting for its script on stdin.
pub struct DockerWarm {
    pub(super) state: WarmState,
    /// The runner's header line (state to load and save), sent before the script.
    pub(super) header: Option<String>,
    /// What happens to the script's variables.
    pub(super) io: super::state::StateIo,
    pub(super) cleanup: Cleanup,
    /// The script container's id.
    pub(super) script: String,
    /// The holder container's id.
    pub(super) holder: String,
    pub(super) policy: Policy,
    pub(super) out_dir: PathBuf,
    pub(super) prepared: Duration,
}

impl DockerWarm {
    /// How long creating and starting took.
    pub fn prepared(&self) -> Duration {
        self.prepared
    }
}

impl Warm for DockerWarm {
    async fn run(self, script: &str) -> Result<Output> {
        let DockerWarm {
            state,
            header,
            io,
            cleanup,
            script: id,
            holder,
            policy,
            out_dir,
            prepared: _,
        } = self;
        let started = Instant::now();
        let attached = match state {
            WarmState::Rejected(why) => {
                drop(cleanup);
                return Ok(Output {
                    status: Status::PolicyRejected(why),
                    stdout: String::new(),
                    stderr: String::new(),
                    stdout_bytes: 0,
                    stderr_bytes: 0,
                    artifacts: Vec::new(),
                    start: Duration::ZERO,
                    run: started.elapsed(),
                    state: None,
                });
            }
            WarmState::Ready(attached) => attached,
        };
        let outcome = drive(
            &cleanup.docker,
            &id,
            &holder,
            &policy,
            &out_dir,
            attached,
            &format!("{}{script}", header.unwrap_or_default()),
        )
        .await;
        // Removal goes on in the background: the result is known already.
        drop(cleanup);
        let mut output = outcome?;
        // The runner's state folder came back with the other files: take it out.
        let settled = super::state::settle(&out_dir, output.artifacts, output.status, &io)
            .map_err(Error::io("moving the script's state"))?;
        output.status = settled.status;
        output.artifacts = settled.artifacts;
        output.state = settled.state;
        output.run = started.elapsed();
        Ok(output)
    }
}

/// Hand the script over, stream the output under the deadline, read the status, harvest.
async fn drive(
    docker: &Docker,
    id: &str,
    holder: &str,
    policy: &Policy,
    out_dir: &Path,
    attached: bollard::container::AttachContainerResults,
    script: &str,
) -> Result<Output> {
    let bollard::container::AttachContainerResults {
        mut output,
        mut input,
    } = attached;
    let handed = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + policy.timeout;
    // Ask the engine to report the exit from the start, so the answer is ready when the
    // output stream ends instead of costing another round trip then.
    let wait = {
        let (docker, id) = (docker.clone(), id.to_string());
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        tokio::spawn(async move { docker.wait_container(&id, Some(options)).next().await })
    };
    let mut stdout = Capture::new(policy.capture_bytes);
    let mut stderr = Capture::new(policy.capture_bytes);
    let mut forced = None;

    // Write the script and close stdin; a script bigger than the pipe buffer is written while
    // the output is read, so neither side can block the other.
    let feed = async {
        input.write_all(script.as_bytes()).await?;
        input.shutdown().await
    };
    let read = async {
        loop {
            tokio::select! {
                frame = output.next() => match frame {
                    Some(Ok(LogOutput::StdOut { message })) => stdout.push(&message),
                    Some(Ok(LogOutput::StdErr { message })) => stderr.push(&message),
                    Some(Ok(LogOutput::StdIn { .. } | LogOutput::Console { .. })) => {}
                    Some(Err(err)) => {
                        tracing::debug!(%err, "attach stream ended with an error");
                        break;
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    forced = Some(Status::TimedOut);
                    break;
                }
            }
            if stdout.total() + stderr.total() > policy.stream_ceiling {
                forced = Some(Status::OutputLimit);
                break;
            }
        }
    };
    let (fed, ()) = tokio::join!(
        async {
            // A script that never reads stdin must not hold the feed up past the deadline.
            tokio::time::timeout_at(deadline, feed).await
        },
        read
    );
    if let Ok(Err(err)) = fed {
        // The container may have exited before reading all of stdin; that is its business.
        tracing::debug!(%err, "writing the script to stdin failed");
    }
    tracing::debug!(elapsed = ?handed.elapsed(), "output stream ended");
    // Close the attach connection before waiting: the engine does not finish a container's
    // exit while its output copier is blocked on a reader that stopped reading.
    drop(output);
    drop(input);
    if forced.is_some() {
        kill(docker, id).await;
    }

    // The attach stream can end a moment before the engine records the exit. A wait that
    // answered (an error included: bollard reports a non-zero exit as one) means the container
    // stopped; nothing can write to the output folder any more.
    let abort = wait.abort_handle();
    let stopped = matches!(
        tokio::time::timeout(Duration::from_secs(10), wait).await,
        Ok(Ok(Some(
            Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. })
        )))
    );
    abort.abort();
    tracing::debug!(elapsed = ?handed.elapsed(), stopped, "exit known");
    let caps = Caps {
        bytes: policy.out_bytes,
        files: policy.out_files,
        depth: policy.out_depth,
    };
    let inspect = async {
        docker
            .inspect_container(id, None)
            .await
            .map(|c| c.state.unwrap_or_default())
    };
    let (state, harvested) = if stopped {
        // Stopped: the status and the harvest do not depend on each other.
        let (state, harvested) = tokio::join!(inspect, harvest_from(docker, holder, out_dir, caps));
        let state = state?;
        if state.running == Some(true) {
            // Reported stopped, yet running: trust neither the status nor the files.
            kill(docker, id).await;
            return Err(Error::EngineContradiction(format!(
                "it reported container {id} stopped while it still ran"
            )));
        }
        (state, harvested?)
    } else {
        let state = inspect.await?;
        if state.running == Some(true) {
            kill(docker, id).await;
        }
        (state, harvest_from(docker, holder, out_dir, caps).await?)
    };
    // Status comes from the engine, never from what the script printed.
    // Under gVisor the host's OOM killer may take the sandbox's own kernel, which the engine
    // does not always flag: a SIGKILL that planbox did not send (forced is unset) is the
    // memory limit's.
    let killed_unasked = policy.under_gvisor() && state.exit_code == Some(137);
    let mut status = forced.unwrap_or(if state.oom_killed == Some(true) || killed_unasked {
        Status::OutOfMemory
    } else {
        Status::Exited(state.exit_code.unwrap_or(-1))
    });

    tracing::debug!(elapsed = ?handed.elapsed(), "harvested");
    let artifacts = match harvested {
        Ok(artifacts) => artifacts,
        Err(why) => {
            if matches!(status, Status::Exited(_)) {
                status = Status::ArtifactRejected(why);
            }
            Vec::new()
        }
    };
    Ok(Output {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
        stdout_bytes: stdout.total(),
        stderr_bytes: stderr.total(),
        artifacts,
        start: Duration::ZERO,
        run: Duration::ZERO,
        state: None,
    })
}

/// The size tmpfs reports for an empty folder.
const EMPTY_TMPFS_DIR: i64 = 40;

/// Read the output folder through the holder (which keeps the tmpfs volume mounted after the
/// script's container stopped) into `out_dir`.
async fn harvest_from(
    docker: &Docker,
    holder: &str,
    out_dir: &Path,
    caps: Caps,
) -> Result<std::result::Result<Vec<super::Artifact>, harvest::Rejection>> {
    // The engine's stat of the folder is far cheaper than an archive of it; on tmpfs an empty
    // folder has size 40 (two 20-byte entries), so a script that wrote nothing costs no archive.
    let stat = docker
        .get_container_archive_info(
            holder,
            Some(
                ContainerArchiveInfoOptionsBuilder::new()
                    .path(OUT_DIR)
                    .build(),
            ),
        )
        .await?;
    tracing::debug!(size = stat.size, "output folder stat");
    if stat.size == EMPTY_TMPFS_DIR {
        std::fs::create_dir_all(out_dir)
            .map_err(Error::io(format!("creating {}", out_dir.display())))?;
        return Ok(Ok(Vec::new()));
    }
    let options = DownloadFromContainerOptionsBuilder::new()
        .path(OUT_DIR)
        .build();
    let mut stream = docker.download_from_container(holder, Some(options));
    let spool = tempfile::tempfile().map_err(Error::io("creating a spool file for the harvest"))?;
    let mut spool = tokio::fs::File::from_std(spool);
    // Tar adds a 512-byte header per entry and padding; anything past this is not a tar of a
    // folder within the caps.
    let limit = caps.bytes + (caps.files as u64 + 16) * 1536 + 1024 * 1024;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        if written > limit {
            return Ok(Err(format!(
                "the output folder's archive exceeds {limit} bytes"
            )));
        }
        spool
            .write_all(&chunk)
            .await
            .map_err(Error::io("spooling the harvest"))?;
    }
    let mut spool = spool.into_std().await;
    let out_dir = out_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        spool.rewind()?;
        harvest::unpack(std::io::BufReader::new(spool), &out_dir, caps)
    })
    .await
    .map_err(|err| Error::Io {
        context: "harvest task".into(),
        source: std::io::Error::other(err),
    })?
    .map_err(Error::io("writing harvested files"))
}

async fn kill(docker: &Docker, id: &str) {
    if let Err(err) = docker
        .kill_container(id, None::<bollard::query_parameters::KillContainerOptions>)
        .await
    {
        tracing::debug!(%err, id, "kill failed (the container may have exited already)");
    }
}
