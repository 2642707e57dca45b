//! `planbox batch`: a suite's goals run some at once, each judged and reported as it
//! finishes, in suite order; a signal stops the batch and names what is left to do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use planbox::batch::{Case, Goal, Outcome};
use planbox::event::Silent;
use planbox::run::RunFolder;

use super::args::{BatchArgs, RescoreArgs};
use super::run::Setup;
use super::{exit_code_for, print_stdout, shutdown_signal};

/// Which goals of a batch have started, and the run folders of those not yet finished.
#[derive(Default)]
struct Started {
    goals: Vec<String>,
    unfinished: Vec<PathBuf>,
}

fn lock(started: &Mutex<Started>) -> MutexGuard<'_, Started> {
    started.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One goal's run: how it ended, its folder once made, and how long it took.
struct GoalRun {
    outcome: Outcome,
    dir: Option<PathBuf>,
    took: Duration,
}

async fn run_goal(
    goal: &Goal,
    setup: &Setup<'_>,
    image: &str,
    started: &Mutex<Started>,
) -> GoalRun {
    let began = Instant::now();
    lock(started).goals.push(goal.id.clone());
    let stored = serde_json::json!({
        "agent": setup.settings.agent,
        "sandbox": super::verify::RecordedSandbox::of(&setup.settings.policy),
        "token_budget": setup.token_budget(),
        "batch": goal.id,
    });
    let runs_dir = &setup.options.runs_dir;
    let folder = match RunFolder::create(runs_dir, &goal.goal, &goal.inputs, image, stored) {
        Ok((folder, _)) => folder,
        Err(err) => {
            return GoalRun {
                outcome: Outcome::Failed(format!("{:#}", anyhow::Error::from(err))),
                dir: None,
                took: Duration::ZERO,
            };
        }
    };
    let dir = folder.dir().to_path_buf();
    lock(started).unfinished.push(dir.clone());
    // Each goal records into, and replays from, a folder of its own: its id.
    let outcome = match setup.drive(&folder, &Silent, Some(&goal.id)).await {
        Ok(finished) => Outcome::Finished(finished),
        Err(err) => Outcome::Failed(format!("{err:#}")),
    };
    lock(started).unfinished.retain(|d| *d != dir);
    GoalRun {
        outcome,
        dir: Some(dir),
        took: began.elapsed(),
    }
}

/// One goal's run judged: its row of the summary table and its JUnit case. With `json`, its
/// JSON line is printed now.
fn report(goal: &Goal, run: GoalRun, json: bool) -> (String, Case) {
    let verdict = planbox::batch::judge(goal, run.outcome);
    let (status, passed) = (verdict.status.as_str(), verdict.passed());
    if json {
        let dir = run.dir.map(|d| d.display().to_string()).unwrap_or_default();
        print_stdout(&format!(
            "{}\n",
            serde_json::json!({"id": verdict.id, "status": status, "answer": verdict.answer, "expect_ok": passed, "run": dir})
        ));
    }
    let row = format!(
        "{:<16} {:<10} {:<8} {}\n",
        verdict.id,
        status,
        if passed { "ok" } else { "FAIL" },
        verdict.answer.lines().last().unwrap_or_default()
    );
    (row, verdict.case(run.took))
}

/// Run the suite's goals, `--goals-parallel` at once; exit 0 when every goal passes.
pub(super) async fn batch(args: BatchArgs) -> anyhow::Result<ExitCode> {
    let goals = planbox::batch::read(&args.suite)?;
    for goal in &goals {
        for path in &goal.inputs {
            planbox::profile::profile(path).with_context(|| format!("goal {}", goal.id))?;
        }
    }
    let setup = Setup::new(&args.run, &args.llm).await?;
    let image = planbox::sandbox::image::tag();
    let started = Mutex::new(Started::default());
    let mut goal_runs = futures_util::stream::iter(
        goals
            .iter()
            .map(|goal| run_goal(goal, &setup, &image, &started)),
    )
    .buffered(args.goals_parallel.max(1));
    let mut cases = Vec::new();
    let mut table = format!("{:<16} {:<10} {:<8} answer\n", "id", "status", "expect");
    // Each goal's result is judged (and, with --json, printed) as it arrives, in suite order:
    // a batch stopped midway has reported every goal that finished.
    let work = async {
        let mut goals = goals.iter();
        while let Some(run) = goal_runs.next().await {
            let goal = goals.next().expect("one result per goal");
            let (row, case) = report(goal, run, args.run.json);
            table.push_str(&row);
            cases.push(case);
        }
    };
    tokio::select! {
        () = work => {}
        signal = shutdown_signal() => {
            setup.sandbox.shutdown().await;
            if !args.run.json && !cases.is_empty() {
                print_stdout(&table);
            }
            eprintln!("planbox: stopped by {signal}; containers removed.");
            let started = lock(&started);
            for dir in &started.unfinished {
                eprintln!("planbox: unfinished, continue with: planbox resume {}", dir.display());
            }
            let waiting: Vec<&str> = goals
                .iter()
                .filter(|g| !started.goals.contains(&g.id))
                .map(|g| g.id.as_str())
                .collect();
            if !waiting.is_empty() {
                eprintln!("planbox: not started: {}", waiting.join(", "));
            }
            // The goals that finished are reported, as a whole batch would be.
            if let Some(path) = &args.junit {
                let xml = planbox::batch::junit(&args.suite.display().to_string(), &cases);
                std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("planbox: {} ({} finished goals)", path.display(), cases.len());
            }
            return Ok(ExitCode::from(130));
        }
    };
    setup.sandbox.settle().await;
    setup.report_engines();
    let failed = cases.iter().filter(|c| c.failure.is_some()).count();
    table.push_str(&format!(
        "{} passed, {failed} failed\n",
        cases.len() - failed
    ));
    if args.run.json {
        eprint!("{table}");
    } else {
        print_stdout(&table);
    }
    if let Some(path) = &args.junit {
        let xml = planbox::batch::junit(&args.suite.display().to_string(), &cases);
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(exit_code_for(failed == 0))
}

/// `planbox rescore`: the suite's score from existing run folders, with every answer rule on
/// and with each one off.
pub(super) fn rescore(args: &RescoreArgs) -> anyhow::Result<ExitCode> {
    let goals = planbox::batch::read(&args.suite)?;
    let scores = planbox::batch::rescore(&args.runs, &goals)?;
    let mut text = String::new();
    for score in scores {
        text.push_str(&format!(
            "{:<24} {} of {} right, {} answers changed\n",
            score.setting, score.right, score.total, score.changed
        ));
    }
    text.push_str(
        "\nfailure hints: failed attempts each recognises (the hint they got, unless it was \
         switched off), and how many of those the step's next attempt passed\n",
    );
    for hint in planbox::batch::hint_uses(&args.runs)? {
        text.push_str(&format!(
            "{:<24} {:>3} recognised, {:>3} then passed\n",
            hint.id, hint.fired, hint.next_passed
        ));
    }
    print_stdout(&text);
    Ok(ExitCode::SUCCESS)
}
