//! `planbox run`, `resume`, `verify` and `batch`: the agent driven from the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use planbox::agent::{Agent, Finished};
use planbox::event::{Jsonl, Silent, Sink};
use planbox::llm::{Client, Meter, record};
use planbox::run::RunFolder;
use planbox::sandbox::{self, DockerSandbox, Job, Sandbox, Status};

use super::{BatchArgs, LlmArgs, RunOptions, VerifyArgs, print_stdout, shutdown_signal};

async fn sandbox_for(options: &RunOptions) -> anyhow::Result<DockerSandbox> {
    let docker = sandbox::docker::connect().await?;
    let sandbox = DockerSandbox::new(docker, options.policy()?, sandbox::image::tag()).await?;
    sandbox
        .reap()
        .await
        .context("reaping leftover containers")?;
    Ok(sandbox)
}

fn client(llm: &LlmArgs) -> anyhow::Result<(Client, planbox::llm::LlmConfig)> {
    let config = llm.config()?;
    let client = match &llm.replay {
        Some(dir) => Client::Replay(record::Replay::open(dir)?),
        None => config.client()?,
    };
    Ok((client, config))
}

/// Run the agent over a folder with whichever model wrapper the flags ask for.
async fn drive(
    folder: &RunFolder,
    options: &RunOptions,
    llm: &LlmArgs,
    sandbox: &DockerSandbox,
    sink: &impl Sink,
) -> anyhow::Result<Finished> {
    let (client, config) = client(llm)?;
    let meter = Arc::new(Meter::new(config.token_budget, config.price));
    let agent_options = options.agent_options()?;
    Ok(match &llm.record {
        Some(dir) => {
            let recorder =
                record::Recorder::new(client, dir, config.api_key.iter().cloned().collect())?;
            Agent::new(&recorder, sandbox, agent_options, meter)
                .run(folder, sink)
                .await?
        }
        None => {
            Agent::new(&client, sandbox, agent_options, meter)
                .run(folder, sink)
                .await?
        }
    })
}

async fn drive_with_signals(
    folder: &RunFolder,
    options: &RunOptions,
    llm: &LlmArgs,
    sandbox: &DockerSandbox,
    expect: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    let human = super::progress::Progress::for_stderr(options.max_replans);
    let jsonl = Jsonl(std::sync::Mutex::new(std::io::stdout()));
    let work = async {
        if options.json {
            drive(folder, options, llm, sandbox, &jsonl).await
        } else {
            drive(folder, options, llm, sandbox, &human).await
        }
    };
    let finished = tokio::select! {
        finished = work => finished?,
        signal = shutdown_signal() => {
            sandbox.shutdown().await;
            eprintln!(
                "planbox: stopped by {signal}; containers removed. Continue with: planbox resume {}",
                folder.dir().display()
            );
            return Ok(ExitCode::from(130));
        }
    };
    sandbox.settle().await;
    if !options.json {
        print_stdout(&format!("{}\n", finished.answer));
        eprintln!("report: {}", finished.dir.join("report.md").display());
        eprintln!("report: {}", finished.dir.join("report.html").display());
        if let Some(budget) = &finished.ended_by {
            eprintln!("planbox: the {budget} budget ended the run; the report shows what was done");
        }
    }
    let mismatches = mismatches(expect, &finished.answer);
    if !expect.is_empty() && !options.json {
        if mismatches.is_empty() {
            eprintln!("expected answer: matched ({} values)", expect.len());
        } else {
            eprintln!("expected answer: {}", mismatches.join("; "));
        }
    }
    Ok(if finished.achieved && mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Each expected `@name[value]` the answer lacks or gives otherwise, described.
fn mismatches(expect: &[(String, String)], answer: &str) -> Vec<String> {
    let values = planbox::answer::answer_values(answer);
    expect
        .iter()
        .filter_map(
            |(name, want)| match values.iter().find(|(n, _)| n == name) {
                Some((_, got)) if matches(want, got) => None,
                Some((_, got)) => Some(format!("@{name}: expected {want}, got {got}")),
                None => Some(format!("@{name}: missing (expected {want})")),
            },
        )
        .collect()
}

pub(super) async fn run(
    goal: String,
    inputs: Vec<PathBuf>,
    expect: Vec<(String, String)>,
    options: RunOptions,
    llm: LlmArgs,
) -> anyhow::Result<ExitCode> {
    if goal.trim().is_empty() {
        anyhow::bail!("the goal is empty: say what to find out");
    }
    // Inputs and the model settings are checked before any container or model call.
    for path in &inputs {
        planbox::profile::profile(path)?;
    }
    llm.config()?;
    let sandbox = sandbox_for(&options).await?;
    let stored = serde_json::json!({"agent": options.agent_options()?});
    let (folder, info) = RunFolder::create(
        &options.runs_dir,
        &goal,
        &inputs,
        &sandbox::image::tag(),
        stored,
    )?;
    if !options.json {
        eprintln!("run folder: {} (id {})", folder.dir().display(), info.id);
    }
    drive_with_signals(&folder, &options, &llm, &sandbox, &expect).await
}

pub(super) async fn resume(
    run_ref: String,
    options: RunOptions,
    llm: LlmArgs,
) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&run_ref, &options.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let info = folder.info()?;
    for input in &info.inputs {
        if !input.path.is_file() {
            anyhow::bail!(
                "input {} of this run is gone ({})",
                input.name,
                input.path.display()
            );
        }
    }
    llm.config()?;
    let sandbox = sandbox_for(&options).await?;
    drive_with_signals(&folder, &options, &llm, &sandbox, &[]).await
}

/// One verified step.
struct Check {
    step: String,
    problems: Vec<String>,
    millis: u128,
}

/// Compare two CSV files cell by cell, numbers within a relative tolerance.
fn csv_close(a: &Path, b: &Path, tolerance: f64) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::read_to_string(a), std::fs::read_to_string(b)) else {
        return false;
    };
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
            xs.len() == ys.len()
                && xs.iter().zip(&ys).all(|(p, q)| {
                    match (p.trim().parse::<f64>(), q.trim().parse::<f64>()) {
                        (Ok(p), Ok(q)) => {
                            (p - q).abs() <= tolerance * p.abs().max(q.abs()).max(1.0)
                        }
                        _ => p == q,
                    }
                })
        })
}

pub(super) async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.runs_dir)?;
    let folder = RunFolder::open_dir(&dir)?;
    let info = folder.info()?;
    let state = folder.state();
    let planned = folder
        .plan()?
        .context("the run has no plan yet: nothing to verify")?;
    let docker = sandbox::docker::connect().await?;
    let sandbox = DockerSandbox::new(
        docker,
        planbox::sandbox::Policy::default(),
        info.image.clone(),
    )
    .await?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let mut checks = Vec::new();
    let mut input_problems = Vec::new();
    for input in &info.inputs {
        match planbox::run::sha256_file(&input.path) {
            Ok(hash) if hash == input.sha256 => {}
            Ok(_) => input_problems.push(format!("input {} changed since the run", input.name)),
            Err(_) => input_problems.push(format!(
                "input {} is missing ({})",
                input.name,
                input.path.display()
            )),
        }
    }
    checks.push(Check {
        step: "inputs".into(),
        problems: input_problems,
        millis: 0,
    });
    for step in planned.plan.topological_order() {
        let Some(done) = state.done.get(&step.id) else {
            continue;
        };
        let started = std::time::Instant::now();
        let attempt = folder.attempt_dir(&step.id, done.attempt)?;
        let script = std::fs::read_to_string(attempt.join("script.py"))?;
        let inputs: Vec<PathBuf> = folder
            .step_mounts(&planned.plan, step)?
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        let out_dir = scratch.path().join(&step.id);
        let job = Job {
            inputs,
            out_dir: out_dir.clone(),
            run_id: format!("verify-{}", info.id),
        };
        let mut problems = Vec::new();
        match sandbox.exec(&job, &script).await {
            Err(err) => problems.push(format!("{err:#}")),
            Ok(output) => {
                if output.status != Status::Exited(done.exit_code) {
                    problems.push(format!(
                        "{} (the run had exit code {})",
                        output.status, done.exit_code
                    ));
                }
                for (file, hash) in &done.outputs {
                    let fresh = out_dir.join(file);
                    let recorded = folder.output_path(&step.id, done.attempt, file);
                    if !fresh.is_file() {
                        problems.push(format!("{file} was not written again"));
                    } else if planbox::run::sha256_file(&fresh)? != *hash {
                        let close =
                            file.ends_with(".csv") && csv_close(&fresh, &recorded, args.tolerance);
                        let picture = [".png", ".svg", ".jpg", ".pdf"]
                            .iter()
                            .any(|e| file.ends_with(e));
                        if !close && !picture {
                            problems.push(format!("{file} differs"));
                        }
                    }
                }
            }
        }
        checks.push(Check {
            step: step.id.clone(),
            problems,
            millis: started.elapsed().as_millis(),
        });
    }
    sandbox.settle().await;
    let mut text = String::new();
    for check in &checks {
        let verdict = if check.problems.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED: {}", check.problems.join("; "))
        };
        text.push_str(&format!("{:<24} {verdict}\n", check.step));
    }
    let failed = checks.iter().filter(|c| !c.problems.is_empty()).count();
    text.push_str(&format!(
        "{} passed, {failed} failed\n",
        checks.len() - failed
    ));
    print_stdout(&text);
    if let Some(path) = &args.junit {
        let cases: Vec<(String, Option<String>, u128)> = checks
            .iter()
            .map(|c| {
                (
                    c.step.clone(),
                    (!c.problems.is_empty()).then(|| c.problems.join("; ")),
                    c.millis,
                )
            })
            .collect();
        std::fs::write(path, junit(&format!("verify {}", info.id), &cases))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML document: one test case per (name, failure, milliseconds).
fn junit(suite: &str, cases: &[(String, Option<String>, u128)]) -> String {
    let failures = cases.iter().filter(|c| c.1.is_some()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
        xml_escape(suite),
        cases.len()
    );
    for (name, failure, millis) in cases {
        xml.push_str(&format!(
            "  <testcase name=\"{}\" time=\"{:.3}\"",
            xml_escape(name),
            *millis as f64 / 1000.0
        ));
        match failure {
            None => xml.push_str("/>\n"),
            Some(message) => xml.push_str(&format!(
                ">\n    <failure message=\"{}\"/>\n  </testcase>\n",
                xml_escape(message)
            )),
        }
    }
    xml.push_str("</testsuite>\n");
    xml
}

#[derive(serde::Deserialize)]
struct Goal {
    id: String,
    goal: String,
    #[serde(default)]
    inputs: Vec<PathBuf>,
    #[serde(default)]
    expect: BTreeMap<String, serde_json::Value>,
}

/// Whether `got` matches `want`: numbers within 1e-6 (relative past 1), else text ignoring case;
/// comma-separated lists part by part.
pub(super) fn matches(want: &str, got: &str) -> bool {
    let (want_parts, got_parts): (Vec<&str>, Vec<&str>) =
        (want.split(',').collect(), got.split(',').collect());
    want_parts.len() == got_parts.len()
        && want_parts.iter().zip(&got_parts).all(|(w, g)| {
            match (w.trim().parse::<f64>(), g.trim().parse::<f64>()) {
                (Ok(w), Ok(g)) => (w - g).abs() <= 1e-6 * w.abs().max(1.0),
                _ => w.trim().to_lowercase() == g.trim().to_lowercase(),
            }
        })
}

/// Which goals of a batch have started, and the run folders of those not yet finished.
#[derive(Default)]
struct Started {
    goals: Vec<String>,
    unfinished: Vec<PathBuf>,
}

async fn run_goal(
    goal: &Goal,
    sandbox: &DockerSandbox,
    image: &str,
    args: &BatchArgs,
    started: &std::sync::Mutex<Started>,
) -> anyhow::Result<(anyhow::Result<Finished>, PathBuf, std::time::Duration)> {
    let began = std::time::Instant::now();
    lock(started).goals.push(goal.id.clone());
    let stored = serde_json::json!({"agent": args.run.agent_options()?, "batch": goal.id});
    let (folder, _) =
        RunFolder::create(&args.run.runs_dir, &goal.goal, &goal.inputs, image, stored)?;
    let dir = folder.dir().to_path_buf();
    lock(started).unfinished.push(dir.clone());
    let finished = drive(&folder, &args.run, &args.llm, sandbox, &Silent).await;
    lock(started).unfinished.retain(|d| *d != dir);
    Ok((finished, dir, began.elapsed()))
}

fn lock(started: &std::sync::Mutex<Started>) -> std::sync::MutexGuard<'_, Started> {
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One goal's result checked against its expected values: its row of the summary table and
/// its JUnit case (id, failure, milliseconds). With `json`, its JSON line is printed now.
fn judge(
    goal: &Goal,
    result: anyhow::Result<(anyhow::Result<Finished>, PathBuf, std::time::Duration)>,
    json: bool,
) -> (String, (String, Option<String>, u128)) {
    let (status, answer, run, millis) = match result {
        Ok((Ok(finished), dir, took)) => (
            if finished.achieved {
                "achieved"
            } else {
                "not_achieved"
            }
            .to_string(),
            finished.answer,
            dir.display().to_string(),
            took.as_millis(),
        ),
        Ok((Err(err), dir, took)) => (
            "error".into(),
            format!("{err:#}"),
            dir.display().to_string(),
            took.as_millis(),
        ),
        Err(err) => ("error".into(), format!("{err:#}"), String::new(), 0),
    };
    let expected: Vec<(String, String)> = goal
        .expect
        .iter()
        .map(|(name, want)| {
            let want = match want {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), want)
        })
        .collect();
    let mismatches = mismatches(&expected, &answer);
    let expect_ok = mismatches.is_empty() && status != "error";
    if json {
        print_stdout(&format!(
            "{}\n",
            serde_json::json!({"id": goal.id, "status": status, "answer": answer, "expect_ok": expect_ok, "run": run})
        ));
    }
    let shown = answer.lines().last().unwrap_or_default();
    let row = format!(
        "{:<16} {:<10} {:<8} {}\n",
        goal.id,
        status,
        if expect_ok { "ok" } else { "FAIL" },
        shown
    );
    let failure = (!expect_ok).then(|| {
        if mismatches.is_empty() {
            status.clone()
        } else {
            mismatches.join("; ")
        }
    });
    (row, (goal.id.clone(), failure, millis))
}

pub(super) async fn batch(args: BatchArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.suite)
        .with_context(|| format!("reading {}", args.suite.display()))?;
    let base = args.suite.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut goals = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut goal: Goal = serde_json::from_str(line).with_context(|| {
            format!("{} line {}: not a goal object", args.suite.display(), n + 1)
        })?;
        goal.inputs = goal
            .inputs
            .iter()
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                }
            })
            .collect();
        for path in &goal.inputs {
            planbox::profile::profile(path).with_context(|| format!("goal {}", goal.id))?;
        }
        goals.push(goal);
    }
    args.llm.config()?;
    let sandbox = sandbox_for(&args.run).await?;
    let image = sandbox::image::tag();
    let started = std::sync::Mutex::new(Started::default());
    let mut goal_runs = futures_util::StreamExt::buffered(
        futures_util::stream::iter(
            goals
                .iter()
                .map(|goal| run_goal(goal, &sandbox, &image, &args, &started)),
        ),
        args.goals_parallel.max(1),
    );
    let mut cases = Vec::new();
    let mut table = format!("{:<16} {:<10} {:<8} answer\n", "id", "status", "expect");
    // Each goal's result is judged (and, with --json, printed) as it arrives, in suite order:
    // a batch stopped midway has reported every goal that finished.
    let work = async {
        let mut goals = goals.iter();
        while let Some(result) = futures_util::StreamExt::next(&mut goal_runs).await {
            let goal = goals.next().expect("one result per goal");
            let (row, case) = judge(goal, result, args.run.json);
            table.push_str(&row);
            cases.push(case);
        }
    };
    tokio::select! {
        () = work => {}
        signal = shutdown_signal() => {
            sandbox.shutdown().await;
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
            return Ok(ExitCode::from(130));
        }
    };
    sandbox.settle().await;
    let failed = cases.iter().filter(|c| c.1.is_some()).count();
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
        std::fs::write(path, junit(&args.suite.display().to_string(), &cases))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_values_match_numbers_within_tolerance_and_text_ignoring_case() {
        assert!(matches("0.5", "0.5000000001"));
        assert!(!matches("0.5", "0.51"));
        assert!(matches("north", " North"));
        assert!(!matches("north", "northeast"));
        assert!(matches("1.5, 2", "1.5,2.0"));
        assert!(!matches("1, 2", "1"));
    }

    #[test]
    fn mismatches_name_wrong_and_missing_values() {
        let expect = [
            ("region".to_string(), "south".to_string()),
            ("growth_pct".to_string(), "15.2".to_string()),
        ];
        assert!(
            mismatches(&expect, "South grew most. @region[South] @growth_pct[15.2]").is_empty()
        );
        assert_eq!(
            mismatches(&expect, "@region[west] @growth[15.2]"),
            vec![
                "@region: expected south, got west".to_string(),
                "@growth_pct: missing (expected 15.2)".to_string()
            ]
        );
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = junit(
            "s",
            &[
                ("a".into(), None, 5),
                ("b<".into(), Some("x & y".into()), 10),
            ],
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("name=\"b&lt;\""));
        assert!(xml.contains("message=\"x &amp; y\""));
    }
}
