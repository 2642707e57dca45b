//! Removing what the sandbox created: the drop guard that removes a run's containers and
//! volume on every exit path, the removals that retry until the engine says a thing is gone,
//! and the shutdown sweep of the Ctrl-C path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};

use crate::error::Result;

/// What this process has created and not yet removed, so a signal handler can clean up.
#[derive(Debug, Default)]
pub(super) struct Live {
    pub(super) containers: HashSet<String>,
    pub(super) volumes: HashSet<String>,
}

/// Removal tasks still running.
pub(super) type Pending = Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// Removes a warm container's containers and volumes: explicitly at the end, or from `Drop`
/// when the future running it was dropped.
/// Removal runs on a spawned task, off the path to the result; [`settle`] waits for every
/// such task.
pub(super) struct Cleanup {
    pub(super) docker: Docker,
    pub(super) live: Arc<Mutex<Live>>,
    pub(super) pending: Pending,
    pub(super) containers: Vec<String>,
    pub(super) volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.containers.is_empty() && self.volumes.is_empty() {
            return;
        }
        let containers = std::mem::take(&mut self.containers);
        let volumes = std::mem::take(&mut self.volumes);
        let (docker, live) = (self.docker.clone(), self.live.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn(async move {
                    remove_all(&docker, &live, &containers, &volumes).await;
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

/// Wait for the background removals of finished runs, those started while waiting included.
pub(super) async fn settle(pending: &Pending) {
    loop {
        let tasks: Vec<_> = std::mem::take(&mut *pending.lock().expect("pending poisoned"));
        if tasks.is_empty() {
            return;
        }
        futures_util::future::join_all(tasks).await;
    }
}

/// Most sweeps on shutdown, 250 ms apart, until two in a row find nothing.
const SHUTDOWN_SWEEPS: usize = 12;

/// Remove everything `live` holds, then what the engine holds under `label` (a `key=value`
/// label filter naming this process's things): the Ctrl-C path.
pub(super) async fn shutdown(docker: &Docker, live: &Arc<Mutex<Live>>, label: &str) {
    let (containers, volumes): (Vec<String>, Vec<String>) = {
        let live = live.lock().expect("live set poisoned");
        (
            live.containers.iter().cloned().collect(),
            live.volumes.iter().cloned().collect(),
        )
    };
    remove(docker, live, &containers, &volumes).await;
    // A create request in flight when the work was dropped can land after the removal
    // above: sweep what the engine holds under this label until it stays empty.
    let mut quiet = 0;
    for _ in 0..SHUTDOWN_SWEEPS {
        match sweep(docker, live, label).await {
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

/// Remove every container and volume the engine holds under `label`; how many.
async fn sweep(docker: &Docker, live: &Arc<Mutex<Live>>, label: &str) -> Result<usize> {
    let filters = HashMap::from([("label", vec![label])]);
    let containers: Vec<String> = docker
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
    let volumes: Vec<String> = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    remove(docker, live, &containers, &volumes).await;
    Ok(containers.len() + volumes.len())
}

/// Remove these containers, then these volumes (a volume goes once its container is gone).
async fn remove(
    docker: &Docker,
    live: &Arc<Mutex<Live>>,
    containers: &[String],
    volumes: &[String],
) {
    remove_all(docker, live, containers, volumes).await;
}

/// Remove these containers at once, then the volumes they used.
pub(super) async fn remove_all(
    docker: &Docker,
    live: &Arc<Mutex<Live>>,
    containers: &[String],
    volumes: &[String],
) {
    let removals = containers
        .iter()
        .map(|id| remove_container(docker, live, id));
    futures_util::future::join_all(removals).await;
    let removals = volumes
        .iter()
        .map(|volume| remove_volume(docker, live, volume));
    futures_util::future::join_all(removals).await;
}

/// Run a removal until the engine says the thing is gone (success or 404), retrying while
/// it answers 409: another cleanup (a dropped future's, or the signal handler's) is removing
/// it, or a volume is still in use by a container being removed; and, a few times, while it
/// answers 500. True when it is gone.
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
            // A loaded engine may fail to see a killed container exit in time ("did not
            // receive an exit event"): a few more tries, further apart.
            Err(DockerResponseServerError {
                status_code: 500, ..
            }) if attempt < 8 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                tracing::warn!(%err, what, "removal failed");
                return false;
            }
        }
    }
    false
}

/// Force-remove a container and its anonymous volumes; forget it once it is gone.
pub(super) async fn remove_container(docker: &Docker, live: &Arc<Mutex<Live>>, id: &str) {
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

/// Force-remove a volume; forget it once it is gone.
pub(super) async fn remove_volume(docker: &Docker, live: &Arc<Mutex<Live>>, volume: &str) {
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
