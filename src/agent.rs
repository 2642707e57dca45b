//! The agent: plan, then for each ready step write a script (its container warming
//! meanwhile), run it, check it, repair it, replan around it when repairs fail, and finally
//! synthesize an answer grounded in what the steps printed. Bounded everywhere: repairs,
//! replans, wall time, tokens, containers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::{RunEvent, Sink, Tee};
use crate::llm::{Llm, Meter, Metered, Request};
use crate::plan::{Plan, Step, StepKind};
use crate::planner::{Mode, Planner};
use crate::profile::Profile;
use crate::prompt;
use crate::run::{DoneStep, RunFolder, RunInfo};
use crate::sandbox::{Job, Output, Sandbox, Status, Warm};
use crate::schedule::{self, Outcome};

/// Largest script accepted from the model.
const MAX_SCRIPT: usize = 64 * 1024;

/// How a run behaves; every bound has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Planning mode.
    pub mode: Mode,
    /// Plan critique rounds.
    pub reflect: usize,
    /// Steps run at once.
    pub parallel: usize,
    /// Repairs per step before replanning.
    pub max_repairs: usize,
    /// Replans per run.
    pub max_replans: usize,
    /// Most steps in a plan.
    pub max_steps: usize,
    /// Wall-time budget for the whole run.
    pub wall: Option<Duration>,
    /// Most containers (script runs) for the whole run.
    pub max_containers: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Dag,
            reflect: 0,
            parallel: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            max_repairs: 2,
            max_replans: 3,
            max_steps: 12,
            wall: None,
            max_containers: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// Whether the goal was achieved: every step passed and the answer has what was asked.
    pub achieved: bool,
    /// The final answer (or an honest account of what could not be done).
    pub answer: String,
    /// The budget that ended the run early, if one did.
    pub ended_by: Option<String>,
    /// The run folder.
    pub dir: PathBuf,
}

/// Runs goals with a model and a sandbox.
pub struct Agent<'a, L, S> {
    llm: Metered<&'a L>,
    sandbox: &'a S,
    options: Options,
}

/// Shared, mutable facts of one run.
struct Ctx<'a> {
    folder: &'a RunFolder,
    info: RunInfo,
    profiles: Vec<Profile>,
    started: Instant,
    containers: AtomicUsize,
    spent: Mutex<Option<String>>,
    sink: &'a (dyn Sink + 'a),
}

impl Ctx<'_> {
    fn emit(&self, event: RunEvent) {
        self.sink.emit(&event);
    }

    fn spent(&self) -> Option<String> {
        self.spent.lock().expect("budget poisoned").clone()
    }

    fn spend(&self, budget: &str) {
        let mut spent = self.spent.lock().expect("budget poisoned");
        if spent.is_none() {
            *spent = Some(budget.to_string());
            drop(spent);
            self.emit(RunEvent::BudgetSpent {
                budget: budget.to_string(),
            });
        }
    }
}

/// One attempt's record, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AttemptRecord {
    status: Status,
    ok: bool,
    problem: Option<String>,
    start_ms: u64,
    run_ms: u64,
    model_ms: u64,
    stdout_bytes: u64,
    stderr_bytes: u64,
    artifacts: Vec<crate::sandbox::Artifact>,
}

impl<'a, L: Llm, S: Sandbox> Agent<'a, L, S> {
    /// An agent over `llm` and `sandbox`; `meter` counts tokens (and holds the token budget).
    pub fn new(llm: &'a L, sandbox: &'a S, options: Options, meter: Arc<Meter>) -> Self {
        Agent {
            llm: Metered::new(llm, meter),
            sandbox,
            options,
        }
    }

    /// Run (or resume) the goal of `folder` to the end; events go to the folder and `sink`.
    pub async fn run(&self, folder: &RunFolder, sink: &impl Sink) -> Result<Finished> {
        let tee = Tee(folder, sink);
        let info = folder.info()?;
        let profiles = info
            .inputs
            .iter()
            .map(|input| crate::profile::profile(&input.path))
            .collect::<Result<Vec<_>>>()?;
        let ctx = Ctx {
            folder,
            info,
            profiles,
            started: Instant::now(),
            containers: AtomicUsize::new(0),
            spent: Mutex::new(None),
            sink: &tee,
        };
        ctx.emit(RunEvent::RunStarted {
            run: ctx.info.id.clone(),
            goal: ctx.info.goal.clone(),
        });
        ctx.emit(RunEvent::Profiled {
            inputs: ctx.profiles.iter().map(|p| p.name.clone()).collect(),
        });

        let mut planner = Planner::new(&self.llm);
        planner.limits.max_steps = self.options.max_steps;
        let mut version = folder.state().plan_version;
        let mut planned = match folder.plan()? {
            Some(planned) => planned,
            None => match planner
                .plan(
                    &ctx.info.goal,
                    &ctx.profiles,
                    self.options.mode,
                    self.options.reflect,
                )
                .await
            {
                Ok(planned) => {
                    version = 1;
                    folder.write_plan(version, &crate::planner::to_json(&planned))?;
                    planned
                }
                Err(Error::BudgetExhausted { .. }) => {
                    ctx.spend("tokens");
                    return self.finish(&ctx, None, false).await;
                }
                // A model that never gives a valid plan still gets the goal as one script:
                // the plan-free baseline, named in the plan's notes.
                Err(Error::LlmReply(why)) => {
                    ctx.emit(RunEvent::PlanningFailed {
                        problem: why.clone(),
                    });
                    let planned = crate::planner::Planned {
                        plan: crate::planner::single_step(&ctx.info.goal, &ctx.profiles),
                        mode: crate::planner::Mode::None,
                        notes: vec![format!(
                            "planning failed ({}); the goal runs as one script",
                            first_line(&why)
                        )],
                    };
                    version = 1;
                    folder.write_plan(version, &crate::planner::to_json(&planned))?;
                    planned
                }
                Err(err) => {
                    ctx.emit(RunEvent::PlanningFailed {
                        problem: format!("{err:#}"),
                    });
                    return Err(err);
                }
            },
        };
        ctx.emit(RunEvent::Planned {
            version,
            steps: crate::event::PlannedStep::all(&planned.plan),
            notes: planned.notes.clone(),
        });

        let mut failed_for_good = false;
        loop {
            let plan = planned.plan.clone();
            let problems: Mutex<BTreeMap<String, String>> = Mutex::default();
            let summary = schedule::run(
                &plan,
                self.options.parallel,
                |step| {
                    let (ctx, plan, problems) = (&ctx, &plan, &problems);
                    async move {
                        match self.step_or_fallback(ctx, plan, &step).await {
                            Ok(Outcome::Failed(problem)) => {
                                problems
                                    .lock()
                                    .expect("poisoned")
                                    .insert(step.id.clone(), problem.clone());
                                Outcome::Failed(problem)
                            }
                            Ok(outcome) => outcome,
                            Err(err) => {
                                let problem = format!("{err:#}");
                                problems
                                    .lock()
                                    .expect("poisoned")
                                    .insert(step.id.clone(), problem.clone());
                                Outcome::Failed(problem)
                            }
                        }
                    }
                },
                |event| match event {
                    schedule::Event::Skipped { id, because } => {
                        ctx.emit(RunEvent::StepSkipped { step: id, because })
                    }
                    schedule::Event::Started { .. } | schedule::Event::Finished { .. } => {}
                },
            )
            .await;
            if summary.failed.is_empty() {
                break;
            }
            let replans = folder.state().replans;
            if ctx.spent().is_some() || replans >= self.options.max_replans {
                failed_for_good = true;
                break;
            }
            let failed = summary.failed[0].clone();
            let problem = problems
                .lock()
                .expect("poisoned")
                .get(&failed)
                .cloned()
                .unwrap_or_default();
            ctx.emit(RunEvent::Replanning {
                step: failed.clone(),
                left: self.options.max_replans - replans - 1,
            });
            let replanned = match planner
                .replan(&plan, &ctx.profiles, &failed, &problem)
                .await
            {
                Ok(replanned) => replanned,
                Err(Error::BudgetExhausted { .. }) => {
                    ctx.spend("tokens");
                    failed_for_good = true;
                    break;
                }
                // No new plan (an unusable reply, or the model failing mid-run): the run
                // ends here, cleanly, with what the finished steps established.
                Err(err) => {
                    ctx.emit(RunEvent::PlanningFailed {
                        problem: format!("{err:#}"),
                    });
                    failed_for_good = true;
                    break;
                }
            };
            let dropped: Vec<String> = plan
                .steps
                .iter()
                .filter(|s| !replanned.steps.iter().any(|r| r.id == s.id))
                .map(|s| s.id.clone())
                .collect();
            folder.replanned(&dropped)?;
            version += 1;
            planned = crate::planner::Planned {
                plan: replanned,
                mode: planned.mode,
                notes: vec![format!(
                    "replanned after {failed} failed: {}",
                    first_line(&problem)
                )],
            };
            folder.write_plan(version, &crate::planner::to_json(&planned))?;
            ctx.emit(RunEvent::Planned {
                version,
                steps: crate::event::PlannedStep::all(&planned.plan),
                notes: planned.notes.clone(),
            });
        }
        self.finish(&ctx, Some(&planned.plan), !failed_for_good)
            .await
    }

    /// Synthesize, write answer.md, report.md and report.html, emit the end.
    async fn finish(
        &self,
        ctx: &Ctx<'_>,
        plan: Option<&Plan>,
        all_passed: bool,
    ) -> Result<Finished> {
        let state = ctx.folder.state();
        let mut results: Vec<(String, String)> = Vec::new();
        // What the steps printed, without their file lists: a file may be named after an
        // answer's format, and a file name is not an answer.
        let mut printed_text = String::new();
        if let Some(plan) = plan {
            for step in &plan.steps {
                if let Some(done) = state.done.get(&step.id) {
                    let attempt = ctx.folder.attempt_dir(&step.id, done.attempt)?;
                    let stdout =
                        std::fs::read_to_string(attempt.join("stdout")).unwrap_or_default();
                    let files: Vec<&String> = done.outputs.keys().collect();
                    printed_text.push_str(&stdout);
                    printed_text.push('\n');
                    let mut text = stdout;
                    if !files.is_empty() {
                        text.push_str(&format!(
                            "\n(files: {})",
                            files
                                .iter()
                                .map(|f| f.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    // A step that wrote its result to a small file and printed nothing still
                    // gives the answer something to read.
                    for (name, content) in small_text_files(&attempt.join("files"), &files) {
                        text.push_str(&format!("\n(file {name}:\n{content})"));
                        printed_text.push_str(&content);
                        printed_text.push('\n');
                    }
                    results.push((step.id.clone(), text));
                }
            }
        }
        let names = prompt::answer_names(&ctx.info.goal);
        // A value that is the goal's own placeholder (`@country[country_name]` copied from
        // the goal), or NaN, was not computed.
        let computed = |name: &str, value: &str| {
            !prompt::is_placeholder(&ctx.info.goal, name, value) && !prompt::is_no_result(value)
        };
        let printed = prompt::answer_values_where(&printed_text, computed);
        let mut answer;
        let nothing = results.iter().all(|(_, out)| out.trim().is_empty());
        if nothing {
            // Never ask a model to reformat nothing: it would invent a value.
            answer = "Could not answer: no step produced any result.".to_string();
            if let Some(budget) = ctx.spent() {
                answer.push_str(&format!(" The {budget} budget ran out."));
            }
        } else if !names.is_empty() && names.iter().all(|n| printed.iter().any(|(p, _)| p == n)) {
            answer = names
                .iter()
                .filter_map(|n| {
                    printed
                        .iter()
                        .find(|(p, _)| p == n)
                        .map(|(p, v)| format!("@{p}[{v}]"))
                })
                .collect::<Vec<_>>()
                .join(" ");
        } else {
            let request = Request {
                temperature: Some(0.0),
                ..Request::new(prompt::synthesis_messages(&ctx.info.goal, &results))
            };
            answer = match self.llm.complete(&request).await {
                Ok(reply) => reply.text.trim().to_string(),
                Err(Error::BudgetExhausted { .. }) => {
                    ctx.spend("tokens");
                    results
                        .iter()
                        .map(|(id, out)| {
                            format!("[{id}]\n{}", crate::text::truncate_middle(out.trim(), 800))
                        })
                        .collect::<Vec<_>>()
                        .join("\n\n")
                }
                Err(err) => return Err(err),
            };
            // Values the steps printed win over whatever the synthesis wrote for them, and a
            // written value counts only if it appears in what the steps printed.
            let written = prompt::answer_values_where(&answer, computed);
            let mut fixed = Vec::new();
            for name in &names {
                let from_text = written
                    .iter()
                    .find(|(p, v)| p == name && prompt::grounded_in(v, &printed_text));
                match printed.iter().find(|(p, _)| p == name).or(from_text) {
                    Some((p, v)) => fixed.push(format!("@{p}[{v}]")),
                    None => fixed.push(format!("(could not determine @{name})")),
                }
            }
            if !names.is_empty() {
                let tokens =
                    regex::Regex::new(r"@[A-Za-z_][A-Za-z0-9_]*\[[^\]\n]*\]").expect("valid regex");
                let prose = tokens.replace_all(&answer, "").trim().to_string();
                answer = format!("{prose}\n\n{}", fixed.join(" "));
            }
        }
        let answer = prompt::round_as_asked(&ctx.info.goal, &answer);
        let has_names = names
            .iter()
            .all(|n| prompt::answer_values(&answer).iter().any(|(p, _)| p == n));
        let achieved = all_passed && !nothing && ctx.spent().is_none() && has_names;
        ctx.folder.write_text("answer.md", &format!("{answer}\n"))?;
        ctx.emit(RunEvent::Answered {
            answer: answer.clone(),
        });
        self.sandbox.settle().await;
        let totals = self.llm.meter().totals();
        let report = crate::report::Report::gather(
            ctx.folder,
            plan,
            &answer,
            &totals,
            ctx.started.elapsed(),
        )?;
        ctx.folder
            .write_text("report.md", &crate::report::markdown(&report))?;
        ctx.folder
            .write_text("report.html", &crate::report::html(&report))?;
        ctx.emit(RunEvent::RunFinished {
            achieved,
            tokens: totals.total(),
            millis: ctx.started.elapsed().as_millis() as u64,
        });
        Ok(Finished {
            achieved,
            answer,
            ended_by: ctx.spent(),
            dir: ctx.folder.dir().to_path_buf(),
        })
    }

    fn upstream(&self, ctx: &Ctx<'_>, plan: &Plan, step: &Step) -> Vec<prompt::Upstream> {
        let state = ctx.folder.state();
        step.depends_on
            .iter()
            .filter_map(|dep| {
                let dep_step = plan.steps.iter().find(|s| &s.id == dep)?;
                let done = state.done.get(dep)?;
                let dir = ctx.folder.output_path(dep, done.attempt, "");
                let stdout =
                    std::fs::read_to_string(dir.parent()?.join("stdout")).unwrap_or_default();
                let tail = tail_chars(&stdout, 1500);
                let files = step
                    .reads
                    .iter()
                    .filter(|f| dep_step.writes.contains(f))
                    .map(|f| {
                        let path = ctx.folder.output_path(dep, done.attempt, f);
                        match crate::profile::profile(&path) {
                            Ok(profile) => crate::profile::render(&profile),
                            Err(_) => format!("/data/{f}\n"),
                        }
                    })
                    .collect();
                Some(prompt::Upstream {
                    step: dep.clone(),
                    title: dep_step.title.clone(),
                    stdout_tail: tail,
                    files,
                })
            })
            .collect()
    }

    /// Run a step; when its repairs are spent and the plan names a fallback for it, run the
    /// fallback instruction in its place (same id, reads and writes) before giving up.
    async fn step_or_fallback(&self, ctx: &Ctx<'_>, plan: &Plan, step: &Step) -> Result<Outcome> {
        let mut outcome = self.step(ctx, plan, step).await?;
        if let (Outcome::Failed(problem), Some(fallback)) = (&outcome, &step.fallback)
            && ctx.spent().is_none()
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

    /// Write, run and check one step, repairing up to the limit.
    async fn step(&self, ctx: &Ctx<'_>, plan: &Plan, step: &Step) -> Result<Outcome> {
        let inputs = ctx.folder.step_mounts(plan, step)?;
        let input_hashes: Vec<&str> = inputs.iter().map(|(_, h)| h.as_str()).collect();
        // Resume: a step done before, with the same script, inputs and image, is kept.
        if let Some(done) = ctx.folder.state().done.get(&step.id) {
            let script = std::fs::read_to_string(
                ctx.folder
                    .attempt_dir(&step.id, done.attempt)?
                    .join("script.py"),
            )
            .unwrap_or_default();
            if done.key == cache_key(&script, &input_hashes, &ctx.info.image) {
                ctx.emit(RunEvent::StepDone {
                    step: step.id.clone(),
                    reused: true,
                });
                return Ok(Outcome::Succeeded);
            }
        }
        let first = prompt::step_messages(
            &ctx.info.goal,
            step,
            &ctx.profiles,
            &self.upstream(ctx, plan, step),
            ends_analysis(plan, step),
        );
        let mut messages = first.clone();
        let mut problem = String::from("no attempt was made");
        // Each script that ran and failed, with the problem it had.
        let mut failed_scripts: HashMap<String, String> = HashMap::new();
        let mut resample = false;
        let attempts_before = std::fs::read_dir(ctx.folder.dir().join("steps").join(&step.id))
            .map_or(0, Iterator::count);
        // Attempts that count against max_repairs; a repeated failed script sent back unrun
        // counts only once the free repeats are used up.
        let mut counted = 0;
        let mut free_repeats = FREE_REPEATS;
        let mut n = 0;
        while counted <= self.options.max_repairs {
            n += 1;
            counted += 1;
            if let Some(budget) = self.check_budgets(ctx) {
                return Ok(Outcome::Failed(format!("the {budget} budget ran out")));
            }
            let attempt = attempts_before + n;
            ctx.emit(RunEvent::Writing {
                step: step.id.clone(),
                attempt,
            });
            let dir = ctx.folder.attempt_dir(&step.id, attempt)?;
            let job = Job {
                inputs: inputs.iter().map(|(p, _)| p.clone()).collect(),
                out_dir: dir.join("files"),
                run_id: ctx.info.id.clone(),
            };
            ctx.containers.fetch_add(1, Ordering::SeqCst);
            let model_started = Instant::now();
            // The container starts while the model writes. After a repeated failed script the
            // model samples more freely: at a low temperature it would repeat it again.
            let request = Request {
                temperature: resample.then_some(RESAMPLE_TEMPERATURE),
                ..Request::new(messages.clone())
            };
            let (warm, reply) =
                tokio::join!(self.sandbox.prepare(&job), self.llm.complete(&request));
            let model_ms = model_started.elapsed().as_millis() as u64;
            let reply = match reply {
                Ok(reply) => reply,
                Err(Error::BudgetExhausted { .. }) => {
                    ctx.spend("tokens");
                    return Ok(Outcome::Failed("the tokens budget ran out".into()));
                }
                Err(err) => return Err(err),
            };
            let warm = warm?;
            // A reply that cannot be run goes straight back to the model: the reply itself
            // (no code, too long) or the script with what is wrong with it.
            let rejected = |problem: String, code: Option<&str>| {
                let mut messages = first.clone();
                match code {
                    Some(code) => {
                        crate::fsutil::write_atomic(&dir.join("script.py"), code.as_bytes())?;
                        messages = prompt::repair_messages(messages, code, &problem);
                    }
                    None => {
                        messages.push(crate::llm::Message::assistant(
                            crate::text::truncate_middle(&reply.text, 2000),
                        ));
                        messages.push(crate::llm::Message::user(problem.clone()));
                    }
                }
                Ok::<_, Error>((problem, messages))
            };
            let script = match crate::text::extract_code(&reply.text) {
                None => Err(rejected(
                    "The reply held no Python code. Reply with the script in one ```python code block.".into(),
                    None,
                )?),
                Some(code) if code.len() > MAX_SCRIPT => Err(rejected(
                    format!("The script is {} bytes; keep it under {MAX_SCRIPT}.", code.len()),
                    None,
                )?),
                // A "repair" that returns a script which already failed would fail the same
                // way: it is not run again (its warm container is dropped). The step's problem
                // is the error that script raised when it ran.
                Some(code) if failed_scripts.contains_key(&code) => {
                    let raised = failed_scripts[&code].clone();
                    resample = true;
                    if free_repeats > 0 {
                        free_repeats -= 1;
                        counted -= 1;
                    }
                    // The script is recorded, and the next write starts afresh from the
                    // step's request and the error: shown the script, the model copies it.
                    crate::fsutil::write_atomic(&dir.join("script.py"), code.as_bytes())?;
                    let messages = prompt::rewrite_messages(first.clone(), &raised);
                    Err((raised, messages))
                }
                Some(code) => match syntax_error(&code).await {
                    Some(error) => Err(rejected(
                        format!("The script does not compile:\n{error}"),
                        Some(&code),
                    )?),
                    None => Ok(code),
                },
            };
            let script = match script {
                Ok(script) => script,
                Err((why, next)) => {
                    // The warm container is dropped unused (its guard removes it).
                    drop(warm);
                    problem = why;
                    messages = next;
                    ctx.emit(RunEvent::Attempted {
                        step: step.id.clone(),
                        attempt,
                        tokens: self.llm.meter().totals().total(),
                        ok: false,
                        problem: Some(first_line(&problem)),
                    });
                    continue;
                }
            };
            crate::fsutil::write_atomic(&dir.join("script.py"), script.as_bytes())?;
            ctx.emit(RunEvent::Running {
                step: step.id.clone(),
                attempt,
            });
            let output = warm.run(&script).await?;
            crate::fsutil::write_atomic(&dir.join("stdout"), output.stdout.as_bytes())?;
            crate::fsutil::write_atomic(&dir.join("stderr"), output.stderr.as_bytes())?;
            let missing: Vec<String> = step
                .writes
                .iter()
                .filter(|w| std::fs::metadata(job.out_dir.join(w)).map_or(true, |m| m.len() == 0))
                .cloned()
                .collect();
            let ok = output.status.success() && missing.is_empty();
            let record_problem = (!ok).then(|| describe(&output, &script, &missing, step.kind));
            let record = AttemptRecord {
                status: output.status.clone(),
                ok,
                problem: record_problem.clone(),
                start_ms: output.start.as_millis() as u64,
                run_ms: output.run.as_millis() as u64,
                model_ms,
                stdout_bytes: output.stdout_bytes,
                stderr_bytes: output.stderr_bytes,
                artifacts: output.artifacts.clone(),
            };
            crate::fsutil::write_atomic(
                &dir.join("result.json"),
                serde_json::to_string_pretty(&record)
                    .expect("serializable")
                    .as_bytes(),
            )?;
            ctx.emit(RunEvent::Attempted {
                step: step.id.clone(),
                attempt,
                tokens: self.llm.meter().totals().total(),
                ok,
                problem: record_problem.as_deref().map(first_line),
            });
            if ok {
                let mut outputs = BTreeMap::new();
                for artifact in &output.artifacts {
                    outputs.insert(
                        artifact.path.clone(),
                        crate::run::sha256_file(&job.out_dir.join(&artifact.path))?,
                    );
                }
                let exit_code = match output.status {
                    Status::Exited(code) => code,
                    _ => 0,
                };
                ctx.folder.mark_done(
                    &step.id,
                    DoneStep {
                        attempt,
                        key: cache_key(&script, &input_hashes, &ctx.info.image),
                        outputs,
                        exit_code,
                    },
                )?;
                ctx.emit(RunEvent::StepDone {
                    step: step.id.clone(),
                    reused: false,
                });
                return Ok(Outcome::Succeeded);
            }
            problem = record_problem.unwrap_or_default();
            messages = prompt::repair_messages(first.clone(), &script, &problem);
            failed_scripts.insert(script, problem.clone());
        }
        Ok(Outcome::Failed(problem))
    }

    fn check_budgets(&self, ctx: &Ctx<'_>) -> Option<String> {
        if let Some(spent) = ctx.spent() {
            return Some(spent);
        }
        if let Some(wall) = self.options.wall
            && ctx.started.elapsed() >= wall
        {
            ctx.spend("wall time");
        }
        if let Some(max) = self.options.max_containers
            && ctx.containers.load(Ordering::SeqCst) >= max
        {
            ctx.spend("containers");
        }
        if self.llm.meter().check().is_err() {
            ctx.spend("tokens");
        }
        ctx.spent()
    }
}

/// What went wrong in an attempt, for the model and the report.
fn describe(output: &Output, script: &str, missing: &[String], kind: StepKind) -> String {
    let stderr = prompt::with_source_lines(&output.stderr, script);
    let digest = prompt::error_digest(&stderr, 2500);
    let hint = prompt::failure_hint(&output.status, &stderr, missing);
    let what = match (&output.status, kind) {
        (Status::Exited(0), _) => format!(
            "The script exited 0 but did not write {}.",
            missing.join(", ")
        ),
        (Status::Exited(code), StepKind::Verify) => format!("The check failed (exit code {code})."),
        (status, _) => format!("The script {status}."),
    };
    let mut text = what;
    if !digest.trim().is_empty() {
        text.push_str(&format!("\nError output:\n{digest}"));
    }
    text.push_str(&format!("\nHint: {hint}"));
    text
}

/// Output files shown whole to the answer: text no larger than this.
const SMALL_FILE: u64 = 1500;

/// Files shown whole per step, at most.
const SMALL_FILES_PER_STEP: usize = 4;

/// The content of a step's small text outputs (CSV, TSV, TXT, JSON up to [`SMALL_FILE`]
/// bytes), by name.
fn small_text_files(dir: &std::path::Path, names: &[&String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            [".csv", ".tsv", ".txt", ".json"]
                .iter()
                .any(|e| lower.ends_with(e))
        })
        .filter_map(|name| {
            let path = dir.join(name.as_str());
            let small =
                std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= SMALL_FILE);
            let content = std::fs::read_to_string(&path).ok().filter(|_| small)?;
            Some((name.to_string(), content.trim_end().to_string()))
        })
        .take(SMALL_FILES_PER_STEP)
        .collect()
}

/// Repeats of an already failed script, per step, that do not use up a repair: the script is
/// not run, and the next write samples more freely.
const FREE_REPEATS: usize = 2;

/// Sampling temperature for the writes after a model returned a script that already failed.
const RESAMPLE_TEMPERATURE: f32 = 0.8;

/// Whether a step ends the analysis: nothing depends on it, and it computes rather than checks
/// or draws. Such a step sees the goal and prints its answer names.
fn ends_analysis(plan: &Plan, step: &Step) -> bool {
    let ends = !plan.steps.iter().any(|s| s.depends_on.contains(&step.id));
    let draws = step.writes.iter().any(|w| {
        let w = w.to_ascii_lowercase();
        [".png", ".svg", ".jpg", ".pdf"]
            .iter()
            .any(|e| w.ends_with(e))
    });
    ends && step.kind == crate::plan::StepKind::Action && !draws
}

/// Hash of what decides a step's result: its script, the content of what it reads, the image.
pub fn cache_key(script: &str, input_hashes: &[&str], image: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(script.as_bytes());
    for hash in input_hashes {
        hasher.update([0]);
        hasher.update(hash.as_bytes());
    }
    hasher.update([0]);
    hasher.update(image.as_bytes());
    hex::encode(hasher.finalize())
}

/// A Python syntax error in `code`, checked with the host's python3 (`ast.parse` only, the
/// code never runs); `None` when it compiles or no python3 is at hand.
async fn syntax_error(code: &str) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    // The system interpreter first: a version manager's `python3` shim costs half a second.
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3");
    let mut child = tokio::process::Command::new(python)
        .args(["-I", "-c", "import ast, sys\ntry:\n    ast.parse(sys.stdin.read())\nexcept SyntaxError as e:\n    print(f'line {e.lineno}: {e.msg}: {(e.text or \"\").strip()}')\n    sys.exit(1)\n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let _ = stdin.write_all(code.as_bytes()).await;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    (output.status.code() == Some(1))
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

fn tail_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;

    fn step(id: &str, deps: &[&str], writes: &[&str], kind: StepKind) -> Step {
        Step {
            id: id.into(),
            title: id.into(),
            instruction: format!("Do {id}."),
            kind,
            depends_on: deps.iter().map(|d| (*d).to_string()).collect(),
            reads: Vec::new(),
            writes: writes.iter().map(|w| (*w).to_string()).collect(),
            fallback: None,
        }
    }

    #[test]
    fn only_computing_end_steps_end_the_analysis() {
        let plan = Plan {
            goal: "g".into(),
            steps: vec![
                step("load", &[], &["clean.csv"], StepKind::Action),
                step("growth", &["load"], &[], StepKind::Action),
                step("chart", &["load"], &["Chart.PNG"], StepKind::Action),
                step("check", &["load"], &[], StepKind::Verify),
            ],
        };
        let ends = |id: &str| ends_analysis(&plan, plan.steps.iter().find(|s| s.id == id).unwrap());
        assert!(ends("growth"));
        assert!(!ends("load"), "other steps depend on it");
        assert!(!ends("chart"), "it draws");
        assert!(!ends("check"), "it checks");
    }
}
