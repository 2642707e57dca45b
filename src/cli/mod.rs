//! Command-line parsing and the mapping of outcomes to exit codes: 0 success, 1 the script
//! or goal failed, 2 usage, configuration or infrastructure error.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use planbox::sandbox;

use args::{
    AskArgs, BatchArgs, CompletionsArgs, ExecArgs, ImageCommand, LlmCommand, ManArgs, PlanArgs,
    RescoreArgs, ResumeArgs, RunArgs,
};
// `doctor` takes the model flags from here.
use args::ModelArgs;
use verify::{ExportArgs, VerifyArgs};

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
    /// Ask a finished run a follow-up question: planned and run in the same run folder on top
    /// of its finished steps, which are reused, not run again.
    Ask(AskArgs),
    /// Re-run a finished run's scripts in fresh containers; exit 0 when every output
    /// reproduces.
    Verify(VerifyArgs),
    /// Write a run's final scripts as a Jupyter notebook or one Python file, in dependency
    /// order, inputs read from local paths: run it top to bottom to reproduce the run.
    Export(ExportArgs),
    /// List the runs under --runs-dir: id, start, status, duration, tokens, answer, goal.
    Runs(history::RunsArgs),
    /// Print one run: its goal, answer, plan with each step's status, and its reports.
    Show(history::ShowArgs),
    /// Serve a live view of a run (in progress or finished) in the browser, on 127.0.0.1,
    /// until Ctrl-C.
    Watch(watch::WatchArgs),
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
mod history;
mod model;
mod plan;
mod progress;
mod run;
mod verify;
mod watch;

/// Parse arguments, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    // Which run options `resume` and `ask` were given on their command line: those
    // override what the run was started with, the rest keep it.
    let given = |sub: &clap::ArgMatches| -> Vec<String> {
        sub.ids()
            .filter(|id| {
                sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
            })
            .map(|id| id.as_str().to_string())
            .collect()
    };
    match (&mut cli.command, matches.subcommand()) {
        (Command::Resume(args), Some(("resume", sub))) => args.given = given(sub),
        (Command::Ask(args), Some(("ask", sub))) => args.given = given(sub),
        _ => {}
    }
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
    err.chain()
        .find_map(|cause| cause.downcast_ref::<planbox::Error>())
        .and_then(error_fix)
}

/// The command or setting that fixes `err`, for the error line and `planbox doctor` alike;
/// `None` when the message already says what to do, or nothing says more than it.
pub(crate) fn error_fix(err: &planbox::Error) -> Option<String> {
    use planbox::Error;
    match err {
        Error::EngineUnreachable { host, kind, .. } => Some(kind.fix(host)),
        Error::LlmUnreachable { kind, .. } => Some(model_unreachable_fix(*kind).to_string()),
        Error::LlmKeyRefused { key_var, .. } => Some(format!("export {key_var}=<your key>")),
        Error::LlmNotFound { .. } => Some(
            "name a model the server has: --model NAME (or export PLANBOX_MODEL=NAME), or correct the base URL: --base-url URL"
                .to_string(),
        ),
        Error::LlmNotJson { .. } => Some(
            "point --base-url at the model API itself (an OpenAI-compatible one ends in /v1)"
                .to_string(),
        ),
        Error::EnginesDown(_) => Some(
            "start the engines again (planbox doctor checks each), or drop the ones that are gone from --engine or planbox.toml's [sandbox] engines"
                .to_string(),
        ),
        Error::RuntimeMissing { name, .. } if name == "runsc" => Some(
            "install gVisor and register it with the engine: sudo make runsc (sandbox-images/runsc.sh)"
                .to_string(),
        ),
        Error::RuntimeMissing { name, .. } => Some(format!(
            "register {name} in the engine's daemon.json `runtimes` and reload it, or choose one it offers: --runtime NAME"
        )),
        Error::Docker(_)
        | Error::EngineContradiction(_)
        | Error::OutputFolderNotEmpty(_)
        | Error::InvalidSetting { .. }
        | Error::UnknownValue { .. }
        | Error::MissingKey { .. }
        | Error::ConfigFile { .. }
        | Error::HttpClient(_)
        | Error::ImageMissing(_)
        | Error::ImageBuild(_)
        | Error::Input { .. }
        | Error::Script { .. }
        | Error::Io { .. }
        | Error::RunFolderDamaged { .. }
        | Error::NoSuchRun { .. }
        | Error::DependencyNotDone { .. }
        | Error::NoSuchStep(_)
        | Error::GoalEmpty
        | Error::GoalTooLong { .. }
        | Error::SchemaMissing
        | Error::LlmFailing { .. }
        | Error::LlmRefused { .. }
        | Error::LlmReply(_)
        | Error::BudgetExhausted { .. }
        | Error::CostExhausted { .. }
        | Error::WallTimeSpent { .. }
        | Error::Replay(_) => None,
    }
}

/// The fix for a model server that does not answer, by what went wrong.
fn model_unreachable_fix(kind: planbox::llm::LlmUnreachableKind) -> &'static str {
    use planbox::llm::LlmUnreachableKind;
    match kind {
        LlmUnreachableKind::Refused | LlmUnreachableKind::CutOff | LlmUnreachableKind::Other => {
            "start the model server (make local-llm for the offline model), or point planbox at a running one: --base-url URL"
        }
        LlmUnreachableKind::TimedOut(_) => {
            "give the model longer: --llm-timeout SECS (or timeout_secs in planbox.toml's [llm])"
        }
        LlmUnreachableKind::Dns => "check the host name in the base URL: --base-url URL",
        LlmUnreachableKind::Tls => {
            "check the base URL's scheme (http:// for a plain-HTTP server) and that the server's certificate is trusted"
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Exec(args) => exec::exec(args).await,
        Command::Llm(LlmCommand::Ping(args)) => model::ping(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Ask(args) => run::ask(args).await,
        Command::Verify(args) => verify::verify(args).await,
        Command::Export(args) => verify::export(&args),
        Command::Watch(args) => watch::watch(args).await,
        Command::Runs(args) => history::runs(&args),
        Command::Show(args) => history::show(&args),
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

#[cfg(test)]
mod tests {
    use super::*;
    use planbox::llm::LlmUnreachableKind;
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    /// An HTTP client error, as an unreachable server's source.
    fn client_error() -> reqwest::Error {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new().get("no url").build().unwrap_err()
    }

    fn unreachable(kind: LlmUnreachableKind) -> planbox::Error {
        planbox::Error::LlmUnreachable {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            kind,
            source: client_error(),
        }
    }

    #[test]
    fn an_unreachable_model_server_gets_the_fix_for_what_failed() {
        let fixes: Vec<Option<String>> = [
            LlmUnreachableKind::Refused,
            LlmUnreachableKind::TimedOut(Duration::from_secs(300)),
            LlmUnreachableKind::Dns,
            LlmUnreachableKind::Tls,
            LlmUnreachableKind::CutOff,
            LlmUnreachableKind::Other,
        ]
        .into_iter()
        .map(|kind| error_fix(&unreachable(kind)))
        .collect();
        let start = "start the model server (make local-llm for the offline model), or point planbox at a running one: --base-url URL";
        assert_eq!(
            fixes,
            [
                start,
                "give the model longer: --llm-timeout SECS (or timeout_secs in planbox.toml's [llm])",
                "check the host name in the base URL: --base-url URL",
                "check the base URL's scheme (http:// for a plain-HTTP server) and that the server's certificate is trusted",
                start,
                start,
            ]
            .map(|fix| Some(fix.to_string()))
        );
    }

    #[test]
    fn a_refused_or_missing_key_names_its_variable() {
        for has_key in [true, false] {
            let refused = planbox::Error::LlmKeyRefused {
                url: "https://api.anthropic.com/v1/messages".into(),
                status: reqwest::StatusCode::UNAUTHORIZED,
                key_var: "ANTHROPIC_API_KEY",
                has_key,
            };
            assert_eq!(
                error_fix(&refused).as_deref(),
                Some("export ANTHROPIC_API_KEY=<your key>")
            );
        }
    }

    #[test]
    fn a_missing_model_names_the_flag_and_the_variable() {
        let missing = planbox::Error::LlmNotFound {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            model: "qwen".into(),
            message: "model not found".into(),
        };
        assert_eq!(
            error_fix(&missing).as_deref(),
            Some(
                "name a model the server has: --model NAME (or export PLANBOX_MODEL=NAME), or correct the base URL: --base-url URL"
            )
        );
    }

    #[test]
    fn a_reply_that_is_not_json_points_at_the_base_url() {
        let html = planbox::Error::LlmNotJson {
            url: "http://proxy/chat/completions".into(),
            status: reqwest::StatusCode::OK,
            body: "<html>".into(),
        };
        assert_eq!(
            error_fix(&html).as_deref(),
            Some("point --base-url at the model API itself (an OpenAI-compatible one ends in /v1)")
        );
    }

    #[test]
    fn the_fix_is_found_under_the_context_a_command_adds() {
        let err = anyhow::Error::new(unreachable(LlmUnreachableKind::Dns)).context("planning");
        assert_eq!(
            fix(&err).as_deref(),
            Some("check the host name in the base URL: --base-url URL")
        );
        let goal = anyhow::Error::new(planbox::Error::GoalEmpty);
        assert_eq!(fix(&goal), None, "the message already says what to do");
    }
}
