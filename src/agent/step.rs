//! One step: draft a script (its container starting meanwhile), check the reply, run it,
//! judge the result, and repair until it passes or its repairs are spent; then its fallback.

use std::time::Instant;

use super::attempts::{Attempts, Checked};
use super::{Agent, Ctx, first_line};
use crate::error::Result;
use crate::event::RunEvent;
use crate::hint::{self, Failure};
use crate::llm::{Llm, Message, Request};
use crate::plan::{Plan, Step, StepKind};
use crate::prompt;
use crate::rules::Rules;
use crate::run::AttemptRecord;
use crate::sandbox::state::{Save, StateIo};
use crate::sandbox::{Job, Output, Sandbox, Status, Warm};
use crate::schedule::Outcome;

impl<L: Llm, S: Sandbox> Agent<'_, L, S> {
    /// Run a step; when its repairs are spent and the plan names a fallback for it, run the
    /// fallback instruction in its place (same id, reads and writes) before giving up.
    pub(super) async fn step_or_fallback(
        &self,
        ctx: &Ctx<'_>,
        plan: &Plan,
        step: &Step,
    ) -> Result<Outcome> {
        let mut outcome = self.step(ctx, plan, step).await?;
        if let (Outcome::Failed(problem), Some(fallback)) = (&outcome, &step.fallback)
            && ctx.budgets.spent().is_none()
        {
            ctx.emit(RunEvent::FallingBack {
                step: step.id.clone(),
                problem: first_line(problem),
            });
            let alternative = Step {
                instruction: fallback.clone(),
                fallback: None,
                ..step.clone()
            };
            outcome = self.step(ctx, plan, &alternative).await?;
        }
        if let Outcome::Failed(problem) = &outcome {
            ctx.emit(RunEvent::StepFailed {
                step: step.id.clone(),
                problem: first_line(problem),
            });
        }
        Ok(outcome)
    }

    /// Draft, check, run and judge one step's script, repairing up to the limit.
    async fn step(&self, ctx: &Ctx<'_>, plan: &Plan, step: &Step) -> Result<Outcome> {
        let inputs = ctx.folder.step_mounts(plan, step)?;
        let states = ctx.folder.step_states(plan, step);
        // The variables loaded decide the result as much as the files read.
        let hashes: Vec<&str> = inputs
            .iter()
            .map(|(_, h)| h.as_str())
            .chain(states.iter().map(|(_, _, h)| h.as_str()))
            .collect();
        // Resume: a step done before, with the same script, inputs and image, is kept.
        if ctx
            .folder
            .reusable(&step.id, &hashes, &ctx.info.image)
            .is_some()
        {
            ctx.emit(RunEvent::StepDone {
                step: step.id.clone(),
                reused: true,
            });
            return Ok(Outcome::Succeeded);
        }
        let upstream = ctx.folder.upstream(plan, step);
        let defined: Vec<String> = upstream
            .iter()
            .flat_map(|up| up.state.variables.iter().map(|v| v.name.clone()))
            .collect();
        let first = step_messages(ctx, plan, step, &upstream);
        let mut tries = Attempts::new(first, ctx.folder.attempts_made(&step.id));
        while tries.may_try(self.options.max_repairs) {
            if let Some(budget) = ctx.budgets.check(ctx.sink) {
                return Ok(Outcome::Failed(budget.ran_out()));
            }
            let attempt = tries.start();
            ctx.emit(RunEvent::Writing {
                step: step.id.clone(),
                attempt,
            });
            let dir = ctx.folder.attempt_dir(&step.id, attempt)?;
            let job = Job {
                inputs: inputs.iter().map(|(p, _)| p.clone()).collect(),
                out_dir: dir.join("files"),
                run_id: ctx.info.id.clone(),
                state: StateIo {
                    load: states
                        .iter()
                        .map(|(path, dep, _)| (path.clone(), dep.clone()))
                        .collect(),
                    save: Some(Save {
                        step: step.id.clone(),
                        dir: dir.join("state"),
                        cap: self.options.max_state,
                        // Past the cap, only a step whose variables others wait for fails.
                        required: plan.steps.iter().any(|s| s.depends_on.contains(&step.id)),
                    }),
                },
            };
            // Draft: the container starts while the model writes.
            ctx.budgets.container();
            let request = tries.request();
            // Each timed on its own: the container's start and the model's writing overlap.
            let ((warm, start), (reply, model)) = tokio::join!(
                async {
                    let started = Instant::now();
                    let done = self.sandbox.prepare(&job).await;
                    (done, started.elapsed())
                },
                async {
                    let started = Instant::now();
                    let done = match ctx.take_draft(&request) {
                        Some(drafted) => Ok(drafted),
                        None => self.llm.complete(&request).await,
                    };
                    (done, started.elapsed())
                }
            );
            let mut model_ms = model.as_millis() as u64;
            let start_ms = start.as_millis() as u64;
            // A prompt past the model's context: once, the oldest of what it carries goes
            // (the failed script, the middle of long messages) and the same write is asked
            // again.
            let reply = match reply {
                Err(err) if is_context_overflow(&err) && tries.shrink() => {
                    let started = Instant::now();
                    let again = self.llm.complete(&tries.request()).await;
                    model_ms += started.elapsed().as_millis() as u64;
                    again
                }
                other => other,
            };
            let reply = match ctx.budgets.within(reply, ctx.sink)? {
                Ok(reply) => reply,
                Err(budget) => return Ok(Outcome::Failed(budget.ran_out())),
            };
            let warm = warm?;
            // Check: a reply that cannot run never reaches the container (its guard
            // removes it unused).
            let script = match tries.check(&reply.text) {
                Checked::Run(script) => script,
                Checked::Rejected { problem, script } => {
                    drop(warm);
                    if let Some(script) = script {
                        crate::fsutil::write_atomic(&dir.join("script.py"), script.as_bytes())?;
                    }
                    self.attempted(ctx, step, attempt, Some(&problem));
                    continue;
                }
            };
            crate::fsutil::write_atomic(&dir.join("script.py"), script.as_bytes())?;
            ctx.emit(RunEvent::Running {
                step: step.id.clone(),
                attempt,
            });
            // Run, then judge; the run's wall time bounds the script as much as its own limit.
            let output = match ctx.budgets.script_within(warm.run(&script), ctx.sink).await {
                Ok(output) => output?,
                Err(budget) => {
                    self.attempted(ctx, step, attempt, Some(&budget.ran_out()));
                    return Ok(Outcome::Failed(budget.ran_out()));
                }
            };
            let problem = judge(step, &job, &output, &script, &self.options.rules, &defined);
            let record = AttemptRecord {
                status: output.status.clone(),
                ok: problem.is_none(),
                problem: problem.clone(),
                start_ms,
                run_ms: output.run.as_millis() as u64,
                model_ms,
                hidden_ms: start_ms.min(model_ms),
                stdout_bytes: output.stdout_bytes,
                stderr_bytes: output.stderr_bytes,
                artifacts: output.artifacts.clone(),
            };
            ctx.folder.write_attempt(&dir, &output, &record)?;
            if let Some(state) = &output.state {
                ctx.emit(RunEvent::StateSaved {
                    step: step.id.clone(),
                    attempt,
                    variables: state.variables.iter().map(|v| v.name.clone()).collect(),
                    skipped: state
                        .skipped
                        .iter()
                        .map(|s| format!("{}: {}", s.name, s.why))
                        .collect(),
                    bytes: state.bytes,
                });
            }
            self.attempted(ctx, step, attempt, problem.as_deref());
            let Some(problem) = problem else {
                let image = &ctx.info.image;
                ctx.folder
                    .pass(&step.id, attempt, &script, &hashes, image, &output)?;
                ctx.emit(RunEvent::StepDone {
                    step: step.id.clone(),
                    reused: false,
                });
                return Ok(Outcome::Succeeded);
            };
            tries.failed(script, problem);
        }
        Ok(Outcome::Failed(tries.problem))
    }

    fn attempted(&self, ctx: &Ctx<'_>, step: &Step, attempt: usize, problem: Option<&str>) {
        ctx.emit(RunEvent::Attempted {
            step: step.id.clone(),
            attempt,
            tokens: self.llm.meter().totals().total(),
            ok: problem.is_none(),
            problem: problem.map(first_line),
        });
    }
}

/// Whether the model server refused a request for being longer than its context.
fn is_context_overflow(err: &crate::error::Error) -> bool {
    let crate::error::Error::LlmRefused {
        status, message, ..
    } = err
    else {
        return false;
    };
    let message = message.to_lowercase();
    status.as_u16() == 400
        && (message.contains("context length")
            || message.contains("context size")
            || message.contains("context window")
            || message.contains("maximum context")
            || message.contains("too many tokens")
            || (message.contains("context") && message.contains("exceed")))
}

/// What is wrong with an attempt, for the model and the report; `None` when it passed: the
/// script exited 0, wrote every file the step declares, none empty and every chart a
/// readable image, and left every variable it produces.
fn judge(
    step: &Step,
    job: &Job,
    output: &Output,
    script: &str,
    rules: &Rules,
    defined: &[String],
) -> Option<String> {
    let missing: Vec<String> = step
        .writes
        .iter()
        .filter_map(|w| {
            let path = job.out_dir.join(w);
            if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) {
                Some(w.clone())
            } else if crate::plan::is_chart(w) && !crate::fsutil::is_readable_image(&path) {
                Some(format!("{w} (not a readable image)"))
            } else {
                None
            }
        })
        .collect();
    let left = |name: &String| {
        output
            .state
            .as_ref()
            .is_some_and(|s| s.variables.iter().any(|v| &v.name == name))
    };
    let undefined: Vec<String> = step.produces.iter().filter(|n| !left(n)).cloned().collect();
    if output.status.success() && missing.is_empty() && undefined.is_empty() {
        return None;
    }
    let stderr = hint::digest::with_source_lines(&output.stderr, script);
    let digest = hint::digest::error_digest(&stderr, 2500);
    let failure = Failure {
        status: &output.status,
        stderr: &stderr,
        missing: &missing,
        undefined: &undefined,
        defined,
    };
    let mut text = match (&output.status, step.kind) {
        (Status::Exited(0), _) if missing.is_empty() => format!(
            "The script exited 0 but did not leave the variables {}.",
            undefined.join(", ")
        ),
        (Status::Exited(0), _) => format!(
            "The script exited 0 but did not write {}.",
            missing.join(", ")
        ),
        (Status::Exited(code), StepKind::Verify) => format!("The check failed (exit code {code})."),
        (status, StepKind::Action | StepKind::Verify) => format!("The script {status}."),
    };
    if !digest.trim().is_empty() {
        text.push_str(&format!("\nError output:\n{digest}"));
    }
    text.push_str(&format!("\nHint: {}", hint::failure_hint(&failure, rules)));
    Some(text)
}

/// A step's first request to the model, as its first attempt makes it.
pub(super) fn first_request(ctx: &Ctx<'_>, plan: &Plan, step: &Step) -> Request {
    let upstream = ctx.folder.upstream(plan, step);
    Attempts::new(step_messages(ctx, plan, step, &upstream), 0).request()
}

/// The messages of a step's first write, over what its dependencies left.
fn step_messages(
    ctx: &Ctx<'_>,
    plan: &Plan,
    step: &Step,
    upstream: &[prompt::Upstream],
) -> Vec<Message> {
    prompt::step_messages(
        ctx.info.question(),
        step,
        &ctx.profiles,
        upstream,
        ends_analysis(plan, step),
    )
}

/// Whether a step ends the analysis: nothing depends on it, it computes rather than checks,
/// and it does not only draw (unless every other last step draws too, as when a chain that
/// ends with its chart was fused into one step). Such a step sees the goal and prints its
/// answer names.
fn ends_analysis(plan: &Plan, step: &Step) -> bool {
    let last = |s: &Step| {
        s.kind == StepKind::Action && !plan.steps.iter().any(|d| d.depends_on.contains(&s.id))
    };
    let draws = |s: &Step| s.writes.iter().any(|w| crate::plan::is_chart(w));
    last(step)
        && (!draws(step)
            || !plan
                .steps
                .iter()
                .any(|s| s.id != step.id && last(s) && !draws(s)))
}
#[cfg(test)]
mod tests;
