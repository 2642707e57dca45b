//! planbox turns a data-analysis goal into Python scripts that really run, each in a fresh,
//! locked-down Docker container.
//!
//! # Layout
//! - [`profile`]: what the inputs look like, found without a model.
//! - [`plan`]: plans, steps (the files they read and write, the variables they produce and
//!   use), their validation, the ready-set, and chains fused into one step.
//! - [`planner`]: a goal and profiles in, a validated plan out (modes, re-asks, reflection,
//!   replans).
//! - [`schedule`]: runs every ready step concurrently, up to a cap.
//! - [`agent`]: the loop: plan (or resume), schedule ready steps, replan a failed branch,
//!   finish; a step is draft, check, run, judge; one guard for every budget.
//! - [`prompt`]: pure message builders: what planbox asks a model.
//! - [`hint`]: failure hints as a table (what each recognises, says, and why it exists) and
//!   the error digest a model sees.
//! - [`answer`]: the `@name[value]` format: names, values, grounding, rounding, expectations,
//!   and composing a run's final answer.
//! - [`rules`]: which hints and answer rules a run switches off, for measuring them.
//! - [`text`]: JSON and code extraction, truncation, escape stripping.
//! - [`event`]: the [`RunEvent`](event::RunEvent) stream and its sinks.
//! - [`run`]: the run folder (plans, attempts and their records, events, state, what steps
//!   printed, the variables they left); resume and verify read it.
//! - [`verify`]: a finished run's scripts re-run and their outputs compared with the run's.
//! - [`export`]: a run's final scripts as a notebook or one Python file, in dependency order.
//! - [`batch`]: suites of goals with expected answers, judged, JUnit reports, rescoring.
//! - [`report`]: the report of a run, as Markdown and as one self-contained HTML page.
//! - [`watch`]: a live view of a run in the browser, following its event stream.
//! - [`sandbox`]: run one untrusted script in a disposable container (policy, running,
//!   capture, harvest, the variables steps share, cleanup, owners and leftovers, engine,
//!   image).
//! - [`llm`]: the `Llm` trait, OpenAI-compatible and Anthropic clients, structured output,
//!   retries, usage and budget, record/replay, configuration.
//! - [`fsutil`]: crash-safe writes.
//! - [`error`]: the library's one error enum.
//!
//! # Embedding the agent
//!
//! The command line is one user of this library; another program can run goals itself and
//! watch them through its own [`Sink`](event::Sink). Here a sink counts finished steps and
//! forwards every event over a channel to a thread that prints progress; the model is any
//! OpenAI-compatible server (the environment and `planbox.toml` fill in what the overrides
//! leave out), and the sandbox is the Docker engine with the image `make image` built.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::mpsc;
//!
//! use planbox::agent::{Agent, Options};
//! use planbox::event::{RunEvent, Sink};
//! use planbox::llm::config::{FileConfig, Overrides};
//! use planbox::llm::{LlmConfig, Meter, Provider};
//! use planbox::run::RunFolder;
//! use planbox::sandbox::{self, DockerSandbox, Policy};
//!
//! /// Counts the steps that finished and passes every event on.
//! struct Progress {
//!     steps_done: AtomicUsize,
//!     events: mpsc::Sender<RunEvent>,
//! }
//!
//! impl Sink for Progress {
//!     fn emit(&self, event: &RunEvent) {
//!         if let RunEvent::StepDone { .. } = event {
//!             self.steps_done.fetch_add(1, Ordering::Relaxed);
//!         }
//!         // A sink must not fail the run: a receiver that hung up only misses events.
//!         let _ = self.events.send(event.clone());
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> planbox::Result<()> {
//!     let overrides = Overrides {
//!         provider: Some(Provider::OpenAi),
//!         base_url: Some("http://127.0.0.1:11434/v1".into()),
//!         model: Some("qwen2.5-coder:7b".into()),
//!         ..Overrides::default()
//!     };
//!     let config = LlmConfig::resolve(
//!         &overrides,
//!         |name| std::env::var(name).ok(),
//!         &FileConfig::load(Path::new("planbox.toml"))?,
//!     )?;
//!     let llm = config.client()?;
//!     let meter = Arc::new(Meter::new(config.token_budget, config.price));
//!
//!     let image = sandbox::image::tag();
//!     let docker = sandbox::docker::connect().await?;
//!     let sandbox = DockerSandbox::new(docker, Policy::default(), image.clone()).await?;
//!
//!     let goal = std::fs::read_to_string("fixtures/examples/retail/goal.txt")
//!         .map_err(planbox::Error::io("reading the goal"))?;
//!     let inputs = [PathBuf::from("fixtures/examples/retail/sales.csv")];
//!     let (folder, info) =
//!         RunFolder::create(Path::new("runs"), &goal, &inputs, &image, serde_json::json!({}))?;
//!
//!     let (sender, receiver) = mpsc::channel();
//!     let printer = std::thread::spawn(move || {
//!         for event in receiver {
//!             eprintln!("{}", planbox::event::describe(&event));
//!         }
//!     });
//!     let progress = Progress {
//!         steps_done: AtomicUsize::new(0),
//!         events: sender,
//!     };
//!     let options = Options {
//!         parallel: 2,
//!         max_repairs: 1,
//!         ..Options::default()
//!     };
//!     let finished = Agent::new(&llm, &sandbox, options, meter.clone())
//!         .run(&folder, &progress)
//!         .await?;
//!     // Wait for containers still being removed in the background.
//!     sandbox.settle().await;
//!
//!     let steps = progress.steps_done.load(Ordering::Relaxed);
//!     drop(progress); // hangs up the channel, so the printer ends
//!     printer.join().expect("the printer thread panicked");
//!     println!("run {}: {steps} steps, achieved: {}", info.id, finished.achieved);
//!     println!("{}", finished.answer);
//!     let totals = meter.totals();
//!     println!("{} model calls, {} tokens", totals.calls, totals.total());
//!     Ok(())
//! }
//! ```

pub mod agent;
pub mod answer;
pub mod batch;
pub mod error;
pub mod event;
pub mod export;
pub mod fsutil;
pub mod hint;
pub mod llm;
pub mod plan;
pub mod planner;
pub mod profile;
pub mod prompt;
pub mod report;
pub mod rules;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod text;
pub mod verify;
pub mod watch;

pub use error::{Error, Result};
