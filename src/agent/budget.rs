//! The run's budgets (tokens, wall time, containers): one guard says which one ran out, and a
//! spent budget is a value, never an error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{RunEvent, Sink};
use crate::llm::Meter;

/// A budget that can end a run early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// The token budget (`--token-budget`).
    Tokens,
    /// The run's wall time (`--wall-time`).
    WallTime,
    /// The number of containers (`--max-containers`).
    Containers,
    /// The money budget (`--max-cost`).
    Cost,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Budget::Tokens => "tokens",
            Budget::WallTime => "wall time",
            Budget::Containers => "containers",
            Budget::Cost => "cost",
        })
    }
}

impl Budget {
    /// Why a step stopped when this budget ran out.
    pub fn ran_out(self) -> String {
        format!("the {self} budget ran out")
    }
}

/// What a run may still spend; the first budget to run out is kept and announced once.
pub(crate) struct Budgets {
    wall: Option<Duration>,
    max_containers: Option<usize>,
    started: Instant,
    containers: AtomicUsize,
    spent: Mutex<Option<Budget>>,
    meter: Arc<Meter>,
}

impl Budgets {
    pub(crate) fn new(
        wall: Option<Duration>,
        max_containers: Option<usize>,
        meter: Arc<Meter>,
    ) -> Self {
        Budgets {
            wall,
            max_containers,
            started: Instant::now(),
            containers: AtomicUsize::new(0),
            spent: Mutex::new(None),
            meter,
        }
    }

    /// Time since the run (or this resume) started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the wall-time budget ends, if there is one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.wall.map(|wall| self.started + wall)
    }

    /// A script run cut off when the wall-time budget ends: `Err` with the budget when it
    /// did (the script's containers are removed as for any dropped run).
    pub(crate) async fn script_within<T>(
        &self,
        run: impl std::future::Future<Output = T>,
        sink: &dyn Sink,
    ) -> Result<T, Budget> {
        let Some(deadline) = self.deadline() else {
            return Ok(run.await);
        };
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(done) => Ok(done),
            Err(_) => {
                self.spend(Budget::WallTime, sink);
                Err(Budget::WallTime)
            }
        }
    }

    /// The budget that ran out, if one did.
    pub(crate) fn spent(&self) -> Option<Budget> {
        *self.spent.lock().expect("budget poisoned")
    }

    /// The guard before any new work: the budget that is spent now, if any.
    pub(crate) fn check(&self, sink: &dyn Sink) -> Option<Budget> {
        if self.spent().is_none() {
            let over_wall = self.wall.is_some_and(|wall| self.started.elapsed() >= wall);
            let over_containers = self
                .max_containers
                .is_some_and(|max| self.containers.load(Ordering::SeqCst) >= max);
            if over_wall {
                self.spend(Budget::WallTime, sink);
            } else if over_containers {
                self.spend(Budget::Containers, sink);
            } else {
                match self.meter.check() {
                    Err(Error::CostExhausted { .. }) => self.spend(Budget::Cost, sink),
                    Err(_) => self.spend(Budget::Tokens, sink),
                    Ok(()) => {}
                }
            }
        }
        self.spent()
    }

    /// Count one container.
    pub(crate) fn container(&self) {
        self.containers.fetch_add(1, Ordering::SeqCst);
    }

    /// A model call's result with a spent token budget turned into a value.
    pub(crate) fn within<T>(
        &self,
        result: Result<T>,
        sink: &dyn Sink,
    ) -> Result<Result<T, Budget>> {
        let budget = match &result {
            Err(Error::BudgetExhausted { .. }) => Budget::Tokens,
            Err(Error::CostExhausted { .. }) => Budget::Cost,
            Err(Error::WallTimeSpent { .. }) => Budget::WallTime,
            _ => return result.map(Ok),
        };
        self.spend(budget, sink);
        Ok(Err(budget))
    }

    fn spend(&self, budget: Budget, sink: &dyn Sink) {
        let mut spent = self.spent.lock().expect("budget poisoned");
        if spent.is_none() {
            *spent = Some(budget);
            drop(spent);
            sink.emit(&RunEvent::BudgetSpent {
                budget: budget.to_string(),
            });
        }
    }
}
