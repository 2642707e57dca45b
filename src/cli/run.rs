//! `planbox run` and `resume`: the agent driven from the command line, with progress for
//! people or JSONL for programs, and stopped cleanly by a signal.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use planbox::agent::{Agent, Finished};
use planbox::event::{Jsonl, Sink};
use planbox::llm::{LlmConfig, Meter};
use planbox::run::RunFolder;
use planbox::sandbox::{self, Pool};

use super::args::{AskArgs, LlmArgs, ResumeArgs, RunArgs, RunOptions, Settings};
use super::model::Model;
use super::{exit_code_for, print_stdout, shutdown_signal};

/// What every goal of one command runs with: the options and model settings, checked once,
/// and the sandbox.
pub(super) struct Setup<'a> {
    /// The options as given.
    pub(super) options: &'a RunOptions,
    /// What they give the agent and the sandbox.
    pub(super) settings: Settings,
    llm: &'a LlmArgs,
    config: LlmConfig,
    /// Tokens earlier sessions of the run spent (a resume goes on counting from there).
    carried_tokens: u64,
    /// The engines every goal's scripts run on, leftovers of earlier runs removed.
    pub(super) sandbox: Pool,
}

impl<'a> Setup<'a> {
    /// Check the model settings and the options, then reach the engine and remove the
    /// containers earlier runs left behind.
    pub(super) async fn new(options: &'a RunOptions, llm: &'a LlmArgs) -> anyhow::Result<Self> {
        let settings = options.settings(&llm.model.config)?;
        Setup::with_settings(options, llm, llm.config()?, settings).await
    }

    /// [`Setup::new`] with settings and model settings already decided (a resume's).
    pub(super) async fn with_settings(
        options: &'a RunOptions,
        llm: &'a LlmArgs,
        config: LlmConfig,
        mut settings: Settings,
    ) -> anyhow::Result<Self> {
        // A draft written beside the plan is free on a local server with a spare slot; a
        // hosted model would bill it for every plan of several steps. Under a token or cost
        // budget it would spend for nothing when the plan has several steps, and its
        // reservation could hold up the planner's next call.
        settings.agent.speculate &= config.provider == planbox::llm::config::Provider::Local
            && config.token_budget.is_none()
            && config.max_cost.is_none();
        let engines = options.sandbox.engines(&llm.model.config)?;
        let sandbox = Pool::connect(
            &engines,
            &settings.policy,
            &sandbox::image::tag(),
            settings.agent.parallel,
            options.sandbox.no_bind,
        )
        .await?;
        // Steps of one run spread over the pool unless --parallel says otherwise.
        if options.parallel.is_none() && engines.len() > 1 {
            settings.agent.parallel = settings.agent.parallel.max(sandbox.capacity());
        }
        sandbox
            .reap()
            .await
            .context("reaping leftover containers")?;
        Ok(Setup {
            options,
            settings,
            llm,
            config,
            carried_tokens: 0,
            sandbox,
        })
    }

    /// The run's token budget.
    pub(super) fn token_budget(&self) -> Option<u64> {
        self.config.token_budget
    }

    /// For a pool of engines, or when an engine went down: what each engine ran, on stderr.
    pub(super) fn report_engines(&self) {
        let report = self.sandbox.report();
        if report.len() < 2 && self.sandbox.moved() == 0 {
            return;
        }
        let each: Vec<String> = report
            .iter()
            .map(|engine| {
                format!(
                    "{} {} script{}{}",
                    engine.host,
                    engine.placed,
                    if engine.placed == 1 { "" } else { "s" },
                    if engine.down { " (down)" } else { "" }
                )
            })
            .collect();
        eprintln!(
            "engines: {}; {} script(s) moved off engines that stopped answering",
            each.join(", "),
            self.sandbox.moved()
        );
    }

    /// Run the agent over `folder` with a model of its own; `recording` names the
    /// subfolder of `--record` / `--replay` this run keeps its exchanges in (a batch goal's
    /// id), or `None` for the folder itself.
    pub(super) async fn drive(
        &self,
        folder: &RunFolder,
        sink: &impl Sink,
        recording: Option<&str>,
    ) -> anyhow::Result<Finished> {
        let model = Model::open_in(self.llm, &self.config, recording)?;
        let meter = Arc::new(
            Meter::new(self.config.token_budget, self.config.price)
                .with_max_cost(self.config.max_cost)
                .with_reply_limit(self.config.max_tokens),
        );
        meter.carry_over(self.carried_tokens);
        let agent = Agent::new(&model, &self.sandbox, self.settings.agent.clone(), meter);
        Ok(agent.run(folder, sink).await?)
    }
}

/// Drive one run, printing its answer and checking it against `expect`, until it ends or a
/// signal stops it (exit 130, containers removed).
async fn drive_with_signals(
    setup: &Setup<'_>,
    folder: &RunFolder,
    expect: &[(String, String)],
    watch: &super::watch::WatchFlags,
) -> anyhow::Result<ExitCode> {
    let options = setup.options;
    let view = if watch.watch {
        Some(super::watch::start(folder.dir(), watch.listen).await?)
    } else {
        None
    };
    let human = super::progress::Progress::for_stderr(options.max_replans);
    let jsonl = Jsonl(std::sync::Mutex::new(std::io::stdout()));
    let work = async {
        if options.json {
            setup.drive(folder, &jsonl, None).await
        } else {
            setup.drive(folder, &human, None).await
        }
    };
    let finished = tokio::select! {
        finished = work => finished?,
        signal = shutdown_signal() => {
            setup.sandbox.shutdown().await;
            eprintln!(
                "planbox: stopped by {signal}; containers removed. Continue with: planbox resume {}",
                folder.dir().display()
            );
            return Ok(ExitCode::from(130));
        }
    };
    setup.sandbox.settle().await;
    if !options.json {
        setup.report_engines();
        print_stdout(&format!("{}\n", finished.answer));
        eprintln!("report: {}", finished.dir.join("report.md").display());
        eprintln!("report: {}", finished.dir.join("report.html").display());
        if let Some(budget) = &finished.ended_by {
            eprintln!("planbox: the {budget} budget ended the run; the report shows what was done");
        }
    }
    let mismatches = planbox::answer::expect::mismatches(expect, &finished.answer);
    if !expect.is_empty() && !options.json {
        if mismatches.is_empty() {
            eprintln!("expected answer: matched ({} values)", expect.len());
        } else {
            eprintln!("expected answer: {}", mismatches.join("; "));
        }
    }
    if let Some(view) = view {
        eprintln!("live view stays at {} until Ctrl-C", view.url());
        shutdown_signal().await;
    }
    Ok(exit_code_for(finished.achieved && mismatches.is_empty()))
}

/// `planbox run`: a new run folder for the goal, driven to its answer.
pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    planbox::planner::check_goal(&args.goal)?;
    // Inputs, the model settings and the options are checked before any container or model
    // call.
    let mut profiles = Vec::new();
    for path in &args.inputs {
        profiles.push(planbox::profile::profile(path)?);
    }
    let given = match &args.plan_file {
        Some(path) => Some(super::plan::read_plan_file(
            path,
            &args.goal,
            &profiles,
            super::args::max_steps(args.run.max_steps)?,
        )?),
        None => None,
    };
    let setup = Setup::new(&args.run, &args.llm).await?;
    let policy = &setup.settings.policy;
    let stored = serde_json::json!({
        "agent": setup.settings.agent,
        "sandbox": super::verify::RecordedSandbox::of(policy),
        "token_budget": setup.token_budget(),
    });
    let (folder, info) = RunFolder::create(
        &args.run.runs_dir,
        &args.goal,
        &args.inputs,
        &sandbox::image::tag(),
        stored,
    )?;
    if let Some(planned) = &given {
        // The run starts from this plan as its first version, as a resumed run would.
        folder.write_plan(1, &planbox::planner::to_json(planned))?;
    }
    if !args.run.json {
        eprintln!("run folder: {} (id {})", folder.dir().display(), info.id);
    }
    drive_with_signals(&setup, &folder, &args.expect, &args.watch).await
}

/// `planbox resume`: a run folder driven on from where it stopped.
pub(super) async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.run.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let info = folder.info()?;
    inputs_still_there(&info)?;
    let setup = continued(&folder, &info, &args.run, &args.llm, &args.given).await?;
    drive_with_signals(&setup, &folder, &[], &args.watch).await
}

/// Fail, naming it, when an input of the run is no longer where the run read it.
fn inputs_still_there(info: &planbox::run::RunInfo) -> anyhow::Result<()> {
    for input in &info.inputs {
        if !input.path.is_file() {
            anyhow::bail!(
                "input {} of this run is gone ({})",
                input.name,
                input.path.display()
            );
        }
    }
    Ok(())
}

/// The setup a run goes on with (a resume, a follow-up): the options it was started with,
/// but for those given now (`given`, recorded in run.json), and the tokens it has spent.
async fn continued<'a>(
    folder: &RunFolder,
    info: &planbox::run::RunInfo,
    run: &'a RunOptions,
    llm: &'a LlmArgs,
    given: &[String],
) -> anyhow::Result<Setup<'a>> {
    let fresh = run.settings(&llm.model.config)?;
    let (settings, mut overrides) = Settings::resumed(&info.options, fresh, given);
    let mut config = llm.config()?;
    if given.iter().any(|id| id == "token_budget") {
        overrides.push((
            "token_budget".into(),
            serde_json::json!(config.token_budget),
        ));
    } else if let Some(budget) = info.options.get("token_budget") {
        config.token_budget = budget.as_u64();
    }
    let mut setup = Setup::with_settings(run, llm, config, settings).await?;
    setup.carried_tokens = planbox::run::history::tokens_spent(folder.dir());
    folder.record_resume(&overrides)?;
    if !run.json {
        let changed: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "resuming with the options the run was started with{}; {} tokens spent so far",
            if changed.is_empty() {
                String::new()
            } else {
                format!(", but {}", changed.join(", "))
            },
            setup.carried_tokens
        );
    }
    Ok(setup)
}

/// `planbox ask`: a follow-up question planned on top of a run's finished steps, run in the
/// same folder as a new plan version; the finished steps are reused.
pub(super) async fn ask(args: AskArgs) -> anyhow::Result<ExitCode> {
    let question = planbox::planner::check_goal(&args.question)?.to_string();
    let dir = RunFolder::locate(&args.run_ref, &args.run.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let info = folder.info()?;
    let planned = folder
        .plan()?
        .context("the run has no plan yet: finish it first (planbox resume)")?;
    let done: Vec<String> = folder.state().done.keys().cloned().collect();
    if done.is_empty() {
        anyhow::bail!(
            "no step of the run finished, so there is nothing to build on: planbox resume {} first",
            dir.display()
        );
    }
    inputs_still_there(&info)?;
    let profiles = info
        .inputs
        .iter()
        .map(|input| planbox::profile::profile(&input.path))
        .collect::<Result<Vec<_>, _>>()?;
    let setup = continued(&folder, &info, &args.run, &args.llm, &args.given).await?;
    let model = Model::open(&args.llm, &setup.config)?;
    let mut planner = planbox::planner::Planner::new(&model);
    planner.limits.max_steps = setup.settings.agent.max_steps.max(done.len() + 1);
    planner.fuse = setup.settings.agent.fuse_chains;
    let plan = planner
        .follow_up(&planned.plan, &profiles, &done, &question, info.question())
        .await?;
    let follow = planbox::planner::Planned {
        plan,
        mode: planned.mode,
        notes: vec![format!(
            "follow-up: {}",
            planbox::text::truncate_middle(&question, 200)
        )],
    };
    folder.add_followup(&question)?;
    folder.write_plan(
        folder.state().plan_version + 1,
        &planbox::planner::to_json(&follow),
    )?;
    if !args.run.json {
        eprintln!("follow-up in {}: {question}", folder.dir().display());
    }
    drive_with_signals(&setup, &folder, &args.expect, &args.watch).await
}
