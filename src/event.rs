//! What a run reports as it goes: one [`RunEvent`] stream, rendered for people (progress
//! lines) or as JSONL, and always appended to the run folder's `events.jsonl`.

use std::io::Write;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// Run id.
        run: String,
        /// The goal.
        goal: String,
    },
    /// Inputs were profiled.
    Profiled {
        /// Input file names.
        inputs: Vec<String>,
    },
    /// A plan (first or replanned) was adopted.
    Planned {
        /// Its version: 1 for the first, then one more per replan.
        version: usize,
        /// Its steps in plan order.
        steps: Vec<PlannedStep>,
        /// Planner notes.
        notes: Vec<String>,
    },
    /// The model is writing a step's script.
    Writing {
        /// Step id.
        step: String,
        /// Attempt number, from 1.
        attempt: usize,
    },
    /// The script is running.
    Running {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: usize,
    },
    /// An attempt ended.
    Attempted {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: usize,
        /// Tokens used by the run so far.
        #[serde(default)]
        tokens: u64,
        /// Whether the step's checks passed.
        ok: bool,
        /// What went wrong, when it did.
        problem: Option<String>,
    },
    /// An attempt's script left variables for the steps after it.
    StateSaved {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: usize,
        /// The variables kept.
        variables: Vec<String>,
        /// The names not kept, each with why (`name: why`).
        skipped: Vec<String>,
        /// Pickled bytes kept.
        bytes: u64,
    },
    /// A step is done.
    StepDone {
        /// Step id.
        step: String,
        /// True when it was kept from an earlier run (resume).
        reused: bool,
    },
    /// A step failed for good (repairs spent).
    StepFailed {
        /// Step id.
        step: String,
        /// The last problem.
        problem: String,
    },
    /// A step's repairs are spent: its plan-given fallback is tried before any replan.
    FallingBack {
        /// Step id.
        step: String,
        /// The problem the repairs could not fix.
        problem: String,
    },
    /// The model gave no valid plan (first plan or replan) within its tries.
    PlanningFailed {
        /// Why, with the last validation errors.
        problem: String,
    },
    /// A step will not run because an ancestor failed.
    StepSkipped {
        /// Step id.
        step: String,
        /// The failed ancestor.
        because: String,
    },
    /// The plan is being replaced from a failed step on.
    Replanning {
        /// The failed step.
        step: String,
        /// Replans left after this one.
        left: usize,
    },
    /// A budget ran out.
    BudgetSpent {
        /// Which one.
        budget: String,
    },
    /// How far the run is: steps ended of the current plan's, and the time left as this run
    /// has measured it (`None` until a step has been timed).
    Progress {
        /// Steps of the current plan that ended (done, failed or skipped).
        done: usize,
        /// Steps in the current plan.
        total: usize,
        /// Estimated seconds left.
        eta_s: Option<u64>,
    },
    /// The final answer.
    Answered {
        /// The answer text.
        answer: String,
    },
    /// The run ended.
    RunFinished {
        /// Whether the goal was achieved.
        achieved: bool,
        /// Tokens used in all.
        tokens: u64,
        /// Wall time in milliseconds.
        millis: u64,
    },
}

/// A step as a [`RunEvent::Planned`] names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The steps it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl PlannedStep {
    /// The steps of `plan`, in plan order.
    pub fn all(plan: &crate::plan::Plan) -> Vec<PlannedStep> {
        plan.steps
            .iter()
            .map(|s| PlannedStep {
                id: s.id.clone(),
                title: s.title.clone(),
                depends_on: s.depends_on.clone(),
            })
            .collect()
    }
}

/// Where events go.
pub trait Sink: Send + Sync {
    /// Take one event.
    fn emit(&self, event: &RunEvent);
}

/// Discards events.
pub struct Silent;

impl Sink for Silent {
    fn emit(&self, _event: &RunEvent) {}
}

/// Keeps events in memory (tests, batch).
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<RunEvent>>);

impl Sink for Collect {
    fn emit(&self, event: &RunEvent) {
        self.0
            .lock()
            .expect("collector poisoned")
            .push(event.clone());
    }
}

/// One JSON object per line on a writer (stdout for `--json`).
pub struct Jsonl<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> Sink for Jsonl<W> {
    fn emit(&self, event: &RunEvent) {
        let mut out = self.0.lock().expect("jsonl sink poisoned");
        let _ = serde_json::to_writer(&mut *out, event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// "about 3 min left", for people.
pub fn describe_eta(eta_s: Option<u64>) -> String {
    match eta_s {
        None => "estimating time left".to_string(),
        Some(s) if s < 60 => "under a minute left".to_string(),
        Some(s) => format!("about {} min left", s.div_ceil(60)),
    }
}

/// Progress lines for people.
pub struct Human<W: Write + Send>(pub Mutex<W>);

/// The line a person sees for an event.
pub fn describe(event: &RunEvent) -> String {
    match event {
        RunEvent::RunStarted { run, goal } => format!("run {run}: {goal}"),
        RunEvent::Profiled { inputs } => {
            format!("profiled {} input(s): {}", inputs.len(), inputs.join(", "))
        }
        RunEvent::Planned {
            version,
            steps,
            notes,
        } => {
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            let mut line = format!(
                "plan v{version}: {} step(s): {}",
                steps.len(),
                ids.join(", ")
            );
            for note in notes {
                line.push_str(&format!("\n  note: {note}"));
            }
            line
        }
        RunEvent::Writing { step, attempt } if *attempt > 1 => {
            format!("  {step}: repairing (attempt {attempt})")
        }
        RunEvent::Writing { step, .. } => format!("  {step}: writing"),
        RunEvent::Running { step, attempt } => format!("  {step}: running (attempt {attempt})"),
        RunEvent::Attempted {
            step,
            attempt,
            ok: true,
            ..
        } => format!("  {step}: attempt {attempt} passed"),
        RunEvent::Attempted {
            step,
            attempt,
            ok: false,
            problem,
            ..
        } => {
            format!(
                "  {step}: attempt {attempt} failed: {}",
                problem.as_deref().unwrap_or("unknown")
            )
        }
        RunEvent::StateSaved {
            step,
            variables,
            skipped,
            bytes,
            ..
        } => {
            let mut line = format!(
                "  {step}: kept {} variable(s) ({} KiB): {}",
                variables.len(),
                bytes.div_ceil(1024),
                variables.join(", ")
            );
            // Names not kept are said, so no later NameError comes as a surprise; imports
            // are left out of the line, as every script has them.
            let notable: Vec<&str> = skipped
                .iter()
                .filter(|s| !s.contains("a module"))
                .map(String::as_str)
                .collect();
            if !notable.is_empty() {
                line.push_str(&format!("; not kept: {}", notable.join("; ")));
            }
            line
        }
        RunEvent::StepDone { step, reused: true } => format!("  {step}: done (kept from before)"),
        RunEvent::StepDone {
            step,
            reused: false,
        } => format!("  {step}: done"),
        RunEvent::StepFailed { step, problem } => format!("  {step}: failed: {problem}"),
        RunEvent::StepSkipped { step, because } => format!("  {step}: skipped ({because} failed)"),
        RunEvent::FallingBack { step, problem } => {
            format!("  {step}: trying its fallback after: {problem}")
        }
        RunEvent::PlanningFailed { problem } => format!("planning failed: {problem}"),
        RunEvent::Replanning { step, left } => {
            format!("replanning from {step} ({left} replan(s) left after this)")
        }
        RunEvent::BudgetSpent { budget } => format!("budget spent: {budget}"),
        RunEvent::Answered { answer } => format!("answer:\n{answer}"),
        RunEvent::Progress { done, total, eta_s } => {
            format!("{done} of {total} step(s) ended, {}", describe_eta(*eta_s))
        }
        RunEvent::RunFinished {
            achieved,
            tokens,
            millis,
        } => format!(
            "{} in {:.1} s, {tokens} tokens",
            if *achieved {
                "goal achieved"
            } else {
                "goal not achieved"
            },
            *millis as f64 / 1000.0
        ),
    }
}

impl<W: Write + Send> Sink for Human<W> {
    fn emit(&self, event: &RunEvent) {
        let mut out = self.0.lock().expect("human sink poisoned");
        let _ = writeln!(out, "{}", crate::text::strip_escapes(&describe(event)));
    }
}

/// Sends every event to two sinks (the run folder and the user).
pub struct Tee<'a, A: Sink, B: Sink>(pub &'a A, pub &'a B);

impl<A: Sink, B: Sink> Sink for Tee<'_, A, B> {
    fn emit(&self, event: &RunEvent) {
        self.0.emit(event);
        self.1.emit(event);
    }
}
