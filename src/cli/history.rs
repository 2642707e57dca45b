//! `planbox runs`: the runs under a runs directory, one line each or as JSON.
//! `planbox show RUN`: one run's goal, answer, plan with each step's status, and its reports.

use std::path::PathBuf;
use std::process::ExitCode;

use planbox::run::RunFolder;
use planbox::run::history::{self, RunSummary, StepStatus, attempt_numbers, utc};
use planbox::text::strip_escapes;

use super::print_stdout;

#[derive(Debug, clap::Args)]
pub(super) struct RunsArgs {
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(super) runs_dir: PathBuf,
    /// One JSON object per run, one per line, instead of the table.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(super) runs_dir: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

/// One line for a terminal: escapes stripped, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    super::progress::one_line(&strip_escapes(text), max)
}

fn duration(summary: &RunSummary) -> String {
    summary.millis.map_or_else(
        || "-".to_string(),
        |ms| format!("{:.1} s", ms as f64 / 1000.0),
    )
}

/// List the runs, oldest first.
pub(super) fn runs(args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let listing = history::list(&args.runs_dir)?;
    for (dir, why) in &listing.damaged {
        eprintln!("planbox: skipped {}: {why}", dir.display());
    }
    let mut text = String::new();
    if args.json {
        for run in &listing.runs {
            text.push_str(&serde_json::to_string(run)?);
            text.push('\n');
        }
    } else if listing.runs.is_empty() {
        eprintln!(
            "no runs under {}: start one with `planbox run GOAL -i FILE`",
            args.runs_dir.display()
        );
    } else {
        text.push_str(&format!(
            "{:<25} {:<16} {:<12} {:>9} {:>8}  {:<30} {}\n",
            "ID", "STARTED (UTC)", "STATUS", "DURATION", "TOKENS", "ANSWER", "GOAL"
        ));
        for run in &listing.runs {
            let answer = run
                .answer
                .as_deref()
                .map_or("-".into(), |a| one_line(a, 30));
            text.push_str(&format!(
                "{:<25} {:<16} {:<12} {:>9} {:>8}  {:<30} {}\n",
                run.id,
                utc(run.started),
                run.status.label(),
                duration(run),
                run.tokens,
                answer,
                one_line(&run.goal, 60),
            ));
        }
    }
    print_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

/// One step of the run's current plan, as `show` prints it.
#[derive(serde::Serialize)]
struct StepLine {
    id: String,
    title: String,
    status: StepStatus,
    attempts: usize,
}

/// Print one run.
pub(super) fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.runs_dir)?;
    let summary = history::summarize(&dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let state = folder.state();
    let planned = folder.plan()?;
    let steps: Vec<StepLine> = planned
        .iter()
        .flat_map(|p| &p.plan.steps)
        .map(|step| {
            let attempts = attempt_numbers(&dir.join("steps").join(&step.id)).len();
            StepLine {
                id: step.id.clone(),
                title: step.title.clone(),
                status: StepStatus::of(&state, &step.id, attempts),
                attempts,
            }
        })
        .collect();
    let reports: Vec<PathBuf> = ["answer.md", "report.md", "report.html"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    if args.json {
        let value = serde_json::json!({
            "run": summary,
            "plan_version": state.plan_version,
            "replans": state.replans,
            "steps": steps,
            "reports": reports,
        });
        print_stdout(&format!("{value:#}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "run     {} ({})\nstarted {} UTC\ngoal    {}\nstatus  {}, {}, {} tokens\n",
        summary.id,
        dir.display(),
        utc(summary.started),
        one_line(&summary.goal, 500),
        summary.status.label(),
        duration(&summary),
        summary.tokens,
    );
    match &summary.answer {
        Some(answer) => text.push_str(&format!("answer  {}\n", one_line(answer, 2000))),
        None => text.push_str("answer  none yet\n"),
    }
    if steps.is_empty() {
        text.push_str("plan    none yet\n");
    } else {
        text.push_str(&format!(
            "plan    version {}, {} replan(s)\n",
            state.plan_version.max(1),
            state.replans
        ));
        let width = steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for step in &steps {
            text.push_str(&format!(
                "  {:<width$}  {:<8} {} attempt(s)  {}\n",
                step.id,
                step.status.label(),
                step.attempts,
                one_line(&step.title, 80),
            ));
        }
    }
    for path in &reports {
        text.push_str(&format!("report  {}\n", path.display()));
    }
    if summary.status == history::RunStatus::Unfinished {
        text.push_str(&format!(
            "resume  planbox resume {} --runs-dir {}\n",
            summary.id,
            args.runs_dir.display()
        ));
    }
    print_stdout(&text);
    Ok(ExitCode::SUCCESS)
}
