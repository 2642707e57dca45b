//! Who owns what planbox left in the engine: the labels on every container and volume, the
//! owner id of a process (`host:pid:start-time`), whether an owner still runs, the listing of
//! leftovers, and reaping those whose owner is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

use super::cleanup::{self, Live};
use crate::error::Result;

/// Label on everything planbox creates.
pub const LABEL: &str = "planbox";
/// Label naming the process that owns a container: `host:pid:start-time`.
pub const OWNER_LABEL: &str = "planbox.owner";
/// Label naming the run a container works for.
pub(super) const RUN_LABEL: &str = "planbox.run";
/// Label holding the creation time, in seconds since the Unix epoch.
pub(super) const CREATED_LABEL: &str = "planbox.created";

/// The longest a container can legitimately live: the maximum deadline plus slack.
const MAX_AGE: Duration = Duration::from_secs(600 + 120);

/// The labels for something `owner` creates for the run `run_id`.
pub(super) fn labels(owner: &str, run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (OWNER_LABEL.to_string(), owner.to_string()),
        (RUN_LABEL.to_string(), run_id.to_string()),
        (CREATED_LABEL.to_string(), unix_now().to_string()),
    ])
}

/// The label filter (`key=value`) that selects what `owner` created.
pub(super) fn filter(owner: &str) -> String {
    format!("{OWNER_LABEL}={owner}")
}

/// `host:pid:start-time` of this process; the start time tells a reused pid apart.
pub(super) fn owner_id() -> String {
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

/// Whether a leftover is a container or a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A script or holder container.
    Container,
    /// An output volume.
    Volume,
}

/// A container or volume carrying planbox's owner label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Container or volume.
    pub kind: Kind,
    /// The container's id, or the volume's name.
    pub id: String,
    /// The owner label's value, `host:pid:start-time` (empty when it is blank).
    pub owner: String,
    /// Whether the owner process still runs (see [`owner_alive`]).
    pub alive: bool,
    /// Time since creation, from the creation label; `None` without one.
    pub age: Option<Duration>,
    /// Bytes the container wrote to its own layer, when sizes were asked for; the engine
    /// tells volume sizes only through a costly disk-usage call, so volumes have none.
    pub size: Option<u64>,
}

impl Leftover {
    /// The owner's process id, the part of the owner a person can look up.
    pub fn pid(&self) -> Option<u32> {
        self.owner.split(':').nth(1)?.parse().ok()
    }

    /// Whether the next start may remove it: not `me`'s, and its owner is gone or it has
    /// outlived any run (the only test for owners on other hosts).
    fn stale(&self, me: &str) -> bool {
        self.owner != me && (!self.alive || self.age.is_none_or(|age| age > MAX_AGE))
    }
}

/// Every container (stopped ones included) and volume with planbox's owner label, containers
/// first. `sizes` asks the engine for the containers' sizes, which costs it a walk of each
/// container's files.
pub async fn leftovers(docker: &Docker, sizes: bool) -> Result<Vec<Leftover>> {
    let filters = HashMap::from([("label", vec![OWNER_LABEL])]);
    let now = unix_now();
    let leftover = |kind, id, labels: Option<&HashMap<String, String>>, size| {
        let label = |name| labels.and_then(|l| l.get(name));
        let owner = label(OWNER_LABEL).cloned().unwrap_or_default();
        let age = label(CREATED_LABEL)
            .and_then(|c| c.parse::<u64>().ok())
            .map(|created| Duration::from_secs(now.saturating_sub(created)));
        Leftover {
            kind,
            id,
            alive: owner_alive(&owner),
            owner,
            age,
            size,
        }
    };
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .size(sizes)
        .filters(&filters)
        .build();
    let mut found: Vec<Leftover> = docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .filter_map(|c| {
            let size = c.size_rw.map(|s| s.max(0) as u64);
            Some(leftover(Kind::Container, c.id?, c.labels.as_ref(), size))
        })
        .collect();
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let volumes = docker.list_volumes(Some(options)).await?.volumes;
    found.extend(
        volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| leftover(Kind::Volume, v.name, Some(&v.labels), None)),
    );
    Ok(found)
}

/// Remove containers and volumes that planbox labelled and whose owner process is gone
/// (same host), or that are older than the longest possible run (other hosts); never
/// `me`'s. Returns how many containers were removed.
pub(super) async fn reap(docker: &Docker, me: &str) -> Result<usize> {
    let none = Arc::new(Mutex::new(Live::default()));
    let mut removed = 0;
    // Containers come first in the listing: a volume goes once its container is gone.
    for leftover in leftovers(docker, false).await? {
        if !leftover.stale(me) {
            continue;
        }
        match leftover.kind {
            Kind::Container => {
                cleanup::remove_container(docker, &none, &leftover.id).await;
                removed += 1;
            }
            Kind::Volume => cleanup::remove_volume(docker, &none, &leftover.id).await,
        }
    }
    Ok(removed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert!(owner_alive(&owner_id()));
        assert!(!owner_alive(&format!("{}:999999999:1", hostname())));
        assert!(!owner_alive("garbage"));
    }

    #[test]
    fn a_leftover_is_stale_when_its_owner_is_gone_or_it_outlived_any_run() {
        let me = owner_id();
        let leftover = |owner: &str, alive, age: Option<u64>| Leftover {
            kind: Kind::Container,
            id: "c".into(),
            owner: owner.into(),
            alive,
            age: age.map(Duration::from_secs),
            size: None,
        };
        let stale = [
            leftover(&me, false, None),
            leftover("h:1:1", false, Some(5)),
            leftover("h:1:1", true, Some(5)),
            leftover("h:1:1", true, Some(MAX_AGE.as_secs() + 1)),
            leftover("h:1:1", true, None),
        ]
        .map(|l| l.stale(&me));
        assert_eq!(stale, [false, true, false, true, true]);
        assert_eq!(leftover("h:42:7", true, None).pid(), Some(42));
        assert_eq!(leftover("", true, None).pid(), None);
    }
}
