//! How far a run is and how long it has left: a sink in front of the run's sinks that follows
//! the plan and its steps' ends, and after each one emits [`RunEvent::Progress`] with an
//! estimate learnt from this run: the wall time each step has taken so far (repairs and
//! parallel steps included, steps kept from an earlier run left out), times the steps left,
//! plus one model call for the answer.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{RunEvent, Sink};

/// What the estimate has learnt so far.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The current plan's step ids.
    steps: BTreeSet<String>,
    /// Steps of the current plan that ended (done, failed for good or skipped).
    ended: BTreeSet<String>,
    /// When the first plan was adopted: steps are timed from there.
    since: Option<Instant>,
    /// Steps that ended by running here (not kept from an earlier run).
    measured: usize,
    /// When each step's first write began, to time one model call.
    writing: Vec<(String, Instant)>,
    /// Model calls timed (first write to first run of a step), in seconds.
    call_secs: Vec<f64>,
}

impl Tally {
    /// Take one event at `now`; the progress to emit after it, if it moved.
    pub(crate) fn see(&mut self, event: &RunEvent, now: Instant) -> Option<RunEvent> {
        match event {
            RunEvent::Planned { steps, .. } => {
                self.steps = steps.iter().map(|s| s.id.clone()).collect();
                let steps = &self.steps;
                self.ended.retain(|id| steps.contains(id));
                self.since.get_or_insert(now);
            }
            RunEvent::Writing { step, attempt: 1 } => {
                self.writing.push((step.clone(), now));
                return None;
            }
            RunEvent::Running { step, attempt: 1 } => {
                if let Some(at) = self.writing.iter().position(|(id, _)| id == step) {
                    let (_, began) = self.writing.swap_remove(at);
                    self.call_secs.push(now.duration_since(began).as_secs_f64());
                }
                return None;
            }
            RunEvent::StepDone { step, reused } => {
                if self.ended.insert(step.clone()) && !reused {
                    self.measured += 1;
                }
            }
            RunEvent::StepFailed { step, .. } => {
                if self.ended.insert(step.clone()) {
                    self.measured += 1;
                }
            }
            RunEvent::StepSkipped { step, .. } => {
                self.ended.insert(step.clone());
            }
            _ => return None,
        }
        let total = self.steps.len();
        let done = self.ended.len().min(total);
        Some(RunEvent::Progress {
            done,
            total,
            eta_s: self.estimate(done, total, now).map(|d| d.as_secs()),
        })
    }

    /// Seconds left: the mean wall time per step measured so far times the steps left, plus
    /// one model call for the answer; `None` until a step has been timed.
    fn estimate(&self, done: usize, total: usize, now: Instant) -> Option<Duration> {
        let since = self.since?;
        if self.measured == 0 {
            return None;
        }
        let per_step = now.duration_since(since).as_secs_f64() / self.measured as f64;
        let answer = if self.call_secs.is_empty() {
            0.0
        } else {
            self.call_secs.iter().sum::<f64>() / self.call_secs.len() as f64
        };
        let left = per_step * total.saturating_sub(done) as f64 + answer;
        Some(Duration::from_secs_f64(left.max(0.0)))
    }
}

/// Passes every event on, each followed by the progress it moved.
pub(crate) struct Tracking<'a> {
    inner: &'a (dyn Sink + 'a),
    tally: Mutex<Tally>,
}

impl<'a> Tracking<'a> {
    pub(crate) fn new(inner: &'a (dyn Sink + 'a)) -> Self {
        Tracking {
            inner,
            tally: Mutex::new(Tally::default()),
        }
    }
}

impl Sink for Tracking<'_> {
    fn emit(&self, event: &RunEvent) {
        self.inner.emit(event);
        let progress = self
            .tally
            .lock()
            .expect("progress tally poisoned")
            .see(event, Instant::now());
        if let Some(progress) = progress {
            self.inner.emit(&progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PlannedStep, describe_eta};

    fn planned(ids: &[&str]) -> RunEvent {
        RunEvent::Planned {
            version: 1,
            steps: ids
                .iter()
                .map(|id| PlannedStep {
                    id: (*id).into(),
                    title: String::new(),
                    depends_on: Vec::new(),
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    fn done(step: &str, reused: bool) -> RunEvent {
        RunEvent::StepDone {
            step: step.into(),
            reused,
        }
    }

    fn progress(event: Option<RunEvent>) -> (usize, usize, Option<u64>) {
        match event {
            Some(RunEvent::Progress { done, total, eta_s }) => (done, total, eta_s),
            other => panic!("no progress: {other:?}"),
        }
    }

    #[test]
    fn the_estimate_is_learnt_from_the_steps_timed_so_far() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut tally = Tally::default();
        assert_eq!(
            progress(tally.see(&planned(&["a", "b", "c", "d"]), at(0))),
            (0, 4, None)
        );
        assert_eq!(
            tally.see(
                &RunEvent::Writing {
                    step: "a".into(),
                    attempt: 1
                },
                at(0)
            ),
            None
        );
        tally.see(
            &RunEvent::Running {
                step: "a".into(),
                attempt: 1,
            },
            at(10),
        );
        // One step in 40 s (a 10 s model call): 3 steps left at 40 s each, then the answer.
        assert_eq!(
            progress(tally.see(&done("a", false), at(40))),
            (1, 4, Some(130))
        );
        // Two steps in 60 s: 30 s a step.
        assert_eq!(
            progress(tally.see(&done("b", false), at(60))),
            (2, 4, Some(70))
        );
        // A replan keeps the ended steps it keeps and counts the new plan's steps.
        assert_eq!(progress(tally.see(&planned(&["a", "b", "e"]), at(61))).0, 2);
        assert_eq!(
            progress(tally.see(&planned(&["a", "e"]), at(62))),
            (1, 2, Some(41))
        );
        // A step ending twice counts once.
        assert_eq!(progress(tally.see(&done("a", false), at(62))).0, 1);
    }

    #[test]
    fn kept_steps_count_as_done_but_not_as_timed() {
        let t0 = Instant::now();
        let mut tally = Tally::default();
        tally.see(&planned(&["a", "b"]), t0);
        assert_eq!(progress(tally.see(&done("a", true), t0)), (1, 2, None));
        let skipped = RunEvent::StepSkipped {
            step: "b".into(),
            because: "a".into(),
        };
        assert_eq!(progress(tally.see(&skipped, t0)), (2, 2, None));
    }

    #[test]
    fn the_time_left_reads_in_minutes() {
        assert_eq!(describe_eta(None), "estimating time left");
        assert_eq!(describe_eta(Some(59)), "under a minute left");
        assert_eq!(describe_eta(Some(61)), "about 2 min left");
        assert_eq!(describe_eta(Some(120)), "about 2 min left");
    }
}
