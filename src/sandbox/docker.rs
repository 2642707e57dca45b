//! The Docker sandbox: one fresh container per script, started before the script is known
//! (it waits on stdin), every setting checked after creation, output read back through a
//! holder container, and every exit path removing what it made.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ContainerArchiveInfoOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::capture::Capture;
use super::harvest::{self, Caps};
use super::policy::{ENV, OUT_DIR, Policy};
use super::{Job, Output, Sandbox, Status, Warm};
use crate::error::{Error, Result};

/// Label on everything planbox creates.
pub const LABEL: &str = "planbox";
/// Label naming the process that owns a container: `host:pid:start-time`.
pub const OWNER_LABEL: &str = "planbox.owner";
const RUN_LABEL: &str = "planbox.run";
const CREATED_LABEL: &str = "planbox.created";

/// What this process has created and not yet removed, so a signal handler can clean up.
#[derive(Debug, Default)]
struct Live {
    containers: HashSet<String>,
    volumes: HashSet<String>,
}

/// Runs scripts in Docker containers under a [`Policy`].
#[derive(Clone)]
pub struct DockerSandbox {
    docker: Docker,
    policy: Policy,
    image: String,
    owner: String,
    live: Arc<Mutex<Live>>,
    pending: Pending,
}

/// Connect to the engine named by `DOCKER_HOST` (or the default socket) and agree on an API
/// version it speaks: the engine may be older than bollard's default.
pub async fn connect() -> Result<Docker> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = |err: bollard::errors::Error| {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        let reason = if text.to_lowercase().contains("permission denied") {
            "permission denied on the socket: add your user to the docker group (then log in again) or run with sudo".to_string()
        } else {
            format!("{text}; start the engine (systemctl start docker) or point DOCKER_HOST at it")
        };
        Error::DockerUnreachable {
            host: host.clone(),
            reason,
        }
    };
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    docker
        .with_timeout(Duration::from_secs(120))
        .negotiate_version()
        .await
        .map_err(unreachable)
}

impl DockerSandbox {
    /// A sandbox using `image` (see [`super::image::tag`]) under `policy`. Fails when the
    /// image is missing or the policy is out of range.
    pub async fn new(docker: Docker, policy: Policy, image: String) -> Result<Self> {
        policy.validate()?;
        if !super::image::exists(&docker, &image).await? {
            return Err(Error::ImageMissing(image));
        }
        Ok(DockerSandbox {
            docker,
            policy,
            image,
            owner: owner_id(),
            live: Arc::default(),
            pending: Arc::default(),
        })
    }

    /// The engine connection.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Remove containers and volumes that planbox labelled and whose owner process is gone
    /// (same host), or that are older than the longest possible run (other hosts). Returns
    /// how many containers were removed.
    pub async fn reap(&self) -> Result<usize> {
        reap(&self.docker, &self.owner).await
    }

    /// Wait for the background removals of finished runs.
    pub async fn settle(&self) {
        loop {
            let tasks: Vec<_> =
                std::mem::take(&mut *self.pending.lock().expect("pending poisoned"));
            if tasks.is_empty() {
                return;
            }
            futures_util::future::join_all(tasks).await;
        }
    }

    /// Remove everything this sandbox created and still holds: the Ctrl-C path.
    pub async fn shutdown(&self) {
        let (containers, volumes): (Vec<String>, Vec<String>) = {
            let live = self.live.lock().expect("live set poisoned");
            (
                live.containers.iter().cloned().collect(),
                live.volumes.iter().cloned().collect(),
            )
        };
        self.remove(&containers, &volumes).await;
        // A create request in flight when the work was dropped can land after the removal
        // above: sweep what the engine holds under this owner until it stays empty.
        let mut quiet = 0;
        for _ in 0..SHUTDOWN_SWEEPS {
            match self.sweep_own().await {
                Ok(0) => quiet += 1,
                Ok(_) => quiet = 0,
                Err(err) => {
                    // An engine that cannot list will not remove either: stop here rather
                    // than wait out its timeouts; the next start reaps what is left.
                    tracing::warn!(%err, "listing this process's containers failed");
                    break;
                }
            }
            if quiet == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Remove every container and volume the engine labels as this process's; how many.
    async fn sweep_own(&self) -> Result<usize> {
        let owner = format!("{OWNER_LABEL}={}", self.owner);
        let filters = HashMap::from([("label", vec![owner.as_str()])]);
        let containers: Vec<String> = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        let volumes: Vec<String> = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        self.remove(&containers, &volumes).await;
        Ok(containers.len() + volumes.len())
    }

    /// Remove these containers, then these volumes (a volume goes once its container is gone).
    async fn remove(&self, containers: &[String], volumes: &[String]) {
        remove_all(&self.docker, &self.live, containers, None).await;
        for volume in volumes {
            remove_volume(&self.docker, &self.live, volume).await;
        }
    }

    fn labels(&self, run_id: &str) -> HashMap<String, String> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        HashMap::from([
            (LABEL.to_string(), "1".to_string()),
            (OWNER_LABEL.to_string(), self.owner.clone()),
            (RUN_LABEL.to_string(), run_id.to_string()),
            (CREATED_LABEL.to_string(), created.to_string()),
        ])
    }

    /// Create a container under `name`, recorded as live before the request is sent: a
    /// signal or a dropped future between the engine's create and our bookkeeping must not
    /// leave an untracked container.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        self.live
            .lock()
            .expect("live set poisoned")
            .containers
            .insert(name.to_string());
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(name)
            .build();
        self.docker.create_container(Some(options), body).await?;
        Ok(name.to_string())
    }
}

/// Check the inputs and turn them into (absolute host path, file name) mounts.
fn input_mounts(inputs: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut seen = HashSet::new();
    let mut mounts = Vec::new();
    for path in inputs {
        let bad = |reason: &str| Error::Input {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => bad("no such file"),
            std::io::ErrorKind::PermissionDenied => bad("permission denied"),
            _ => bad(&err.to_string()),
        })?;
        if meta.is_dir() {
            return Err(bad("is a directory: pass the files inside it one by one"));
        }
        if !meta.is_file() {
            return Err(bad("is not a regular file"));
        }
        let absolute = std::fs::canonicalize(path).map_err(|err| bad(&err.to_string()))?;
        let name = absolute
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad("the file name is not UTF-8"))?
            .to_string();
        if !seen.insert(name.clone()) {
            return Err(bad(&format!(
                "another input is also named {name}: rename one of them"
            )));
        }
        let source = absolute
            .to_str()
            .ok_or_else(|| bad("the path is not UTF-8"))?
            .to_string();
        mounts.push((source, name));
    }
    Ok(mounts)
}

impl Sandbox for DockerSandbox {
    type Warm = DockerWarm;

    async fn settle(&self) {
        DockerSandbox::settle(self).await;
    }

    async fn prepare(&self, job: &Job) -> Result<DockerWarm> {
        let inputs = input_mounts(&job.inputs)?;
        check_out_dir(&job.out_dir)?;
        let started = Instant::now();
        let labels = self.labels(&job.run_id);
        let volume = format!("planbox-out-{}", unique());
        // Track the volume before asking for it (see `create`).
        self.live
            .lock()
            .expect("live set poisoned")
            .volumes
            .insert(volume.clone());
        let mut cleanup = Cleanup {
            docker: self.docker.clone(),
            live: self.live.clone(),
            pending: self.pending.clone(),
            containers: Vec::new(),
            volume: Some(volume.clone()),
        };
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                driver: Some("local".into()),
                driver_opts: Some(self.policy.out_volume_options()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await?;

        let script_host = self.policy.host_config(&inputs, &volume);
        let holder_host = self.policy.holder_config(&volume);
        let base = ContainerCreateBody {
            image: Some(self.image.clone()),
            user: Some("1000:1000".into()),
            env: Some(ENV.iter().map(ToString::to_string).collect()),
            working_dir: Some(OUT_DIR.into()),
            labels: Some(labels),
            network_disabled: Some(true),
            ..Default::default()
        };
        let script_body = ContainerCreateBody {
            cmd: Some(vec!["/usr/local/bin/planbox-entry".into()]),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            host_config: Some(script_host.clone()),
            ..base.clone()
        };
        let holder_body = ContainerCreateBody {
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            host_config: Some(holder_host.clone()),
            ..base
        };
        let stem = volume.trim_start_matches("planbox-out-");
        let (holder_name, script_name) = (
            format!("planbox-{stem}-holder"),
            format!("planbox-{stem}-script"),
        );
        cleanup.containers = vec![holder_name.clone(), script_name.clone()];
        let (holder, script) = tokio::join!(
            self.create(&holder_name, holder_body),
            self.create(&script_name, script_body)
        );
        let (holder, script) = (holder?, script?);

        // Inspect before starting: the engine may drop or weaken a setting (an old engine, a
        // daemon default, a plugin). A container whose settings differ never starts.
        let mut rejected = None;
        for (id, wanted) in [(&script, &script_host), (&holder, &holder_host)] {
            let actual = self
                .docker
                .inspect_container(id, None)
                .await?
                .host_config
                .unwrap_or_default();
            if let Err(why) = self.policy.check(wanted, &actual) {
                rejected = Some(why);
            }
        }
        if let Some(why) = rejected {
            return Ok(DockerWarm {
                state: WarmState::Rejected(why),
                cleanup,
                script,
                holder,
                policy: self.policy.clone(),
                out_dir: job.out_dir.clone(),
                prepared: started.elapsed(),
            });
        }

        let attach = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        // Attach before start so not a byte of output is missed.
        let attached = self.docker.attach_container(&script, Some(attach)).await?;
        let (a, b) = tokio::join!(
            self.docker.start_container(&holder, None),
            self.docker.start_container(&script, None)
        );
        a?;
        b?;
        Ok(DockerWarm {
            state: WarmState::Ready(attached),
            cleanup,
            script,
            holder,
            policy: self.policy.clone(),
            out_dir: job.out_dir.clone(),
            prepared: started.elapsed(),
        })
    }
}

/// The harvest target must be new or empty: a harvest never overwrites or deletes a
/// user's files.
fn check_out_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::Config(format!(
                "output folder {} is not empty: name a new or empty folder",
                dir.display()
            ))),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::Io {
            context: format!("reading output folder {}", dir.display()),
            source: err,
        }),
    }
}

enum WarmState {
    Ready(bollard::container::AttachContainerResults),
    Rejected(String),
}

/// A started container waiting for its script on stdin.
pub struct DockerWarm {
    state: WarmState,
    cleanup: Cleanup,
    script: String,
    holder: String,
    policy: Policy,
    out_dir: PathBuf,
    prepared: Duration,
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
            script,
        )
        .await;
        // Removal goes on in the background: the result is known already.
        drop(cleanup);
        let mut output = outcome?;
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
            return Err(Error::Config(format!(
                "the engine reported container {id} stopped while it still ran"
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
    let mut status = forced.unwrap_or(if state.oom_killed == Some(true) {
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

/// Removes a warm container's containers and volume: explicitly at the end, or from `Drop`
/// when the future running it was dropped.
/// Removal runs on a spawned task, off the path to the result; [`DockerSandbox::settle`]
/// waits for every such task.
struct Cleanup {
    docker: Docker,
    live: Arc<Mutex<Live>>,
    pending: Pending,
    containers: Vec<String>,
    volume: Option<String>,
}

/// Removal tasks still running.
type Pending = Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.containers.is_empty() && self.volume.is_none() {
            return;
        }
        let containers = std::mem::take(&mut self.containers);
        let volume = self.volume.take();
        let (docker, live) = (self.docker.clone(), self.live.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn(async move {
                    remove_all(&docker, &live, &containers, volume.as_deref()).await;
                });
                let mut pending = self.pending.lock().expect("pending poisoned");
                pending.retain(|t| !t.is_finished());
                pending.push(task);
            }
            // No runtime left: the reaper of the next start removes them.
            Err(_) => tracing::warn!(?containers, "could not remove containers: no async runtime"),
        }
    }
}

async fn remove_all(
    docker: &Docker,
    live: &Arc<Mutex<Live>>,
    containers: &[String],
    volume: Option<&str>,
) {
    let removals = containers
        .iter()
        .map(|id| remove_container(docker, live, id));
    futures_util::future::join_all(removals).await;
    if let Some(volume) = volume {
        remove_volume(docker, live, volume).await;
    }
}

/// Run a removal until the engine says the thing is gone (success or 404), retrying while
/// it answers 409: another cleanup (a dropped future's, or the signal handler's) is removing
/// it, or a volume is still in use by a container being removed. True when it is gone.
async fn remove_until_gone<F, Fut>(what: &str, mut remove: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), bollard::errors::Error>>,
{
    use bollard::errors::Error::DockerResponseServerError;
    for attempt in 0..50 {
        match remove().await {
            Ok(())
            | Err(DockerResponseServerError {
                status_code: 404, ..
            }) => return true,
            Err(DockerResponseServerError {
                status_code: 409, ..
            }) if attempt < 49 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => {
                tracing::warn!(%err, what, "removal failed");
                return false;
            }
        }
    }
    false
}

async fn remove_container(docker: &Docker, live: &Arc<Mutex<Live>>, id: &str) {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    if remove_until_gone(id, || docker.remove_container(id, Some(options.clone()))).await {
        live.lock()
            .expect("live set poisoned")
            .containers
            .remove(id);
    }
}

async fn remove_volume(docker: &Docker, live: &Arc<Mutex<Live>>, volume: &str) {
    let options = RemoveVolumeOptionsBuilder::new().force(true).build();
    if remove_until_gone(volume, || {
        docker.remove_volume(volume, Some(options.clone()))
    })
    .await
    {
        live.lock()
            .expect("live set poisoned")
            .volumes
            .remove(volume);
    }
}

/// The longest a container can legitimately live: the maximum deadline plus slack.
const MAX_AGE: Duration = Duration::from_secs(600 + 120);

async fn reap(docker: &Docker, me: &str) -> Result<usize> {
    let filters = HashMap::from([("label", vec![OWNER_LABEL])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stale = |labels: &HashMap<String, String>| {
        let owner = labels.get(OWNER_LABEL).map(String::as_str).unwrap_or("");
        let created: u64 = labels
            .get(CREATED_LABEL)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        owner != me && (!owner_alive(owner) || now.saturating_sub(created) > MAX_AGE.as_secs())
    };
    let mut removed = 0;
    let none = Arc::new(Mutex::new(Live::default()));
    for container in docker.list_containers(Some(options)).await? {
        let (Some(id), Some(labels)) = (container.id, container.labels) else {
            continue;
        };
        if stale(&labels) {
            remove_all(docker, &none, std::slice::from_ref(&id), None).await;
            removed += 1;
        }
    }
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    for volume in docker
        .list_volumes(Some(options))
        .await?
        .volumes
        .unwrap_or_default()
    {
        if stale(&volume.labels) {
            remove_volume(docker, &none, &volume.name).await;
        }
    }
    Ok(removed)
}

/// Most owner sweeps on shutdown, 250 ms apart, until two in a row find nothing.
const SHUTDOWN_SWEEPS: usize = 12;

/// `host:pid:start-time` of this process; the start time tells a reused pid apart.
fn owner_id() -> String {
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}",
        hostname(),
        start_time(pid).unwrap_or_default()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the owner process still runs. Owners on another host are judged by age alone.
pub fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return true;
    }
    pid.parse().ok().and_then(start_time).as_deref() == Some(start)
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos:x}-{count}", std::process::id())
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert!(owner_alive(&owner_id()));
        assert!(!owner_alive(&format!("{}:999999999:1", hostname())));
        assert!(!owner_alive("garbage"));
    }

    #[test]
    fn inputs_are_checked_before_any_container() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "x\n1\n").unwrap();
        let mounts = input_mounts(std::slice::from_ref(&file)).unwrap();
        assert_eq!(mounts[0].1, "a.csv");
        let missing = input_mounts(&[dir.path().join("nope.csv")]).unwrap_err();
        assert!(missing.to_string().ends_with("no such file"), "{missing}");
        let folder = input_mounts(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(folder.to_string().contains("is a directory"), "{folder}");
        let twice = input_mounts(&[file.clone(), file]).unwrap_err();
        assert!(twice.to_string().contains("also named a.csv"), "{twice}");
    }

    #[test]
    fn a_non_empty_output_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_out_dir(&dir.path().join("new")).is_ok());
        assert!(check_out_dir(dir.path()).is_ok());
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        assert!(check_out_dir(dir.path()).is_err());
    }
}
