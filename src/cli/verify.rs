//! `planbox verify`: a finished run's checks printed one per line, optionally as JUnit XML;
//! exit 0 when everything reproduced. `planbox export`: the same final scripts, as a
//! notebook or one Python file.

use std::process::ExitCode;

use anyhow::Context;
use planbox::batch::Case;
use planbox::run::RunFolder;
use planbox::sandbox::{self, DockerSandbox, Policy};
use planbox::verify::Check;

use std::path::PathBuf;

use super::{exit_code_for, print_stdout};

/// Verify the run in the image it ran in, and report each check.
pub(super) async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let info = folder.info()?;
    let planned = folder
        .plan()?
        .context("the run has no plan yet: nothing to verify")?;
    let recorded = RecordedSandbox::from_options(&info.options);
    let policy = recorded.policy(args.runtime.clone());
    let docker = sandbox::docker::connect().await?;
    let sandbox = DockerSandbox::new(docker, policy, info.image.clone())
        .await?
        .with_delivery(sandbox::Delivery::for_host(
            &sandbox::engine::host(),
            args.no_bind,
        ));
    let work = planbox::verify::verify(&folder, &planned.plan, &sandbox, args.tolerance);
    let checks = tokio::select! {
        checks = work => checks?,
        signal = super::shutdown_signal() => {
            sandbox.shutdown().await;
            eprintln!("planbox: stopped by {signal}; containers removed");
            return Ok(ExitCode::from(130));
        }
    };
    sandbox.settle().await;
    let mut text = String::new();
    for check in &checks {
        let verdict = match failure(check) {
            None => "ok".to_string(),
            Some(problems) => format!("FAILED: {problems}"),
        };
        text.push_str(&format!("{:<24} {verdict}\n", check.subject));
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    text.push_str(&format!(
        "{} passed, {failed} failed\n",
        checks.len() - failed
    ));
    print_stdout(&text);
    if let Some(path) = &args.junit {
        let cases: Vec<Case> = checks
            .iter()
            .map(|check| Case {
                name: check.subject.to_string(),
                failure: failure(check),
                time: check.took,
            })
            .collect();
        let xml = planbox::batch::junit(&format!("verify {}", info.id), &cases);
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(exit_code_for(failed == 0))
}

/// The sandbox settings a run was started with, as `run.json` keeps them under
/// `options.sandbox`: verify re-runs the scripts under the same limits and runtime.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct RecordedSandbox {
    /// Memory limit per script, in bytes.
    memory: Option<i64>,
    /// Wall-clock limit per script, in seconds.
    timeout_secs: Option<f64>,
    /// OCI runtime; the engine's default when absent.
    runtime: Option<String>,
}

impl RecordedSandbox {
    /// What a run started under `policy` records.
    pub(super) fn of(policy: &Policy) -> Self {
        RecordedSandbox {
            memory: Some(policy.memory),
            timeout_secs: Some(policy.timeout.as_secs_f64()),
            runtime: policy.runtime.clone(),
        }
    }

    /// The settings in a run's stored options; runs from before they were kept get the
    /// defaults.
    pub(super) fn from_options(options: &serde_json::Value) -> Self {
        options
            .get("sandbox")
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default()
    }

    /// The policy to re-run under: the recorded limits, `runtime` over the recorded one.
    pub(super) fn policy(&self, runtime: Option<String>) -> Policy {
        let default = Policy::default();
        Policy {
            memory: self.memory.unwrap_or(default.memory),
            timeout: self
                .timeout_secs
                .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
                .unwrap_or(default.timeout),
            runtime: runtime.or_else(|| self.runtime.clone()),
            ..default
        }
    }
}

/// A failed check's problems on one line; `None` when it passed.
fn failure(check: &Check) -> Option<String> {
    (!check.passed()).then(|| {
        check
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Write the run's final scripts where `--notebook` and `--script` say.
pub(super) fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let planned = folder
        .plan()?
        .context("the run has no plan yet: nothing to export")?;
    let inputs = match &args.inputs_dir {
        Some(dir) => planbox::export::Inputs::In(dir.clone()),
        None => planbox::export::Inputs::Recorded,
    };
    let export = planbox::export::gather(&folder, &planned.plan, &inputs)?;
    if export.cells.is_empty() {
        anyhow::bail!("no step of this run has finished: nothing to export");
    }
    if let Some(path) = &args.notebook {
        planbox::export::write_notebook(&export, path)?;
        eprintln!("wrote {} ({} steps)", path.display(), export.cells.len());
    }
    if let Some(path) = &args.script {
        planbox::export::write_script(&export, path)?;
        eprintln!("wrote {} ({} steps)", path.display(), export.cells.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(super) runs_dir: PathBuf,
    /// Also write the results as a JUnit XML report to this file, for CI.
    #[arg(long, value_name = "FILE")]
    pub(super) junit: Option<PathBuf>,
    /// Relative tolerance when comparing numbers in CSV outputs.
    #[arg(long, default_value_t = 1e-6)]
    pub(super) tolerance: f64,
    /// OCI runtime to re-run the scripts under, e.g. runsc [default: the one the run used].
    #[arg(long, value_name = "NAME")]
    pub(super) runtime: Option<String>,
    /// Copy inputs into the containers through the engine's API instead of bind-mounting
    /// them (the default for an engine that is not on this machine's socket).
    #[arg(long)]
    pub(super) no_bind: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("format").required(true).multiple(true).args(["notebook", "script"])))]
pub(super) struct ExportArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(super) runs_dir: PathBuf,
    /// Write a Jupyter notebook (nbformat 4) here.
    #[arg(long, value_name = "FILE.ipynb")]
    pub(super) notebook: Option<PathBuf>,
    /// Write the same as one Python file here.
    #[arg(long, value_name = "FILE.py")]
    pub(super) script: Option<PathBuf>,
    /// Read the inputs from this folder, by name, instead of where the run read them.
    #[arg(long, value_name = "DIR")]
    pub(super) inputs_dir: Option<PathBuf>,
}
