//! The scheduler: runs every ready step of a plan concurrently, up to a cap; a failing step
//! blocks only its descendants, and independent branches go on.

use std::collections::BTreeSet;
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Step};

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// It did what it should.
    Succeeded,
    /// It failed, for this reason.
    Failed(String),
}

/// What the scheduler did, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step started.
    Started {
        /// Step id.
        id: String,
    },
    /// A step ended.
    Finished {
        /// Step id.
        id: String,
        /// How.
        outcome: Outcome,
    },
    /// A step will not run because a step it depends on failed.
    Skipped {
        /// Step id.
        id: String,
        /// The failed ancestor.
        because: String,
    },
}

/// Which steps ended how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Steps that succeeded, in completion order.
    pub succeeded: Vec<String>,
    /// Steps that failed.
    pub failed: Vec<String>,
    /// Steps skipped because an ancestor failed.
    pub skipped: Vec<String>,
}

/// Run `plan`, at most `parallel` steps at once, each through `run_step`; `emit` sees every
/// event. Steps start in plan order among those ready.
pub async fn run<F, Fut>(
    plan: &Plan,
    parallel: usize,
    mut run_step: F,
    mut emit: impl FnMut(Event),
) -> Summary
where
    F: FnMut(Step) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let parallel = parallel.max(1);
    let mut summary = Summary::default();
    let mut done = BTreeSet::new();
    let mut started = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    loop {
        for step in plan.ready(&done, &started) {
            if running.len() >= parallel {
                break;
            }
            started.insert(step.id.clone());
            emit(Event::Started {
                id: step.id.clone(),
            });
            let id = step.id.clone();
            let future = run_step(step.clone());
            running.push(async move { (id, future.await) });
        }
        let Some((id, outcome)) = running.next().await else {
            break;
        };
        emit(Event::Finished {
            id: id.clone(),
            outcome: outcome.clone(),
        });
        match outcome {
            Outcome::Succeeded => {
                done.insert(id.clone());
                summary.succeeded.push(id);
            }
            Outcome::Failed(_) => {
                summary.failed.push(id.clone());
                for step in &plan.steps {
                    if plan.ancestors(&step.id).contains(&id) && started.insert(step.id.clone()) {
                        emit(Event::Skipped {
                            id: step.id.clone(),
                            because: id.clone(),
                        });
                        summary.skipped.push(step.id.clone());
                    }
                }
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;
    use pretty_assertions::assert_eq;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn step(id: &str, deps: &[&str]) -> Step {
        Step {
            id: id.into(),
            title: id.into(),
            instruction: id.into(),
            kind: StepKind::Action,
            depends_on: deps.iter().map(std::string::ToString::to_string).collect(),
            reads: vec![],
            writes: vec![],
            fallback: None,
            produces: Vec::new(),
            uses: Vec::new(),
        }
    }

    /// Each step takes as many seconds as its id's trailing digit; ids starting with "bad"
    /// fail.
    async fn fake(step: Step, live: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> Outcome {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let secs: u64 = step
            .id
            .chars()
            .last()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(1)
            .into();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        live.fetch_sub(1, Ordering::SeqCst);
        if step.id.starts_with("bad") {
            Outcome::Failed("boom".into())
        } else {
            Outcome::Succeeded
        }
    }

    async fn schedule(plan: &Plan, parallel: usize) -> (Summary, Vec<Event>, usize) {
        let (live, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut events = Vec::new();
        let summary = run(
            plan,
            parallel,
            |s| fake(s, live.clone(), peak.clone()),
            |e| events.push(e),
        )
        .await;
        (summary, events, peak.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_branch_blocks_only_its_descendants() {
        let plan = Plan {
            goal: "g".into(),
            steps: vec![
                step("load1", &[]),
                step("bad2", &["load1"]),
                step("after_bad1", &["bad2"]),
                step("good3", &["load1"]),
                step("final1", &["after_bad1", "good3"]),
            ],
        };
        let start = tokio::time::Instant::now();
        let (summary, events, _) = schedule(&plan, 4).await;
        assert_eq!(
            summary,
            Summary {
                succeeded: vec!["load1".into(), "good3".into()],
                failed: vec!["bad2".into()],
                skipped: vec!["after_bad1".into(), "final1".into()],
            }
        );
        let started = |id: &str| Event::Started { id: id.into() };
        let finished = |id: &str, ok: bool| Event::Finished {
            id: id.into(),
            outcome: if ok {
                Outcome::Succeeded
            } else {
                Outcome::Failed("boom".into())
            },
        };
        let skipped = |id: &str| Event::Skipped {
            id: id.into(),
            because: "bad2".into(),
        };
        assert_eq!(
            events,
            vec![
                started("load1"),
                finished("load1", true),
                started("bad2"),
                started("good3"),
                finished("bad2", false),
                skipped("after_bad1"),
                skipped("final1"),
                finished("good3", true),
            ]
        );
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(4),
            "good3 ran beside bad2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_is_honoured() {
        let mut steps: Vec<Step> = (0..6).map(|i| step(&format!("s{i}_2"), &[])).collect();
        steps.push(step(
            "final1",
            &["s0_2", "s1_2", "s2_2", "s3_2", "s4_2", "s5_2"],
        ));
        let plan = Plan {
            goal: "g".into(),
            steps,
        };
        let start = tokio::time::Instant::now();
        let (summary, _, peak) = schedule(&plan, 2).await;
        assert_eq!((summary.succeeded.len(), peak), (7, 2));
        assert_eq!(start.elapsed(), Duration::from_secs(3 * 2 + 1));
        let start = tokio::time::Instant::now();
        let (_, _, peak) = schedule(&plan, 8).await;
        assert_eq!(peak, 6);
        assert_eq!(start.elapsed(), Duration::from_secs(2 + 1));
    }
}
