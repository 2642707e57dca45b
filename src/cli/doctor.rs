//! `planbox doctor`: checks what a run needs (the Docker engine, the sandbox image, leftover
//! containers, the model, structured output, disk space) and names, for every problem, the
//! command that fixes it. Checks are independent, run concurrently, and each has a deadline.

mod disk;
mod docker;
mod model;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use super::{ModelArgs, print_stdout};

/// Check the engine, the image, leftover containers, the model and disk space, and say how
/// to fix what is wrong. Exit code 0 when no check failed (warnings included), 1 otherwise.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder that holds the run folders; the free space of its disk is checked.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Seconds each check may take before it counts as failed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON object, {"ok", "checks": [{"name", "status", "detail", "fix"}]}, instead
    /// of lines.
    #[arg(long)]
    json: bool,
    /// Also check this engine of a pool (repeatable) [default: the engines in
    /// planbox.toml's [sandbox]].
    #[arg(long = "engine", value_name = "HOST")]
    engines: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
}

/// How a check came out. `skip` means a check it depends on failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One finding: what was checked, how it came out, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

const DOCKER: &str = "docker";
const IMAGE: &str = "image";
const CONTAINERS: &str = "containers";
const RUNTIMES: &str = "runtimes";
const MODEL: &str = "model";
const STRUCTURED: &str = "structured-output";
const DISK: &str = "disk";
const ENGINES: &str = "engines";

/// Run every check, print them, and map the outcome to an exit code.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        anyhow::bail!("--timeout must be in (0, 600] seconds");
    }
    let deadline = Duration::from_secs_f64(args.timeout);
    let file = planbox::llm::config::FileConfig::load(args.model.config()).ok();
    let wanted = file.as_ref().and_then(|file| file.sandbox.runtime.clone());
    let pool = if args.engines.is_empty() {
        file.map(|file| file.sandbox.engines).unwrap_or_default()
    } else {
        args.engines.clone()
    };
    let ((docker, image, containers, runtimes), engines, (model, structured), disk) = tokio::join!(
        docker::docker_checks(deadline, wanted),
        docker::engines_check(&pool, deadline),
        model::model_checks(&args.model, deadline),
        disk::disk_check(args.runs_dir.clone(), deadline),
    );
    let mut checks = vec![docker, image, containers, runtimes];
    checks.extend(engines);
    checks.extend([model, structured, disk]);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let value = json!({"ok": !failed, "checks": checks});
        print_stdout(&format!("{value}\n"));
    } else {
        print_stdout(&render(&checks));
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The checks as aligned lines, a fix under each problem, and a one-line summary.
fn render(checks: &[Check]) -> String {
    let mut text = String::new();
    for check in checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        text.push_str(&format!(
            "{status:<5} {:<18} {}\n",
            check.name, check.detail
        ));
        if let Some(fix) = &check.fix {
            text.push_str(&format!("{:<24} fix: {fix}\n", ""));
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    text.push_str(&match (failed, warned) {
        (0, 0) => "planbox is ready\n".to_string(),
        (0, w) => format!("planbox is ready, with {w} warning{}\n", plural(w)),
        (f, w) => format!(
            "{f} check{} failed, {w} warning{}: planbox cannot run until the fixes above are applied\n",
            plural(f),
            plural(w)
        ),
    });
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Await `work` for at most `deadline`.
async fn within<T>(deadline: Duration, work: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(deadline, work).await.ok()
}

/// The innermost cause of an error: what a person needs, where the outer layers name only
/// the library that passed it on.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(err), |e| e.source())
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn size(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let bytes = bytes as f64;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes / GIB)
    } else {
        format!("{:.0} MiB", bytes / 1024.0 / 1024.0)
    }
}

fn age(unix_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = now.saturating_sub(unix_secs).max(0);
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_fixes_under_problems() {
        let checks = [
            Check::ok(
                DOCKER,
                "engine 27.1.1 at unix:///var/run/docker.sock, API 1.46; planbox negotiated API 1.46",
            ),
            Check::fail(
                IMAGE,
                "planbox-sandbox:0123456789ab is missing",
                "make image   (or: planbox image build)",
            ),
            Check::warn(
                CONTAINERS,
                "2 leftover containers whose planbox process is gone",
                "make clean-containers   (or leave them: the next planbox run removes them)",
            ),
            Check::fail(
                MODEL,
                "local model \"qwen2.5-coder-1.5b-instruct\" at http://127.0.0.1:8411/v1: cannot reach the model server",
                "make local-llm",
            ),
            Check::skip(STRUCTURED, "needs a model that answers"),
            Check::ok(DISK, "61.2 GiB free for runs (measured at .)"),
        ];
        insta::assert_snapshot!(render(&checks));
    }
}
