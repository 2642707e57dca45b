//! A pool of engines: each script goes to the engine with the most free capacity (each
//! engine runs at most its own number of scripts at once); an engine that stops answering is
//! marked down and the script is started again on another, a bounded number of times. One
//! engine is a pool of one. Every engine keeps its own cleanup: containers are removed on
//! every path, per engine, and the reaper and the Ctrl-C sweep visit every engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::docker::{Delivery, DockerSandbox, DockerWarm};
use super::{Job, Output, Policy, Sandbox, Warm};
use crate::error::{Error, Result};

/// One engine of a pool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSpec {
    /// Where it is: `unix://`, `tcp://`, `https://` or `ssh://`.
    pub host: String,
    /// Scripts it runs at once; the run's `--parallel` when `None`.
    pub parallel: Option<usize>,
}

impl EngineSpec {
    /// `HOST` or `HOST,parallel=N`.
    pub fn parse(text: &str) -> std::result::Result<EngineSpec, String> {
        let (host, rest) = match text.split_once(',') {
            Some((host, rest)) => (host.trim(), Some(rest.trim())),
            None => (text.trim(), None),
        };
        if !["unix://", "tcp://", "http://", "https://", "ssh://"]
            .iter()
            .any(|scheme| host.starts_with(scheme))
        {
            return Err(format!(
                "engine {host:?}: an engine address starts with unix://, tcp://, http://, https:// or ssh://"
            ));
        }
        let parallel = match rest {
            None => None,
            Some(rest) => {
                let n = rest
                    .strip_prefix("parallel=")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        format!("engine {host:?}: after the address comes parallel=N (N at least 1), not {rest:?}")
                    })?;
                Some(n)
            }
        };
        Ok(EngineSpec {
            host: host.to_string(),
            parallel,
        })
    }
}

/// One engine in the pool.
struct Member {
    host: String,
    sandbox: DockerSandbox,
    capacity: usize,
    busy: AtomicUsize,
    down: AtomicBool,
    placed: AtomicUsize,
}

/// What the pool has done, for the end of a run or batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineReport {
    /// The engine's address.
    pub host: String,
    /// Scripts placed on it.
    pub placed: usize,
    /// Whether it was marked down.
    pub down: bool,
}

/// Engines that run scripts, one fresh container each, placed by free capacity.
#[derive(Clone)]
pub struct Pool {
    members: Arc<Vec<Member>>,
    freed: Arc<Notify>,
    moved: Arc<AtomicUsize>,
    max_moves: usize,
}

/// How many times, in all, scripts may be started again after their engine went down.
const MOVES_PER_ENGINE: usize = 8;

impl Pool {
    /// A pool of the engines `specs` (each connected and checked: image present, runtime
    /// offered), under `policy`; `parallel` is the capacity of an engine that names none,
    /// `no_bind` copies inputs even to engines on this machine's socket.
    pub async fn connect(
        specs: &[EngineSpec],
        policy: &Policy,
        image: &str,
        parallel: usize,
        no_bind: bool,
    ) -> Result<Pool> {
        let mut sandboxes = Vec::new();
        for spec in specs {
            let docker = super::engine::connect_to(&spec.host).await?;
            let sandbox = DockerSandbox::new(docker, policy.clone(), image.to_string())
                .await?
                .with_delivery(Delivery::for_host(&spec.host, no_bind));
            sandboxes.push((
                spec.host.clone(),
                sandbox,
                spec.parallel.unwrap_or(parallel),
            ));
        }
        Ok(Pool::of(sandboxes))
    }

    /// A pool of these (address, sandbox, capacity) engines.
    pub fn of(engines: Vec<(String, DockerSandbox, usize)>) -> Pool {
        let members: Vec<Member> = engines
            .into_iter()
            .map(|(host, sandbox, capacity)| Member {
                host,
                sandbox,
                capacity: capacity.max(1),
                busy: AtomicUsize::new(0),
                down: AtomicBool::new(false),
                placed: AtomicUsize::new(0),
            })
            .collect();
        let max_moves = MOVES_PER_ENGINE * members.len();
        Pool {
            members: Arc::new(members),
            freed: Arc::default(),
            moved: Arc::default(),
            max_moves,
        }
    }

    /// Scripts in all the engines run at once.
    pub fn capacity(&self) -> usize {
        self.members.iter().map(|m| m.capacity).sum()
    }

    /// Scripts started again elsewhere after their engine went down.
    pub fn moved(&self) -> usize {
        self.moved.load(Ordering::Relaxed)
    }

    /// Each engine, what was placed on it and whether it is down.
    pub fn report(&self) -> Vec<EngineReport> {
        self.members
            .iter()
            .map(|m| EngineReport {
                host: m.host.clone(),
                placed: m.placed.load(Ordering::Relaxed),
                down: m.down.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The first engine's sandbox (a pool has at least one).
    pub fn first(&self) -> &DockerSandbox {
        &self.members[0].sandbox
    }

    /// Remove what dead planbox processes left, on every engine that answers; how many
    /// containers. An engine that does not answer is skipped with a warning (it is marked
    /// down when a script is placed on it).
    pub async fn reap(&self) -> Result<usize> {
        let mut removed = 0;
        let mut first_error = None;
        for member in self.members.iter() {
            match member.sandbox.reap().await {
                Ok(n) => removed += n,
                Err(err) if self.members.len() > 1 => {
                    tracing::warn!(host = %member.host, %err, "could not reap this engine");
                }
                Err(err) => first_error = Some(err),
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(removed),
        }
    }

    /// Wait for the background removals on every engine.
    pub async fn settle(&self) {
        for member in self.members.iter() {
            member.sandbox.settle().await;
        }
    }

    /// Remove everything live on every engine: the Ctrl-C path.
    pub async fn shutdown(&self) {
        let sweeps = self.members.iter().map(|m| m.sandbox.shutdown());
        futures_util::future::join_all(sweeps).await;
    }

    /// A slot on the up engine with the most free capacity, waiting while every up engine
    /// is full; an error when every engine is down.
    async fn acquire(&self) -> Result<Slot> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let mut up = false;
            let mut best: Option<(usize, usize)> = None;
            for (index, member) in self.members.iter().enumerate() {
                if member.down.load(Ordering::Acquire) {
                    continue;
                }
                up = true;
                let busy = member.busy.load(Ordering::Acquire);
                if busy < member.capacity {
                    let free = member.capacity - busy;
                    if best.is_none_or(|(_, most)| free > most) {
                        best = Some((index, free));
                    }
                }
            }
            if !up {
                let hosts: Vec<&str> = self.members.iter().map(|m| m.host.as_str()).collect();
                return Err(Error::EnginesDown(format!(
                    "every engine stopped answering: {}",
                    hosts.join(", ")
                )));
            }
            if let Some((index, _)) = best {
                let member = &self.members[index];
                let taken = member.busy.fetch_add(1, Ordering::AcqRel);
                if taken < member.capacity {
                    member.placed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Slot {
                        pool: self.clone(),
                        index,
                    });
                }
                member.busy.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            freed.await;
        }
    }

    /// Mark an engine down after `err` (or a failed check) and count one move, failing
    /// when the moves are spent.
    fn went_down(&self, index: usize, why: &str) -> Result<()> {
        let member = &self.members[index];
        if !member.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(host = %member.host, why, "engine marked down; its scripts go elsewhere");
        }
        self.freed.notify_waiters();
        let moved = self.moved.fetch_add(1, Ordering::AcqRel) + 1;
        if moved > self.max_moves {
            return Err(Error::EnginesDown(format!(
                "{moved} scripts had to be moved off engines that stopped answering; giving up (last: {}: {why})",
                member.host
            )));
        }
        Ok(())
    }

    /// Whether the engine at `index` still answers, within a few seconds.
    async fn answers(&self, index: usize) -> bool {
        let docker = self.members[index].sandbox.docker();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), docker.ping()).await,
            Ok(Ok(_))
        )
    }
}

/// A place taken on one engine; given back on drop.
struct Slot {
    pool: Pool,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.members[self.index]
            .busy
            .fetch_sub(1, Ordering::AcqRel);
        self.pool.freed.notify_waiters();
    }
}

/// Whether an error means the engine itself is gone (no answer, a cut connection), not that
/// it refused a request.
fn engine_gone(err: &Error) -> bool {
    use bollard::errors::Error as Client;
    match err {
        Error::EngineUnreachable { .. } => true,
        Error::Docker(client) => matches!(
            client,
            Client::IOError { .. }
                | Client::RequestTimeoutError
                | Client::HyperResponseError { .. }
                | Client::HyperLegacyError { .. }
                | Client::SocketNotFoundError(_)
                | Client::HttpClientError { .. }
                | Client::DockerStreamError { .. }
        ),
        _ => false,
    }
}

/// A started container on one of the pool's engines.
pub struct PoolWarm {
    pool: Pool,
    job: Job,
    warm: DockerWarm,
    slot: Slot,
}

impl Pool {
    /// Prepare on the best engine, moving on while engines turn out to be gone.
    async fn place(&self, job: &Job) -> Result<PoolWarm> {
        loop {
            let slot = self.acquire().await?;
            match self.members[slot.index].sandbox.prepare(job).await {
                Ok(warm) => {
                    return Ok(PoolWarm {
                        pool: self.clone(),
                        job: job.clone(),
                        warm,
                        slot,
                    });
                }
                Err(err) if engine_gone(&err) || !self.answers(slot.index).await => {
                    self.went_down(slot.index, &err.to_string())?;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

impl Sandbox for Pool {
    type Warm = PoolWarm;

    async fn prepare(&self, job: &Job) -> Result<PoolWarm> {
        self.place(job).await
    }

    async fn settle(&self) {
        Pool::settle(self).await;
    }
}

impl Warm for PoolWarm {
    async fn run(self, script: &str) -> Result<Output> {
        let PoolWarm {
            pool,
            job,
            mut warm,
            mut slot,
        } = self;
        loop {
            let outcome = warm.run(script).await;
            // A failure on an engine that no longer answers says nothing about the script:
            // the engine stopping killed it, or cut the connection. Run it elsewhere.
            let gone = match &outcome {
                Ok(output) if output.status.success() => false,
                Ok(_) => !pool.answers(slot.index).await,
                Err(err) => engine_gone(err) || !pool.answers(slot.index).await,
            };
            if !gone {
                return outcome;
            }
            let why = match &outcome {
                Ok(output) => format!(
                    "the script ended {} and the engine stopped answering",
                    output.status
                ),
                Err(err) => err.to_string(),
            };
            pool.went_down(slot.index, &why)?;
            drop(slot);
            let again = pool.place(&job).await?;
            warm = again.warm;
            slot = again.slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_specs_name_an_address_and_maybe_a_capacity() {
        assert_eq!(
            EngineSpec::parse("tcp://10.0.0.2:2376").unwrap(),
            EngineSpec {
                host: "tcp://10.0.0.2:2376".into(),
                parallel: None
            }
        );
        assert_eq!(
            EngineSpec::parse("unix:///var/run/docker.sock,parallel=3")
                .unwrap()
                .parallel,
            Some(3)
        );
        let bad = EngineSpec::parse("10.0.0.2:2376").unwrap_err();
        assert!(bad.contains("starts with unix://"), "{bad}");
        let zero = EngineSpec::parse("ssh://me@box,parallel=0").unwrap_err();
        assert!(zero.contains("parallel=N"), "{zero}");
        let odd = EngineSpec::parse("ssh://me@box,cpus=2").unwrap_err();
        assert!(odd.contains("cpus=2"), "{odd}");
    }

    #[test]
    fn only_a_lost_connection_means_the_engine_is_gone() {
        let refused = Error::Docker(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message: "conflict".into(),
        });
        assert!(!engine_gone(&refused));
        let cut = Error::Docker(bollard::errors::Error::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        });
        assert!(engine_gone(&cut));
        assert!(engine_gone(&Error::Docker(
            bollard::errors::Error::RequestTimeoutError
        )));
        assert!(!engine_gone(&Error::ImageMissing("x".into())));
    }
}
