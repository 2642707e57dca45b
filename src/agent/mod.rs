//! The agent: plan (or resume), run every ready step (each written, run, checked and repaired
//! in its `step` module), replan around a failed branch, and finish with an answer grounded in what the
//! steps printed. Bounded everywhere: repairs, replans, wall time, tokens, containers.

mod attempts;
mod budget;
mod draft;
mod planning;
pub mod progress;
mod step;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use budget::Budget;
use budget::Budgets;

use crate::answer::compose::{self, Draft};
use crate::error::{Error, Result};
use crate::event::{RunEvent, Sink, Tee};
use crate::llm::{Llm, Meter, Metered, Reply, Request};
use crate::plan::Plan;
use crate::planner::{Mode, Planner};
use crate::profile::Profile;
use crate::rules::Rules;
use crate::run::{RunFolder, RunInfo};
use crate::sandbox::Sandbox;
use crate::schedule::{self, Outcome};

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
    /// Fuse chains of steps in graph plans: a step whose only dependent depends on it alone
    /// runs as one script with it.
    #[serde(default = "default_fuse")]
    pub fuse_chains: bool,
    /// While the model plans, it also writes the script the goal gets as one step; a plan of
    /// one step (the goal itself, see [`crate::planner`]) takes that script instead of
    /// asking for it again. A plan of several steps drops the draft (its tokens spent if it
    /// finished first). Off by default: it pays where the server has a spare slot, so the
    /// CLI turns it on for a local model only. (Absent from the options of runs stored
    /// before it: off, as a resumed run has its plan.)
    #[serde(default)]
    pub speculate: bool,
    /// Ask the model for a plan even when the goal is one step by what it asks for (see
    /// [`crate::planner::one_step_by_its_asks`]).
    #[serde(default)]
    pub always_plan: bool,
    /// Most bytes of pickled variables one step may leave for the steps after it.
    #[serde(default = "default_max_state")]
    pub max_state: u64,
    /// Failure hints and answer rules switched off.
    #[serde(default)]
    pub rules: Rules,
}

/// The default per-step state cap: 256 MiB.
pub const DEFAULT_MAX_STATE: u64 = 256 * 1024 * 1024;

fn default_fuse() -> bool {
    true
}

fn default_max_state() -> u64 {
    DEFAULT_MAX_STATE
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
            max_state: DEFAULT_MAX_STATE,
            fuse_chains: true,
            speculate: false,
            always_plan: false,
            rules: Rules::default(),
        }
    }
}

/// Every rule id a run can switch off: the failure hints, then the answer rules.
pub fn rule_ids() -> Vec<&'static str> {
    crate::hint::HINTS
        .iter()
        .map(|hint| hint.id)
        .chain(crate::answer::rule_ids())
        .collect()
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// Whether the goal was achieved: every step passed and the answer has what was asked.
    pub achieved: bool,
    /// The final answer (or an honest account of what could not be done).
    pub answer: String,
    /// The budget that ended the run early, if one did.
    pub ended_by: Option<Budget>,
    /// The run folder.
    pub dir: PathBuf,
}

/// Runs goals with a model and a sandbox.
pub struct Agent<'a, L, S> {
    llm: Metered<&'a L>,
    sandbox: &'a S,
    options: Options,
}

/// The facts of one run, shared by its steps.
struct Ctx<'a> {
    folder: &'a RunFolder,
    info: RunInfo,
    profiles: Vec<Profile>,
    budgets: Budgets,
    sink: &'a (dyn Sink + 'a),
    /// A reply written while the plan was made, with the request it answers: the first
    /// step to ask exactly that takes it ([`Options::speculate`]).
    drafted: Mutex<Option<(Request, Reply)>>,
}

impl Ctx<'_> {
    fn emit(&self, event: RunEvent) {
        self.sink.emit(&event);
    }

    /// The drafted reply, when `request` is the one it answers.
    fn take_draft(&self, request: &Request) -> Option<Reply> {
        let mut drafted = self.drafted.lock().expect("draft poisoned");
        match drafted.as_ref() {
            Some((asked, _)) if asked == request => drafted.take().map(|(_, reply)| reply),
            _ => None,
        }
    }
}

/// The steps of one pass over a plan that failed, in the order they failed, with why.
type Failures = Vec<(String, String)>;

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
        let tracking = progress::Tracking::new(&tee);
        let ctx = self.open(folder, &tracking)?;
        // Model calls, planning's included, end when the wall time does.
        self.llm.set_deadline(ctx.budgets.deadline());
        let mut planner = Planner::new(&self.llm);
        planner.limits.max_steps = self.options.max_steps;
        planner.fuse = self.options.fuse_chains;
        planner.size_by_goal = !self.options.always_plan;
        let Some(mut planned) = self.first_plan(&ctx, &planner).await? else {
            return self.finish(&ctx, None, false).await;
        };
        loop {
            let failures = self.run_plan(&ctx, &planned.plan).await?;
            if failures.is_empty() {
                return self.finish(&ctx, Some(&planned.plan), true).await;
            }
            match self.replan(&ctx, &planner, &planned, &failures).await? {
                Some(next) => planned = next,
                None => return self.finish(&ctx, Some(&planned.plan), false).await,
            }
        }
    }

    /// Read the run folder and profile the inputs.
    fn open<'c>(&self, folder: &'c RunFolder, sink: &'c dyn Sink) -> Result<Ctx<'c>> {
        let info = folder.info()?;
        let profiles = info
            .inputs
            .iter()
            .map(|input| crate::profile::profile(&input.path))
            .collect::<Result<Vec<_>>>()?;
        let budgets = Budgets::new(
            self.options.wall,
            self.options.max_containers,
            self.llm.meter().clone(),
        );
        let ctx = Ctx {
            folder,
            info,
            profiles,
            budgets,
            sink,
            drafted: Mutex::default(),
        };
        ctx.emit(RunEvent::RunStarted {
            run: ctx.info.id.clone(),
            goal: ctx.info.question().to_string(),
        });
        ctx.emit(RunEvent::Profiled {
            inputs: ctx.profiles.iter().map(|p| p.name.clone()).collect(),
        });
        Ok(ctx)
    }

    /// Run every step of `plan` that can run, as many at once as allowed; an error that ends
    /// the run ([`Error::ends_run`]) is returned once the steps under way have stopped.
    async fn run_plan(&self, ctx: &Ctx<'_>, plan: &Plan) -> Result<Failures> {
        let problems: Mutex<BTreeMap<String, String>> = Mutex::default();
        let fatal: Mutex<Option<Error>> = Mutex::default();
        let summary = schedule::run(
            plan,
            self.options.parallel,
            |step| {
                let (problems, fatal) = (&problems, &fatal);
                async move {
                    let outcome = match self.step_or_fallback(ctx, plan, &step).await {
                        Ok(outcome) => outcome,
                        Err(err) => {
                            let problem = format!("{err:#}");
                            if err.ends_run() {
                                fatal.lock().expect("fatal poisoned").get_or_insert(err);
                            }
                            Outcome::Failed(problem)
                        }
                    };
                    if let Outcome::Failed(problem) = &outcome {
                        let mut problems = problems.lock().expect("problems poisoned");
                        problems.insert(step.id.clone(), problem.clone());
                    }
                    outcome
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
        if let Some(err) = fatal.into_inner().expect("fatal poisoned") {
            return Err(err);
        }
        let mut problems = problems.into_inner().expect("problems poisoned");
        Ok(summary
            .failed
            .into_iter()
            .map(|id| {
                let problem = problems.remove(&id).unwrap_or_default();
                (id, problem)
            })
            .collect())
    }

    /// Answer from what the steps printed, write answer.md and the reports, emit the end.
    async fn finish(
        &self,
        ctx: &Ctx<'_>,
        plan: Option<&Plan>,
        all_passed: bool,
    ) -> Result<Finished> {
        let (goal, rules) = (ctx.info.question(), &self.options.rules);
        let printed = ctx.folder.printed(plan);
        let draft = compose::draft(goal, &printed, rules);
        let nothing = draft == Draft::Nothing;
        let answer = match draft {
            Draft::Nothing => {
                let mut answer = "Could not answer: no step produced any result.".to_string();
                if let Some(budget) = ctx.budgets.spent() {
                    answer.push_str(&format!(" The {budget} budget ran out."));
                }
                answer
            }
            Draft::Printed(answer) => answer,
            Draft::Summarize => {
                let messages = crate::prompt::synthesis_messages(goal, &printed.results);
                let request = Request {
                    temperature: Some(0.0),
                    ..Request::new(messages)
                };
                let summary = match ctx
                    .budgets
                    .within(self.llm.complete(&request).await, ctx.sink)?
                {
                    Ok(reply) => reply.text.trim().to_string(),
                    Err(_spent) => compose::unsummarized(&printed),
                };
                // Kept as the model wrote it, so the answer can be composed again (with other
                // answer rules) without asking the model again.
                ctx.folder
                    .write_text("summary.md", &format!("{summary}\n"))?;
                compose::ground(goal, &summary, &printed, rules)
            }
        };
        let (answer, complete) = compose::finish(goal, &answer, rules);
        let achieved = all_passed && !nothing && ctx.budgets.spent().is_none() && complete;
        ctx.folder.write_text("answer.md", &format!("{answer}\n"))?;
        ctx.emit(RunEvent::Answered {
            answer: answer.clone(),
        });
        self.sandbox.settle().await;
        let totals = self.llm.meter().totals();
        let elapsed = ctx.budgets.elapsed();
        crate::report::write(ctx.folder, plan, &answer, &totals, elapsed)?;
        ctx.emit(RunEvent::RunFinished {
            achieved,
            tokens: totals.total(),
            millis: elapsed.as_millis() as u64,
        });
        Ok(Finished {
            achieved,
            answer,
            ended_by: ctx.budgets.spent(),
            dir: ctx.folder.dir().to_path_buf(),
        })
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}
