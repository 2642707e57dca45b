//! Command-line parsing and the mapping of outcomes to exit codes: 0 success, 1 the script
//! or goal failed, 2 usage, configuration or infrastructure error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox};

/// Turn a data-analysis goal into Python scripts that really run, each in a fresh,
/// locked-down Docker container.
#[derive(Debug, Parser)]
#[command(
    name = "planbox",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 the goal was not achieved or its answer differs from --expect, a script failed, a budget ran out \
    or something did not reproduce; 2 usage, configuration or infrastructure error; 130 stopped by Ctrl-C or \
    SIGTERM (containers removed; continue with `planbox resume`).\n\
    New here? `planbox doctor` checks the engine, the image and the model and names each fix."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one Python script in the sandbox and report how it ended (exit 0 when it exited 0).
    Exec(ExecArgs),
    /// Build the sandbox image or print its tag.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check the configured model.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Profile the inputs and print the validated plan for a goal, without running it.
    Plan(PlanArgs),
    /// Plan, write, run, repair and answer a goal; everything lands in a run folder.
    ///
    /// Example: planbox run "Which region grew fastest in 2023? Chart it." -i sales.csv
    ///
    /// The answer is printed and written to runs/<id>/answer.md, with a report beside it.
    Run(RunArgs),
    /// Continue a run that crashed, was killed or was stopped; finished steps are kept.
    Resume(ResumeArgs),
    /// Re-run a finished run's scripts in fresh containers; exit 0 when every output
    /// reproduces.
    Verify(VerifyArgs),
    /// Run a suite of goals (JSONL) and check their answers against the expected values.
    Batch(BatchArgs),
    /// Check that planbox can run here, and print the command that fixes each problem.
    ///
    /// Checks the Docker engine (reachable, versions), the sandbox image (present and
    /// current), leftover containers, the model (reachable, latency, structured output) and
    /// the free space for run folders. Each check prints ok, warn, fail or skip (a check it
    /// needs failed). Exit code 0 when no check failed, 1 otherwise.
    Doctor(doctor::Args),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Write manual pages: the top page to stdout, or every page to a folder.
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash: planbox completions bash > ~/.local/share/bash-completion/completions/planbox\n  \
    zsh:  planbox completions zsh > ~/.zfunc/_planbox   (with fpath+=~/.zfunc before compinit)\n  \
    fish: planbox completions fish > ~/.config/fish/completions/planbox.fish")]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
struct ManArgs {
    /// Folder to write planbox.1 and one page per subcommand (planbox-run.1, ...) into,
    /// created if missing; without it, the top page goes to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Bounds and sandbox settings for running goals.
#[derive(Debug, Clone, clap::Args)]
struct RunOptions {
    /// How to plan.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    mode: planbox::planner::Mode,
    /// Rounds in which the model critiques and improves the plan before it runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    reflect: usize,
    /// Steps run at once [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    /// Rewrites of a failing step before its branch of the plan is replanned. A rewrite that
    /// returns a script which already failed is not run, and the first two per step are free.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_repairs: usize,
    /// Replans allowed in one run.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_replans: usize,
    /// Most steps in a plan (1 to 50).
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_steps: usize,
    /// Time budget for the whole run, in seconds; the run stops cleanly when it is spent.
    #[arg(long, value_name = "SECS")]
    wall_time: Option<f64>,
    /// Most scripts (one container each) the run may start.
    #[arg(long, value_name = "N")]
    max_containers: Option<usize>,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Wall-clock limit per script, in seconds (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    timeout: f64,
    /// Memory limit per script, e.g. 512m or 2g.
    #[arg(long, value_name = "SIZE", default_value = "2g", value_parser = parse_bytes)]
    memory: i64,
    /// Print the event stream as JSONL on stdout instead of progress lines.
    #[arg(long)]
    json: bool,
}

impl RunOptions {
    fn agent_options(&self) -> anyhow::Result<planbox::agent::Options> {
        if !(1..=50).contains(&self.max_steps) {
            anyhow::bail!("--max-steps must be between 1 and 50");
        }
        Ok(planbox::agent::Options {
            mode: self.mode,
            reflect: self.reflect,
            parallel: self
                .parallel
                .unwrap_or_else(|| planbox::agent::Options::default().parallel)
                .max(1),
            max_repairs: self.max_repairs,
            max_replans: self.max_replans,
            max_steps: self.max_steps,
            wall: self.wall_time.map(Duration::from_secs_f64),
            max_containers: self.max_containers,
            rules: planbox::rules::Rules::default(),
        })
    }

    fn policy(&self) -> anyhow::Result<Policy> {
        if !(self.timeout > 0.0 && self.timeout <= 600.0) {
            anyhow::bail!("--timeout must be in (0, 600] seconds");
        }
        Ok(Policy {
            memory: self.memory,
            timeout: Duration::from_secs_f64(self.timeout),
            ..Policy::default()
        })
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// What to find out, in plain words.
    goal: String,
    /// An input file, mounted read-only for the scripts (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// A value the answer must give, as NAME=VALUE for @NAME[VALUE] (repeatable). Numbers
    /// match within 1e-6, text ignoring case; a mismatch makes the exit code 1.
    #[arg(long = "expect", value_name = "NAME=VALUE", value_parser = parse_expect)]
    expect: Vec<(String, String)>,
    #[command(flatten)]
    run: RunOptions,
    #[command(flatten)]
    llm: LlmArgs,
}

/// `NAME=VALUE` for `--expect`; the name may carry its `@`.
fn parse_expect(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE (for example region=south)"))?;
    let name = name.trim().trim_start_matches('@');
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{name}' is not an answer name (letters, digits and _)"
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    run_ref: String,
    #[command(flatten)]
    run: RunOptions,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    run_ref: String,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Also write the results as a JUnit XML report to this file, for CI.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Relative tolerance when comparing numbers in CSV outputs.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
}

#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// The suite: one JSON object per line, {"id", "goal", "inputs": [...], "expect": {"name":
    /// "value"}}; inputs are relative to the suite file.
    #[arg(value_name = "SUITE.jsonl")]
    suite: PathBuf,
    /// Also write the results as a JUnit XML report to this file, for CI.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Goals run at once.
    #[arg(long = "goals-parallel", value_name = "N", default_value_t = 1)]
    goals_parallel: usize,
    #[command(flatten)]
    run: RunOptions,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// What to find out, in plain words.
    goal: String,
    /// An input file, mounted read-only for the scripts (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// How to plan.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    mode: planbox::planner::Mode,
    /// Rounds in which the model critiques and improves the plan.
    #[arg(long, value_name = "N", default_value_t = 0)]
    reflect: usize,
    /// Most steps in a plan (1 to 50).
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_steps: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, Subcommand)]
enum LlmCommand {
    /// Send one tiny request and report the model, latency and speed (exit 0 if it answered,
    /// 2 if not).
    Ping(LlmArgs),
}

/// Which model to talk to; each flag overrides the environment and planbox.toml.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ModelArgs {
    /// Provider: openai (any OpenAI-compatible server), anthropic, or local (the offline model
    /// that `make local-llm` serves) [default: local, or the provider whose key is set].
    #[arg(long, value_enum)]
    provider: Option<planbox::llm::Provider>,
    /// Base URL of the API; OpenAI-compatible ones end in /v1 [env: OPENAI_BASE_URL,
    /// ANTHROPIC_BASE_URL or PLANBOX_LOCAL_URL, by provider].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Model name, as the server knows it [env: PLANBOX_MODEL].
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Configuration file with [llm] settings and [prices]; a missing file is fine.
    #[arg(long, value_name = "FILE", default_value = "planbox.toml")]
    config: PathBuf,
}

impl ModelArgs {
    /// These flags over the environment over the configuration file; `rest` carries the
    /// flags of the other settings.
    fn resolve(
        &self,
        rest: planbox::llm::config::Overrides,
    ) -> planbox::Result<planbox::llm::LlmConfig> {
        let file = planbox::llm::config::FileConfig::load(&self.config)?;
        let overrides = planbox::llm::config::Overrides {
            provider: self.provider,
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            ..rest
        };
        planbox::llm::LlmConfig::resolve(&overrides, |name| std::env::var(name).ok(), &file)
    }
}

/// Model settings; each overrides the environment and planbox.toml.
#[derive(Debug, Clone, clap::Args)]
struct LlmArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Sampling temperature, 0 to 2 [default: 0.2].
    #[arg(long)]
    temperature: Option<f32>,
    /// Most tokens in one reply [default: 2048].
    #[arg(long, value_name = "N")]
    max_tokens: Option<u32>,
    /// Seconds to wait for one model reply [default: 300].
    #[arg(long, value_name = "SECS")]
    llm_timeout: Option<f64>,
    /// Stop cleanly once this many tokens (prompt plus reply) are spent.
    #[arg(long, value_name = "N")]
    token_budget: Option<u64>,
    /// Write every model exchange to this folder (keys redacted), for --replay later.
    #[arg(long, value_name = "DIR", conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Answer from a folder written by --record instead of a server; a request that differs
    /// from the recording is an error.
    #[arg(long, value_name = "DIR")]
    replay: Option<PathBuf>,
}

impl LlmArgs {
    fn config(&self) -> anyhow::Result<planbox::llm::LlmConfig> {
        Ok(self.model.resolve(planbox::llm::config::Overrides {
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout_secs: self.llm_timeout,
            token_budget: self.token_budget,
            ..Default::default()
        })?)
    }
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The Python script to run (UTF-8).
    #[arg(value_name = "SCRIPT.py")]
    script: PathBuf,
    /// A file the script may read, mounted read-only at /data/<file name> (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Folder that receives the files the script writes to /out (must be new or empty).
    #[arg(long, value_name = "DIR", default_value = "planbox-out")]
    out: PathBuf,
    /// Wall-clock limit in seconds (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    timeout: f64,
    /// Memory limit, e.g. 512m or 2g (swap is set equal: none).
    #[arg(long, value_name = "SIZE", default_value = "2g", value_parser = parse_bytes)]
    memory: i64,
    /// CPUs the script may use (fractions allowed).
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    cpus: f64,
    /// OCI runtime to use, e.g. runsc for gVisor.
    #[arg(long, value_name = "NAME")]
    runtime: Option<String>,
    /// Print the result (status, output, files) as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build the sandbox image planbox-sandbox:<hash>; a current one is reused.
    Build {
        /// Base image to build on instead of a Debian rootfs made here (needs a registry),
        /// e.g. python:3.11-slim.
        #[arg(long, value_name = "IMAGE")]
        base: Option<String>,
        /// Rebuild even if the current image exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the tag this planbox needs, planbox-sandbox:<hash of the build files>.
    Tag,
}

fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text} (try 512m or 2g)"))?;
    let unit = match unit.trim_end_matches(['b', 'i']) {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} (use k, m or g)")),
    };
    Ok((number * unit) as i64)
}

mod doctor;
mod progress;
mod run;

/// Parse arguments, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("planbox: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            match fix(&err) {
                Some(fix) => eprintln!("planbox: {err:#}; fix: {fix}"),
                None => eprintln!("planbox: {err:#}"),
            }
            ExitCode::from(2)
        }
    }
}

/// The fix to print after an error, chosen by which library error it is.
fn fix(err: &anyhow::Error) -> Option<String> {
    let planbox::Error::EngineUnreachable { host, kind, .. } = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<planbox::Error>())?
    else {
        return None;
    };
    Some(kind.fix(host))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Exec(args) => exec(args).await,
        Command::Llm(LlmCommand::Ping(args)) => ping(args).await,
        Command::Plan(args) => plan(args).await,
        Command::Run(args) => {
            run::run(args.goal, args.inputs, args.expect, args.run, args.llm).await
        }
        Command::Resume(args) => run::resume(args.run_ref, args.run, args.llm).await,
        Command::Verify(args) => run::verify(args).await,
        Command::Batch(args) => run::batch(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "planbox", &mut script);
            print_stdout(&String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => man(args.out.as_deref()),
        Command::Image(ImageCommand::Tag) => {
            println!("{}", sandbox::image::tag());
            Ok(ExitCode::SUCCESS)
        }
        Command::Image(ImageCommand::Build { base, force }) => {
            let docker = sandbox::docker::connect().await?;
            let options = sandbox::image::BuildOptions { base, force };
            let tag = sandbox::image::build(&docker, &options, |line| eprintln!("{line}")).await?;
            println!("{tag}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The top manual page to stdout, or every page (one per subcommand, nested ones too) into
/// `out`, each path printed.
fn man(out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    // Subcommands carry no version of their own: every page names planbox's.
    let source = format!("planbox {}", env!("CARGO_PKG_VERSION"));
    let Some(out) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .source(source)
            .render(&mut page)?;
        print_stdout(&String::from_utf8_lossy(&page));
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut pending = vec![command];
    let mut written = String::new();
    while let Some(command) = pending.pop() {
        pending.extend(
            command
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .cloned(),
        );
        let path = clap_mangen::Man::new(command)
            .source(source.clone())
            .generate_to(out)
            .with_context(|| format!("writing a manual page into {}", out.display()))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    print_stdout(&written);
    Ok(ExitCode::SUCCESS)
}

async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let script = std::fs::read(&args.script).map_err(|err| planbox::Error::Script {
        path: args.script.clone(),
        reason: match err.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            _ => err.to_string(),
        },
    })?;
    let script = String::from_utf8(script).map_err(|_| planbox::Error::Script {
        path: args.script.clone(),
        reason: "not UTF-8 text: save it as UTF-8".into(),
    })?;
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        anyhow::bail!("--timeout must be in (0, 600] seconds");
    }
    let policy = Policy {
        memory: args.memory,
        nano_cpus: (args.cpus * 1e9) as i64,
        timeout: Duration::from_secs_f64(args.timeout),
        runtime: args.runtime,
        ..Policy::default()
    };
    let docker = sandbox::docker::connect().await?;
    let sandbox = DockerSandbox::new(docker, policy, sandbox::image::tag()).await?;
    let reaped = sandbox
        .reap()
        .await
        .context("reaping leftover containers")?;
    if reaped > 0 {
        tracing::info!(reaped, "removed leftover containers of earlier runs");
    }
    let job = Job {
        inputs: args.inputs,
        out_dir: args.out.clone(),
        run_id: format!("exec-{}", std::process::id()),
    };
    let work = sandbox.exec(&job, &script);
    let output = tokio::select! {
        output = work => output?,
        signal = shutdown_signal() => {
            sandbox.shutdown().await;
            eprintln!("planbox: stopped by {signal}; containers removed");
            return Ok(ExitCode::from(130));
        }
    };
    if args.json {
        let value = serde_json::json!({
            "status": output.status,
            "exit_code": match output.status { sandbox::Status::Exited(code) => Some(code), _ => None },
            "success": output.status.success(),
            "start_ms": output.start.as_millis() as u64,
            "run_ms": output.run.as_millis() as u64,
            "stdout": output.stdout,
            "stderr": output.stderr,
            "stdout_bytes": output.stdout_bytes,
            "stderr_bytes": output.stderr_bytes,
            "out_dir": args.out,
            "artifacts": output.artifacts,
        });
        print_stdout(&format!("{value}\n"));
    } else {
        let clean = |text: &str| planbox::text::strip_escapes(text);
        print_stdout(&clean(&output.stdout));
        if !output.stderr.is_empty() {
            eprint!("{}", clean(&output.stderr));
        }
        eprintln!(
            "planbox: {} (start {:.2}s, run {:.2}s)",
            output.status,
            output.start.as_secs_f64(),
            output.run.as_secs_f64()
        );
        for artifact in &output.artifacts {
            eprintln!(
                "  {} ({} bytes)",
                args.out.join(&artifact.path).display(),
                artifact.size
            );
        }
    }
    sandbox.settle().await;
    Ok(if output.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    use planbox::llm::{Client, record};
    if !(1..=50).contains(&args.max_steps) {
        anyhow::bail!("--max-steps must be between 1 and 50");
    }
    // Inputs are checked and profiled before any model call.
    let profiles = args
        .inputs
        .iter()
        .map(|path| planbox::profile::profile(path))
        .collect::<Result<Vec<_>, _>>()?;
    let config = args.llm.config()?;
    let client = match &args.llm.replay {
        Some(dir) => Client::Replay(record::Replay::open(dir)?),
        None => config.client()?,
    };
    let planned = match &args.llm.record {
        Some(dir) => {
            let recorder =
                record::Recorder::new(client, dir, config.api_key.iter().cloned().collect())?;
            plan_with(&recorder, &args, &profiles).await?
        }
        None => plan_with(&client, &args, &profiles).await?,
    };
    if args.json {
        print_stdout(&format!("{:#}\n", planbox::planner::to_json(&planned)));
    } else {
        let mut text = String::from("inputs:\n");
        for profile in &profiles {
            text.push_str(&planbox::profile::render(profile));
        }
        text.push_str(&format!("\nplan ({:?}):\n", planned.mode).to_lowercase());
        text.push_str(&planbox::plan::render_tree(&planned.plan));
        for note in &planned.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        print_stdout(&text);
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan_with<L: planbox::llm::Llm>(
    llm: &L,
    args: &PlanArgs,
    profiles: &[planbox::profile::Profile],
) -> planbox::Result<planbox::planner::Planned> {
    let mut planner = planbox::planner::Planner::new(llm);
    planner.limits.max_steps = args.max_steps;
    planner
        .plan(&args.goal, profiles, args.mode, args.reflect)
        .await
}

async fn ping(args: LlmArgs) -> anyhow::Result<ExitCode> {
    use planbox::llm::{Client, Llm, Request, record};
    let config = args.config()?;
    let client = match &args.replay {
        Some(dir) => Client::Replay(record::Replay::open(dir)?),
        None => config.client()?,
    };
    let request = Request::ping();
    let reply = match &args.record {
        Some(dir) => {
            let secrets = config.api_key.iter().cloned().collect();
            record::Recorder::new(client, dir, secrets)?
                .complete(&request)
                .await
        }
        None => client.complete(&request).await,
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(err) => {
            eprintln!(
                "planbox: {:?} at {} did not answer: {err:#}",
                config.model, config.base_url
            );
            return Ok(ExitCode::from(2));
        }
    };
    let secs = reply.latency.as_secs_f64();
    print_stdout(&format!(
        "model {} at {}: {:?} in {secs:.2} s, {} tokens in, {} out{} ({:.1} tokens/s)\n",
        reply.model,
        config.base_url,
        reply.text.trim(),
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        if reply.usage.estimated {
            " (estimated)"
        } else {
            ""
        },
        reply.usage.completion_tokens as f64 / secs.max(1e-3),
    ));
    Ok(ExitCode::SUCCESS)
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Resolves on SIGINT or SIGTERM with the signal's name.
pub(crate) async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2g"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5t").is_err());
    }

    #[test]
    fn expectations_parse_as_name_and_value() {
        assert_eq!(
            parse_expect("@growth_pct = 15.2"),
            Ok(("growth_pct".into(), "15.2".into()))
        );
        assert_eq!(
            parse_expect("region=North West"),
            Ok(("region".into(), "North West".into()))
        );
        assert!(parse_expect("region").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_expect("2x=1").unwrap_err().contains("answer name"));
    }
}
