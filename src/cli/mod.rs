//! Command-line parsing and the mapping of outcomes to exit codes: 0 success, 1 the script
//! or goal failed, 2 usage, configuration or infrastructure error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox};

/// Turn a data-analysis goal into Python scripts that really run, each in a fresh,
/// locked-down Docker container.
#[derive(Debug, Parser)]
#[command(name = "planbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one Python script in the sandbox and report how it ended.
    Exec(ExecArgs),
    /// Manage the sandbox image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Talk to the configured model.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Profile the inputs and print the validated plan for a goal, without running it.
    Plan(PlanArgs),
    /// Plan, write, run, repair and answer a goal; everything lands in a run folder.
    Run(RunArgs),
    /// Continue a run that crashed, was killed or was stopped; done steps are kept.
    Resume(ResumeArgs),
    /// Re-run a finished run's scripts in fresh containers and check they reproduce.
    Verify(VerifyArgs),
    /// Run a suite of goals (JSONL) and check their answers.
    Batch(BatchArgs),
}

/// Bounds and sandbox settings for running goals.
#[derive(Debug, Clone, clap::Args)]
struct RunOptions {
    /// Planning mode.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    mode: planbox::planner::Mode,
    /// Critique-and-improve rounds on the plan.
    #[arg(long, default_value_t = 0)]
    reflect: usize,
    /// Steps run at once (default: the number of CPUs).
    #[arg(long)]
    parallel: Option<usize>,
    /// Repairs of a failing step before replanning.
    #[arg(long, default_value_t = 2)]
    max_repairs: usize,
    /// Replans per run.
    #[arg(long, default_value_t = 3)]
    max_replans: usize,
    /// Most steps in a plan.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// Wall-time budget for the run, in seconds.
    #[arg(long)]
    wall_time: Option<f64>,
    /// Most containers (script runs) for the run.
    #[arg(long)]
    max_containers: Option<usize>,
    /// Where run folders go.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Wall-clock limit per script, in seconds (at most 600).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Memory limit per script, e.g. 512m or 2g.
    #[arg(long, default_value = "2g", value_parser = parse_bytes)]
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
    /// An input file (repeatable).
    #[arg(long = "input", short = 'i')]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    run: RunOptions,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The run: its folder, or its id under --runs-dir.
    run_ref: String,
    #[command(flatten)]
    run: RunOptions,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The run: its folder, or its id under --runs-dir.
    run_ref: String,
    /// Where run folders are.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Relative tolerance for numbers in CSV outputs.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
}

#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// The suite: one JSON object per line, {"id", "goal", "inputs": [...], "expect": {"name": "value"}}.
    suite: PathBuf,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Goals run at once.
    #[arg(long = "goals-parallel", default_value_t = 1)]
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
    /// An input file (repeatable).
    #[arg(long = "input", short = 'i')]
    inputs: Vec<PathBuf>,
    /// Planning mode.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    mode: planbox::planner::Mode,
    /// Critique-and-improve rounds on the plan.
    #[arg(long, default_value_t = 0)]
    reflect: usize,
    /// Most steps in a plan.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Debug, Subcommand)]
enum LlmCommand {
    /// Send one tiny request and report the model, latency and speed (exit 0 if it answered).
    Ping(LlmArgs),
}

/// Model settings; each overrides the environment and planbox.toml.
#[derive(Debug, Clone, clap::Args)]
struct LlmArgs {
    /// Provider: openai (any OpenAI-compatible server), anthropic, or local (make local-llm).
    #[arg(long, value_enum)]
    provider: Option<planbox::llm::Provider>,
    /// Base URL of the API (OpenAI-compatible ones end in /v1).
    #[arg(long)]
    base_url: Option<String>,
    /// Model name.
    #[arg(long)]
    model: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Reply token limit.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Request timeout in seconds.
    #[arg(long)]
    llm_timeout: Option<f64>,
    /// Stop cleanly once this many tokens are spent.
    #[arg(long)]
    token_budget: Option<u64>,
    /// Configuration file.
    #[arg(long, default_value = "planbox.toml")]
    config: PathBuf,
    /// Write every model exchange to this folder (secrets redacted).
    #[arg(long, conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Serve model replies from a recording instead of a server.
    #[arg(long)]
    replay: Option<PathBuf>,
}

impl LlmArgs {
    fn config(&self) -> anyhow::Result<planbox::llm::LlmConfig> {
        let file = planbox::llm::config::FileConfig::load(&self.config)?;
        let overrides = planbox::llm::config::Overrides {
            provider: self.provider,
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout_secs: self.llm_timeout,
            token_budget: self.token_budget,
        };
        Ok(planbox::llm::LlmConfig::resolve(
            &overrides,
            |name| std::env::var(name).ok(),
            &file,
        )?)
    }
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The script to run.
    script: PathBuf,
    /// A file the script may read, mounted read-only at /data/<file name> (repeatable).
    #[arg(long = "input", short = 'i')]
    inputs: Vec<PathBuf>,
    /// Folder that receives the files the script writes to /out (new or empty).
    #[arg(long, default_value = "planbox-out")]
    out: PathBuf,
    /// Wall-clock limit in seconds (at most 600).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Memory limit, e.g. 512m or 2g (swap is set equal: none).
    #[arg(long, default_value = "2g", value_parser = parse_bytes)]
    memory: i64,
    /// CPUs the script may use.
    #[arg(long, default_value_t = 1.0)]
    cpus: f64,
    /// OCI runtime to use, e.g. runsc for gVisor.
    #[arg(long)]
    runtime: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build the sandbox image (reused when current).
    Build {
        /// Base image to build on instead of a Debian rootfs (needs a registry).
        #[arg(long)]
        base: Option<String>,
        /// Rebuild even if the current image exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the tag of the current sandbox image.
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
            eprintln!("planbox: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Exec(args) => exec(args).await,
        Command::Llm(LlmCommand::Ping(args)) => ping(args).await,
        Command::Plan(args) => plan(args).await,
        Command::Run(args) => run::run(args.goal, args.inputs, args.run, args.llm).await,
        Command::Resume(args) => run::resume(args.run_ref, args.run, args.llm).await,
        Command::Verify(args) => run::verify(args).await,
        Command::Batch(args) => run::batch(args).await,
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
    use planbox::llm::{Client, Llm, Message, Request, record};
    let config = args.config()?;
    let client = match &args.replay {
        Some(dir) => Client::Replay(record::Replay::open(dir)?),
        None => config.client()?,
    };
    let request = Request {
        max_tokens: Some(8),
        temperature: Some(0.0),
        ..Request::new(vec![
            Message::system("You are a terse assistant."),
            Message::user("Reply with the single word: pong"),
        ])
    };
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
}
