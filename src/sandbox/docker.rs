//! The Docker sandbox: one fresh container per script, started before the script is known
//! (it waits on stdin), every setting checked after creation before it starts. Running the
//! warm container is in `warm`, removal in `cleanup`, ownership and reaping in
//! [`super::owner`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::AttachContainerOptionsBuilder;

use super::cleanup::{self, Cleanup, Live, Pending};
use super::owner;
use super::policy::{DATA_DIR, ENV, OUT_DIR, Policy};
use super::warm::WarmState;
use super::{Job, Sandbox};
use crate::error::{Error, Result};

pub use super::engine::connect;
pub use super::owner::{LABEL, OWNER_LABEL, owner_alive};
pub use super::warm::DockerWarm;

/// How inputs and dependencies' states reach a script's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Bind-mounted read-only from this machine's files: the engine must see them.
    Bind,
    /// Copied through the engine's archive API into volumes mounted read-only: for an
    /// engine on another machine, or one that must not see planbox's files.
    Copy,
}

impl Delivery {
    /// Bind for an engine on this machine's socket, unless `no_bind`; copy otherwise.
    pub fn for_host(host: &str, no_bind: bool) -> Delivery {
        if no_bind || !host.starts_with("unix://") {
            Delivery::Copy
        } else {
            Delivery::Bind
        }
    }
}

/// Runs scripts in Docker containers under a [`Policy`].
#[derive(Clone)]
pub struct DockerSandbox {
    docker: Docker,
    policy: Policy,
    image: String,
    owner: String,
    delivery: Delivery,
    live: Arc<Mutex<Live>>,
    pending: Pending,
}

impl DockerSandbox {
    /// A sandbox using `image` (see [`super::image::tag`]) under `policy`. Fails when the
    /// image is missing or the policy is out of range.
    pub async fn new(docker: Docker, policy: Policy, image: String) -> Result<Self> {
        policy.validate()?;
        if !super::image::exists(&docker, &image).await? {
            return Err(Error::ImageMissing(image));
        }
        if let Some(runtime) = &policy.runtime {
            super::engine::require_runtime(&docker, runtime).await?;
        }
        Ok(DockerSandbox {
            docker,
            policy,
            image,
            owner: owner::owner_id(),
            delivery: Delivery::Bind,
            live: Arc::default(),
            pending: Arc::default(),
        })
    }

    /// The same sandbox, delivering inputs and states as `delivery` says (bind mounts by
    /// default).
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// How inputs reach the containers.
    pub fn delivery(&self) -> Delivery {
        self.delivery
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
        owner::reap(&self.docker, &self.owner).await
    }

    /// Wait for the background removals of finished runs.
    pub async fn settle(&self) {
        cleanup::settle(&self.pending).await;
    }

    /// Remove everything this sandbox created and still holds: the Ctrl-C path.
    pub async fn shutdown(&self) {
        cleanup::shutdown(&self.docker, &self.live, &owner::filter(&self.owner)).await;
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

impl DockerSandbox {
    /// Create a labelled volume, tracked before it is asked for (see `create`) and removed
    /// with `cleanup`.
    async fn create_volume(
        &self,
        cleanup: &mut Cleanup,
        name: &str,
        labels: &std::collections::HashMap<String, String>,
        driver_opts: Option<std::collections::HashMap<String, String>>,
    ) -> Result<()> {
        self.live
            .lock()
            .expect("live set poisoned")
            .volumes
            .insert(name.to_string());
        cleanup.volumes.push(name.to_string());
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                driver: Some("local".into()),
                driver_opts,
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Copy the inputs ((host path, file name)) and states ((host path, container path))
    /// into fresh volumes through a loader container that never starts; the (volume,
    /// container path) pairs to mount read-only in the script's container.
    async fn copy_in(
        &self,
        cleanup: &mut Cleanup,
        stem: &str,
        labels: &std::collections::HashMap<String, String>,
        inputs: Vec<(String, String)>,
        states: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>> {
        use super::state::STATE_MOUNT_DIR;
        use super::upload::{Upload, upload};
        let state_prefix = format!("{STATE_MOUNT_DIR}/");
        let groups = [
            (
                format!("planbox-data-{stem}"),
                DATA_DIR,
                inputs
                    .into_iter()
                    .map(|(source, name)| Upload {
                        source: source.into(),
                        name,
                    })
                    .collect::<Vec<_>>(),
            ),
            (
                format!("planbox-state-{stem}"),
                STATE_MOUNT_DIR,
                states
                    .into_iter()
                    .map(|(source, target)| Upload {
                        source: source.into(),
                        name: target.trim_start_matches(&state_prefix).to_string(),
                    })
                    .collect(),
            ),
        ];
        let groups: Vec<_> = groups
            .into_iter()
            .filter(|(_, _, files)| !files.is_empty())
            .collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mounts: Vec<(String, String)> = groups
            .iter()
            .map(|(volume, target, _)| (volume.clone(), target.to_string()))
            .collect();
        for (volume, _) in &mounts {
            self.create_volume(cleanup, volume, labels, None).await?;
        }
        let loader = format!("planbox-{stem}-loader");
        cleanup.containers.push(loader.clone());
        self.create(
            &loader,
            ContainerCreateBody {
                image: Some(self.image.clone()),
                cmd: Some(vec!["true".into()]),
                labels: Some(labels.clone()),
                network_disabled: Some(true),
                host_config: Some(self.policy.loader_config(&mounts)),
                ..Default::default()
            },
        )
        .await?;
        for (_, target, files) in groups {
            upload(&self.docker, &loader, target, files).await?;
        }
        Ok(mounts)
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
        let mut states = Vec::new();
        for (path, target) in job.state.mounts() {
            states.push((state_source(&path)?, target));
        }
        check_out_dir(&job.out_dir)?;
        let started = Instant::now();
        let labels = owner::labels(&self.owner, &job.run_id);
        let stem = unique();
        let volume = format!("planbox-out-{stem}");
        let mut cleanup = Cleanup {
            docker: self.docker.clone(),
            live: self.live.clone(),
            pending: self.pending.clone(),
            containers: Vec::new(),
            volumes: Vec::new(),
        };
        self.create_volume(
            &mut cleanup,
            &volume,
            &labels,
            Some(self.policy.out_volume_options()),
        )
        .await?;
        let (files, copied) = match self.delivery {
            Delivery::Bind => {
                let mut files: Vec<(String, String)> = inputs
                    .into_iter()
                    .map(|(source, name)| (source, format!("{DATA_DIR}/{name}")))
                    .collect();
                files.extend(states);
                (files, Vec::new())
            }
            Delivery::Copy => {
                let copied = self
                    .copy_in(&mut cleanup, &stem, &labels, inputs, states)
                    .await?;
                (Vec::new(), copied)
            }
        };

        let script_host = self.policy.host_config_with(&files, &copied, &volume);
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
        let (holder_name, script_name) = (
            format!("planbox-{stem}-holder"),
            format!("planbox-{stem}-script"),
        );
        cleanup
            .containers
            .extend([holder_name.clone(), script_name.clone()]);
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
                header: None,
                io: job.state.clone(),
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
            header: job.state.header(),
            io: job.state.clone(),
            cleanup,
            script,
            holder,
            policy: self.policy.clone(),
            out_dir: job.out_dir.clone(),
            prepared: started.elapsed(),
        })
    }
}

/// A dependency's state file as a mount source: a regular file, by absolute UTF-8 path.
fn state_source(path: &Path) -> Result<String> {
    let bad = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let meta =
        std::fs::metadata(path).map_err(|err| bad(format!("a dependency's state: {err}")))?;
    if !meta.is_file() {
        return Err(bad("a dependency's state is not a regular file".into()));
    }
    let absolute = std::fs::canonicalize(path).map_err(|err| bad(err.to_string()))?;
    absolute
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| bad("the path is not UTF-8".into()))
}

/// The harvest target must be new or empty: a harvest never overwrites or deletes a
/// user's files.
fn check_out_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::OutputFolderNotEmpty(dir.to_path_buf())),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::Io {
            context: format!("reading output folder {}", dir.display()),
            source: err,
        }),
    }
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
