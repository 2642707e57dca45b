//! The container policy: every isolation layer switched on explicitly, each limit
//! configurable, and a check that the engine applied exactly what was asked.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{HostConfig, HostConfigLogConfig, Mount, MountType, ResourcesUlimits};

use crate::error::{Error, Result};

const MIB: i64 = 1024 * 1024;

/// Host threads gVisor's own kernel (the Sentry and its gofer) needs in the container's pids
/// cgroup before the script's first process: under runsc the cgroup counts them too, and a
/// sandbox that cannot start a thread of its own dies (exit code 2, nothing printed).
pub const RUNSC_PIDS_HEADROOM: i64 = 96;
/// Host processes and threads per process or thread of the script under runsc's ptrace
/// platform (the task's host thread, its address space's stub process and its threads),
/// measured: with less, the cgroup runs out before gVisor's own process limit answers.
pub const RUNSC_PIDS_PER_TASK: i64 = 7;

/// Where inputs are mounted, read-only, one file each.
pub const DATA_DIR: &str = "/data";
/// The script's writable output folder and working directory.
pub const OUT_DIR: &str = "/out";

/// Limits and isolation settings for one script.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Memory limit in bytes; swap is set equal, so there is no swap.
    pub memory: i64,
    /// CPUs, in units of 1e-9 CPU.
    pub nano_cpus: i64,
    /// Maximum processes and threads in the container.
    pub pids: i64,
    /// Open file descriptors per process.
    pub nofile: i64,
    /// Largest file a process may write, in bytes.
    pub fsize: i64,
    /// Size of the `/tmp` tmpfs, in bytes.
    pub tmp_bytes: i64,
    /// Size of the output folder's tmpfs, in bytes.
    pub out_bytes: u64,
    /// Inodes (files and folders) in the output folder.
    pub out_files: usize,
    /// Deepest nesting allowed in the output folder.
    pub out_depth: usize,

    /// Wall deadline for one script, enforced by the host.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept each (head and tail).
    pub capture_bytes: usize,
    /// Bytes of stdout plus stderr after which the container is killed.
    pub stream_ceiling: u64,
    /// OCI runtime, e.g. `runsc` for gVisor; the engine's default when `None`.
    pub runtime: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            memory: 2048 * MIB,
            nano_cpus: 1_000_000_000,
            pids: 128,
            nofile: 256,
            fsize: 256 * MIB,
            tmp_bytes: 256 * MIB,
            out_bytes: 256 * 1024 * 1024,
            out_files: 4096,
            out_depth: 16,
            timeout: Duration::from_secs(60),
            capture_bytes: 1024 * 1024,
            stream_ceiling: 64 * 1024 * 1024,
            runtime: None,
        }
    }
}

/// The environment every script gets: an allow-list, nothing from the host.
pub const ENV: &[&str] = &[
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "HOME=/tmp",
    "LANG=C.UTF-8",
    "MPLBACKEND=Agg",
    "MPLCONFIGDIR=/tmp/mpl",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
    // Pickles of sets and dicts of strings come out the same in every container, so a value a
    // step passed through unchanged is recognised as such.
    "PYTHONHASHSEED=0",
    "OPENBLAS_NUM_THREADS=1",
    "OMP_NUM_THREADS=1",
];

impl Policy {
    /// Reject settings outside the ranges planbox supports.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value: String, reason| {
            Err(Error::InvalidSetting {
                name,
                value,
                reason,
            })
        };
        let secs = self.timeout.as_secs_f64();
        if !(0.0 < secs && secs <= 600.0) {
            return invalid("timeout", secs.to_string(), "must be in (0, 600] seconds");
        }
        if self.memory < 64 * MIB {
            return invalid(
                "memory",
                format!("{} bytes", self.memory),
                "must be at least 64 MiB",
            );
        }
        if self.nano_cpus <= 0 {
            return invalid(
                "cpus",
                (self.nano_cpus as f64 / 1e9).to_string(),
                "must be positive",
            );
        }
        if self.pids < 8 {
            return invalid("pids", self.pids.to_string(), "must be at least 8");
        }
        if self.nofile < 16 {
            return invalid("nofile", self.nofile.to_string(), "must be at least 16");
        }
        Ok(())
    }

    /// The HostConfig for a script container: `files` are (host path, container path)
    /// pairs, each bind-mounted read-only (inputs under [`DATA_DIR`], dependencies' states
    /// under [`super::state::STATE_MOUNT_DIR`]), and `out_volume` the output volume's name.
    pub fn host_config(&self, files: &[(String, String)], out_volume: &str) -> HostConfig {
        self.host_config_with(files, &[], out_volume)
    }

    /// [`Self::host_config`] with `volumes`, (volume name, container path) pairs, also
    /// mounted read-only: the inputs and states copied into volumes through the engine, for
    /// an engine that cannot see planbox's files.
    pub fn host_config_with(
        &self,
        files: &[(String, String)],
        volumes: &[(String, String)],
        out_volume: &str,
    ) -> HostConfig {
        let mut mounts: Vec<Mount> = files
            .iter()
            .map(|(source, target)| Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        mounts.extend(
            volumes
                .iter()
                .map(|(name, target)| volume_at(name, target, true)),
        );
        mounts.push(volume_mount(out_volume, false));
        HostConfig {
            mounts: Some(mounts),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,size={}", self.tmp_bytes),
            )])),
            ..self.locked_down(self.memory, self.pids)
        }
    }

    /// The HostConfig for the holder container, which only keeps the output volume mounted
    /// (read-only) so it can be read back after the script's container stopped.
    pub fn holder_config(&self, out_volume: &str) -> HostConfig {
        HostConfig {
            mounts: Some(vec![volume_mount(out_volume, true)]),
            ..self.locked_down(32 * MIB, 8)
        }
    }

    /// The HostConfig for the loader container, which is created and never started: the
    /// engine's archive API writes the copied inputs and states through it into `volumes`,
    /// (volume name, container path) pairs mounted writable.
    pub fn loader_config(&self, volumes: &[(String, String)]) -> HostConfig {
        HostConfig {
            mounts: Some(
                volumes
                    .iter()
                    .map(|(name, target)| volume_at(name, target, false))
                    .collect(),
            ),
            ..self.locked_down(32 * MIB, 8)
        }
    }

    /// The pids cgroup limit for a container whose processes and threads are bounded by
    /// `pids`: the same under runc; with gVisor's own threads on top under runsc.
    ///
    /// Under runsc the script's processes and threads are bounded inside gVisor by the
    /// nproc limit (gVisor counts it per sandbox, where the host kernel counts it per uid
    /// across containers), and the cgroup bounds the host side.
    pub fn pids_cgroup(&self, pids: i64) -> i64 {
        if self.under_gvisor() {
            RUNSC_PIDS_HEADROOM + RUNSC_PIDS_PER_TASK * pids
        } else {
            pids
        }
    }

    /// Whether scripts run under gVisor.
    pub fn under_gvisor(&self) -> bool {
        self.runtime.as_deref() == Some("runsc")
    }

    fn locked_down(&self, memory: i64, pids: i64) -> HostConfig {
        let mut ulimits = vec![
            ulimit("nofile", self.nofile),
            ulimit("fsize", self.fsize),
            ulimit("core", 0),
        ];
        if self.under_gvisor() {
            ulimits.push(ulimit("nproc", pids));
        }
        let pids = self.pids_cgroup(pids);
        HostConfig {
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec![
                "no-new-privileges".into(),
                format!("seccomp={}", super::seccomp::profile()),
            ]),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(self.nano_cpus),
            pids_limit: Some(pids),
            ulimits: Some(ulimits),
            init: Some(true),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            auto_remove: Some(false),
            privileged: Some(false),
            runtime: self.runtime.clone(),
            ..Default::default()
        }
    }

    /// The driver options of the tmpfs volume behind the output folder: the filesystem
    /// itself caps its size and file count.
    pub fn out_volume_options(&self) -> HashMap<String, String> {
        HashMap::from([
            ("type".to_string(), "tmpfs".to_string()),
            ("device".to_string(), "tmpfs".to_string()),
            (
                "o".to_string(),
                format!(
                    "size={},nr_inodes={},uid=1000,gid=1000,mode=0700,nosuid,nodev,noexec",
                    self.out_bytes,
                    self.out_files + 1
                ),
            ),
        ])
    }

    /// Compare what the engine reports for a created container with what was asked; any
    /// difference names the setting.
    pub fn check(
        &self,
        wanted: &HostConfig,
        actual: &HostConfig,
    ) -> std::result::Result<(), String> {
        fn differs<T: PartialEq + std::fmt::Debug>(
            name: &str,
            want: &T,
            got: &T,
        ) -> Option<String> {
            (want != got).then(|| format!("{name}: wanted {want:?}, engine has {got:?}"))
        }
        let sorted = |v: &Option<Vec<String>>| {
            let mut v = v.clone().unwrap_or_default();
            v.sort();
            v
        };
        let ulimits = |h: &HostConfig| {
            let mut v: Vec<(String, i64, i64)> = h
                .ulimits
                .iter()
                .flatten()
                .map(|u| {
                    (
                        u.name.clone().unwrap_or_default(),
                        u.soft.unwrap_or(-1),
                        u.hard.unwrap_or(-1),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let mounts = |h: &HostConfig| {
            let mut v: Vec<String> = h
                .mounts
                .iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{:?} {:?}->{:?} ro={:?}",
                        m.typ,
                        m.source,
                        m.target,
                        m.read_only.unwrap_or(false)
                    )
                })
                .collect();
            v.sort();
            v
        };
        let log = |h: &HostConfig| h.log_config.as_ref().and_then(|l| l.typ.clone());
        let problems = [
            differs("network_mode", &wanted.network_mode, &actual.network_mode),
            differs(
                "readonly_rootfs",
                &wanted.readonly_rootfs,
                &actual.readonly_rootfs,
            ),
            differs(
                "cap_drop",
                &sorted(&wanted.cap_drop),
                &sorted(&actual.cap_drop),
            ),
            differs(
                "cap_add",
                &sorted(&wanted.cap_add),
                &sorted(&actual.cap_add),
            ),
            differs(
                "security_opt",
                &sorted(&wanted.security_opt),
                &sorted(&actual.security_opt),
            ),
            differs("memory", &wanted.memory, &actual.memory),
            differs("memory_swap", &wanted.memory_swap, &actual.memory_swap),
            differs("nano_cpus", &wanted.nano_cpus, &actual.nano_cpus),
            differs("pids_limit", &wanted.pids_limit, &actual.pids_limit),
            differs("ulimits", &ulimits(wanted), &ulimits(actual)),
            differs("init", &wanted.init, &actual.init),
            differs("log driver", &log(wanted), &log(actual)),
            differs(
                "privileged",
                &Some(false),
                &actual.privileged.or(Some(false)),
            ),
            differs("mounts", &mounts(wanted), &mounts(actual)),
            // Without a runtime asked for, the engine's default is taken as it is.
            wanted
                .runtime
                .as_ref()
                .and_then(|want| differs("runtime", &Some(want), &actual.runtime.as_ref())),
            differs("binds", &sorted(&wanted.binds), &sorted(&actual.binds)),
            differs("tmpfs", &wanted.tmpfs, &actual.tmpfs),
            differs("devices", &0, &actual.devices.as_ref().map_or(0, Vec::len)),
            differs(
                "pid_mode",
                &String::new(),
                &actual.pid_mode.clone().unwrap_or_default(),
            ),
            differs(
                "ipc_mode",
                &true,
                &matches!(
                    actual.ipc_mode.as_deref(),
                    None | Some("" | "private" | "shareable" | "none")
                ),
            ),
        ];
        let problems: Vec<String> = problems.into_iter().flatten().collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn volume_mount(name: &str, read_only: bool) -> Mount {
    volume_at(name, OUT_DIR, read_only)
}

fn volume_at(name: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::VOLUME),
        source: Some(name.to_string()),
        target: Some(target.to_string()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(value),
        hard: Some(value),
    }
}

#[cfg(test)]
mod tests;
