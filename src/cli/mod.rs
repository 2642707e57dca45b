//! Command-line parsing and the mapping of outcomes to exit codes: 0 success, 1 the script
//! or goal failed, 2 usage, configuration or infrastructure error.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use planbox::sandbox;

use args::{
    BatchArgs, CompletionsArgs, ExecArgs, ImageCommand, LlmCommand, ManArgs, PlanArgs, RescoreArgs,
    ResumeArgs, RunArgs, VerifyArgs,
};
// `doctor` takes the model flags from here.
use args::ModelArgs;

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
    /// Score finished run folders against a suite again with each answer rule switched off:
    /// what each rule is worth, without running anything.
    #[command(hide = true)]
    Rescore(RescoreArgs),
}

mod args;
mod batch;
mod doctor;
mod exec;
mod model;
mod plan;
mod progress;
mod run;
mod verify;

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
        Command::Exec(args) => exec::exec(args).await,
        Command::Llm(LlmCommand::Ping(args)) => model::ping(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Verify(args) => verify::verify(args).await,
        Command::Batch(args) => batch::batch(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "planbox", &mut script);
            print_stdout(&String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => man(args.out.as_deref()),
        Command::Rescore(args) => batch::rescore(&args),
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

/// Exit code 0 when the command's outcome is what was asked for, else 1.
pub(crate) fn exit_code_for(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
