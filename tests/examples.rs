//! The example datasets under `fixtures/examples`: the generator reproduces the committed
//! files, each example's reference scripts answer its goal in the real sandbox, and `planbox
//! batch` runs the three goals at once against a fake model that plans the reference steps.

mod common;
mod fake_llm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_llm::chat;
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox, Status};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/examples")
}

/// One example: its suite line, its reference plan and the script of each step.
#[derive(Debug, Clone)]
struct Example {
    id: String,
    goal: String,
    inputs: Vec<PathBuf>,
    expect: BTreeMap<String, String>,
    plan: Value,
    scripts: BTreeMap<String, String>,
}

impl Example {
    fn steps(&self) -> &Vec<Value> {
        self.plan["steps"].as_array().unwrap()
    }

    /// The one step that draws the chart, and the chart's file name.
    fn chart(&self) -> (String, String) {
        self.steps()
            .iter()
            .find_map(|s| {
                let png = s["writes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|w| w.as_str().unwrap().ends_with(".png"))?;
                Some((
                    s["id"].as_str().unwrap().to_string(),
                    png.as_str().unwrap().to_string(),
                ))
            })
            .expect("every example draws a chart")
    }

    /// The answer line the goal asks for, with the expected values.
    fn answer(&self) -> String {
        planbox::answer::answer_names(&self.goal)
            .iter()
            .map(|name| format!("@{name}[{}]", self.expect[name]))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The three examples, read from `suite.jsonl` and each `solution/` folder.
fn examples() -> Vec<Example> {
    let dir = examples_dir();
    std::fs::read_to_string(dir.join("suite.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            let id = line["id"].as_str().unwrap().to_string();
            let solution = dir.join(&id).join("solution");
            let plan: Value =
                serde_json::from_str(&std::fs::read_to_string(solution.join("plan.json")).unwrap())
                    .unwrap();
            let mut scripts = BTreeMap::new();
            for (n, step) in plan["steps"].as_array().unwrap().iter().enumerate() {
                let step = step["id"].as_str().unwrap();
                let name = format!("{:02}-{step}.py", n + 1);
                let script = std::fs::read_to_string(solution.join(&name))
                    .unwrap_or_else(|err| panic!("{id}: {name}: {err}"));
                scripts.insert(step.to_string(), script);
            }
            Example {
                goal: line["goal"].as_str().unwrap().to_string(),
                inputs: line["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| dir.join(p.as_str().unwrap()))
                    .collect(),
                expect: line["expect"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                id,
                plan,
                scripts,
            }
        })
        .collect()
}

fn example(id: &str) -> Example {
    examples().into_iter().find(|e| e.id == id).unwrap()
}

/// Every file below `root`, relative to it.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_generator_reproduces_the_committed_datasets_goals_and_suite() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("/usr/bin/python3")
        .arg(examples_dir().join("generate.py"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let generated = files_below(out.path());
    let listed: Vec<&str> = generated.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        listed,
        [
            "retail/goal.txt",
            "retail/sales.csv",
            "suite.jsonl",
            "support-tickets/goal.txt",
            "support-tickets/tickets.csv",
            "weather/goal.txt",
            "weather/readings.csv",
            "weather/stations.csv",
        ]
    );
    for file in &generated {
        let fresh = std::fs::read(out.path().join(file)).unwrap();
        let committed = std::fs::read(examples_dir().join(file)).unwrap();
        assert!(
            fresh == committed,
            "{} differs from what generate.py writes: run it again and commit the result",
            file.display()
        );
        assert!(
            committed.len() < 200 * 1024,
            "{} is {} bytes",
            file.display(),
            committed.len()
        );
    }
    for example in examples() {
        let goal = std::fs::read_to_string(examples_dir().join(&example.id).join("goal.txt"));
        assert_eq!(goal.unwrap(), format!("{}\n", example.goal));
        let mut asked = planbox::answer::answer_names(&example.goal);
        asked.sort();
        assert_eq!(
            asked,
            example.expect.keys().cloned().collect::<Vec<_>>(),
            "{}: every value the goal asks for has an expected answer",
            example.id
        );
    }
}

#[test]
fn every_reference_plan_is_valid_for_its_inputs() {
    for example in examples() {
        let plan = planbox::plan::Plan::from_model(&example.goal, &example.plan).unwrap();
        let inputs: Vec<String> = example
            .inputs
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        let errors = plan.validate(&inputs, &planbox::plan::Limits::default());
        assert!(errors.is_empty(), "{}: {errors:?}", example.id);
        assert!(
            plan.steps
                .iter()
                .any(|s| s.kind == planbox::plan::StepKind::Verify),
            "{}: a verify step",
            example.id
        );
    }
}

/// Run an example's reference scripts in plan order, each in a fresh container that sees the
/// inputs and the files its earlier steps wrote; return everything they printed.
async fn run_reference(example: &Example) -> String {
    let sandbox = DockerSandbox::new(
        common::docker().await,
        Policy {
            memory: 1024 * 1024 * 1024,
            timeout: Duration::from_secs(180),
            ..Policy::default()
        },
        sandbox::image::tag(),
    )
    .await
    .expect("the sandbox image is missing: run `make image` before the tests");
    let work = tempfile::tempdir().unwrap();
    let run_id = format!("test-example-{}-{}", example.id, std::process::id());
    let mut written: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut printed = String::new();
    for step in example.steps() {
        let id = step["id"].as_str().unwrap();
        let mut inputs = example.inputs.clone();
        for read in step["reads"].as_array().unwrap() {
            if let Some(path) = written.get(read.as_str().unwrap()) {
                inputs.push(path.clone());
            }
        }
        let out_dir = work.path().join(id);
        let job = Job {
            inputs,
            out_dir: out_dir.clone(),
            run_id: run_id.clone(),
            state: Default::default(),
        };
        let output = sandbox.exec(&job, &example.scripts[id]).await.unwrap();
        assert_eq!(
            output.status,
            Status::Exited(0),
            "{}/{id}:\n{}\n{}",
            example.id,
            output.stdout,
            output.stderr
        );
        for file in step["writes"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            let path = out_dir.join(file);
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            assert!(size > 0, "{}/{id} did not write {file}", example.id);
            written.insert(file.to_string(), path);
        }
        printed.push_str(&output.stdout);
    }
    let (_, chart) = example.chart();
    assert!(std::fs::read(&written[&chart]).unwrap().starts_with(PNG));
    sandbox.settle().await;
    assert_eq!(common::leftovers(&run_id).await, (0, 0));
    printed
}

/// Run an example's reference scripts and compare the `@name[value]` answers they printed
/// (read as the batch reads them) with the ones the generator computed.
async fn assert_reference_answers(id: &str) {
    let example = example(id);
    let printed = run_reference(&example).await;
    let got: BTreeMap<String, String> = planbox::answer::answer_values(&printed)
        .into_iter()
        .collect();
    assert_eq!(got, example.expect, "printed:\n{printed}");
}

#[tokio::test]
async fn the_retail_reference_scripts_print_the_generator_s_answers() {
    assert_reference_answers("retail").await;
}

#[tokio::test]
async fn the_weather_reference_scripts_print_the_generator_s_answers() {
    assert_reference_answers("weather").await;
}

#[tokio::test]
async fn the_support_tickets_reference_scripts_print_the_generator_s_answers() {
    assert_reference_answers("support-tickets").await;
}

/// A fake model that knows the examples: it plans an example's reference steps, writes each
/// step's reference script and answers a synthesis with the expected values. Plans are held
/// back until `goals` planning requests wait at once, which proves the goals run in parallel.
struct Model {
    server: fake_llm::RuleServer,
    planned_together: Arc<Mutex<Vec<bool>>>,
    unexpected: Arc<Mutex<Vec<String>>>,
}

impl Model {
    async fn start(examples: Vec<Example>, goals: usize) -> Model {
        let planned_together: Arc<Mutex<Vec<bool>>> = Arc::default();
        let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
        let (planners, _) = tokio::sync::watch::channel(0usize);
        let planners = Arc::new(planners);
        let examples = Arc::new(examples);
        let (together, odd) = (planned_together.clone(), unexpected.clone());
        let server = fake_llm::RuleServer::start(move |body: Value| {
            let (examples, planners) = (examples.clone(), planners.clone());
            let (together, odd) = (together.clone(), odd.clone());
            Box::pin(async move {
                let text = body["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or_default()
                    .to_string();
                // Steps that do not end the analysis do not see the goal: their title names them.
                let title = text.lines().find_map(|l| l.strip_prefix("This step: "));
                let Some(example) = examples.iter().find(|e| {
                    text.contains(&e.goal)
                        || title.is_some_and(|t| e.steps().iter().any(|s| s["title"] == t))
                }) else {
                    odd.lock().unwrap().push(text);
                    return chat("no example has this goal");
                };
                if text.contains("Reply with {\"steps\"") {
                    planners.send_modify(|n| *n += 1);
                    let mut waiting = planners.subscribe();
                    let all = tokio::time::timeout(
                        Duration::from_secs(60),
                        waiting.wait_for(|n| *n >= goals),
                    )
                    .await;
                    together.lock().unwrap().push(matches!(all, Ok(Ok(_))));
                    return chat(&example.plan.to_string());
                }
                if let Some(title) = text.lines().find_map(|l| l.strip_prefix("This step: "))
                    && let Some(step) = example.steps().iter().find(|s| s["title"] == title)
                {
                    let script = &example.scripts[step["id"].as_str().unwrap()];
                    return chat(&format!("```python\n{script}```"));
                }
                if text.contains("Answer the goal using only these results") {
                    return chat(&format!("From the steps' output: {}", example.answer()));
                }
                odd.lock().unwrap().push(text);
                chat("no rule for this request")
            }) as fake_llm::Reply
        })
        .await;
        Model {
            server,
            planned_together,
            unexpected,
        }
    }
}

/// Model settings from the environment, blanked so only the flags below count.
const FAKE_MODEL_ENV: [&str; 3] = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "PLANBOX_MODEL"];

/// The flags that point planbox at the fake model (no config file) and at `runs`.
fn fake_model_args(model: &Model, runs: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--runs-dir".into(), runs.into()];
    for arg in [
        "--provider",
        "openai",
        "--model",
        "fake-model",
        "--base-url",
        &model.server.openai_url(),
        "--config",
        "/nonexistent/planbox.toml",
    ] {
        args.push(arg.into());
    }
    args
}

/// `planbox batch SUITE` against the fake model, goals in parallel, with JSON lines and JUnit.
async fn batch(
    suite: &Path,
    model: &Model,
    runs: &Path,
    junit: &Path,
) -> (Option<i32>, Vec<Value>, String) {
    batch_with(suite, &fake_model_args(model, runs), junit, &[]).await
}

/// `planbox batch SUITE` with these model flags and `extra` ones.
async fn batch_with(
    suite: &Path,
    model_args: &[std::ffi::OsString],
    junit: &Path,
    extra: &[&std::ffi::OsStr],
) -> (Option<i32>, Vec<Value>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .arg("batch")
        .arg(suite)
        .args(extra)
        .args(["--goals-parallel", "3", "--parallel", "2", "--json"])
        .args(["--timeout", "180", "--memory", "1g"])
        // The reference plans run step by step, as written.
        .arg("--no-fuse")
        .arg("--junit")
        .arg(junit)
        .args(model_args)
        .envs(FAKE_MODEL_ENV.iter().map(|k| (k, "")))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect();
    (output.status.code(), lines, stderr)
}

/// The run id of a batch line (its folder's name), for the leftover check.
fn run_id(line: &Value) -> String {
    Path::new(line["run"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_the_three_goals_runs_them_in_parallel_and_every_answer_matches() {
    let examples = examples();
    let model = Model::start(examples.clone(), examples.len()).await;
    let work = tempfile::tempdir().unwrap();
    let (runs, junit) = (work.path().join("runs"), work.path().join("batch.xml"));
    let recording = work.path().join("recording");
    let suite = examples_dir().join("suite.jsonl");
    let (code, lines, stderr) = batch_with(
        &suite,
        &fake_model_args(&model, &runs),
        &junit,
        &["--record".as_ref(), recording.as_os_str()],
    )
    .await;

    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    assert_eq!(*model.unexpected.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        *model.planned_together.lock().unwrap(),
        vec![true; 3],
        "the three goals were planned at the same time"
    );
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["retail", "weather", "support-tickets"]);
    for (line, example) in lines.iter().zip(&examples) {
        assert_eq!(
            (&line["status"], &line["expect_ok"], &line["answer"]),
            (&json!("achieved"), &json!(true), &json!(example.answer())),
            "{line:#}"
        );
        let run = Path::new(line["run"].as_str().unwrap());
        assert!(run.starts_with(&runs), "{}", run.display());
        let (step, chart) = example.chart();
        let png = std::fs::read(
            run.join("steps")
                .join(step)
                .join("attempt-1/files")
                .join(&chart),
        )
        .unwrap_or_else(|err| panic!("{}: {chart}: {err}", example.id));
        assert!(png.starts_with(PNG), "{}: {chart} is not a PNG", example.id);
        let report = std::fs::read_to_string(run.join("report.md")).unwrap();
        assert!(
            report.contains(&chart),
            "{}: the report shows the chart",
            example.id
        );
        assert_eq!(common::leftovers(&run_id(line)).await, (0, 0));
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"0\""), "{xml}");
    for example in &examples {
        assert!(
            xml.contains(&format!("<testcase name=\"{}\" time=", example.id)),
            "{xml}"
        );
    }
    assert!(!xml.contains("<failure"), "{xml}");

    // The runs are at hand afterwards: listed with their goals and answers, and shown.
    let runs_json = planbox_at(&runs, &["runs", "--json"]);
    let listed: Vec<Value> = runs_json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{runs_json}");
    for (line, example) in lines.iter().zip(&examples) {
        let run = listed
            .iter()
            .find(|r| r["id"] == json!(run_id(line)))
            .unwrap_or_else(|| panic!("{} is not listed: {runs_json}", example.id));
        assert_eq!(
            (&run["goal"], &run["status"], &run["answer"]),
            (
                &json!(example.goal),
                &json!("achieved"),
                &json!(example.answer())
            ),
            "{run:#}"
        );
        assert!(run["tokens"].as_u64().unwrap() > 0, "{run:#}");
        assert!(run["millis"].as_u64().unwrap() > 0, "{run:#}");
    }
    let table = planbox_at(&runs, &["runs"]);
    assert_eq!(
        table.lines().count(),
        4,
        "a header and a line per run: {table}"
    );
    assert!(
        table.lines().skip(1).all(|l| l.contains("achieved")),
        "{table}"
    );

    let retail = run_id(&lines[0]);
    let shown = planbox_at(&runs, &["show", &retail]);
    assert!(shown.contains(&format!("run     {retail}")), "{shown}");
    assert!(shown.contains("status  achieved"), "{shown}");
    assert!(
        shown.contains(&format!("answer  {}", examples[0].answer())),
        "{shown}"
    );
    for step in examples[0].steps() {
        let id = step["id"].as_str().unwrap();
        assert!(
            shown.lines().any(|l| l.trim_start().starts_with(id)
                && l.contains("done")
                && l.contains("1 attempt(s)")),
            "{id} is shown done: {shown}"
        );
    }
    assert!(shown.contains("report.html"), "{shown}");

    // Replayed by content with the model gone, twice: each goal draws its own replies from
    // its own folder whatever order the parallel steps and goals ask in, and every run folder
    // comes out as the recorded one did, apart from times and ids.
    let closed = model.server.openai_url();
    drop(model);
    let recorded: Vec<_> = lines.iter().map(|l| run_files(&run_dir(l))).collect();
    for ids in ["retail", "weather", "support-tickets"] {
        assert!(
            recording.join(ids).is_dir(),
            "no recording folder for {ids}"
        );
    }
    for round in ["replay-1", "replay-2"] {
        let replayed_runs = work.path().join(round);
        let mut args: Vec<std::ffi::OsString> = vec!["--runs-dir".into(), replayed_runs.into()];
        for arg in [
            "--provider",
            "openai",
            "--model",
            "fake-model",
            "--base-url",
            &closed,
        ] {
            args.push(arg.into());
        }
        args.extend(["--config".into(), "/nonexistent/planbox.toml".into()]);
        let (code, replayed, stderr) = batch_with(
            &suite,
            &args,
            &work.path().join(format!("{round}.xml")),
            &["--replay".as_ref(), recording.as_os_str()],
        )
        .await;
        assert_eq!(code, Some(0), "{round}: {replayed:#?}\n{stderr}");
        for ((line, want), example) in replayed.iter().zip(&recorded).zip(&examples) {
            assert_eq!(line["answer"], json!(example.answer()), "{round}");
            let got = run_files(&run_dir(line));
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{round}: {}",
                example.id
            );
            for (path, bytes) in want {
                assert!(
                    got[path] == *bytes,
                    "{round}: {}: {path} differs",
                    example.id
                );
            }
        }
    }
}

/// The run folder a batch line names.
fn run_dir(line: &Value) -> PathBuf {
    PathBuf::from(line["run"].as_str().unwrap())
}

/// Every file of a run folder by relative path, with its bytes, apart from those that hold
/// times or the run's id (the event log, run.json, the reports, attempt timings).
fn run_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    const VOLATILE: [&str; 6] = [
        "events.jsonl",
        "run.json",
        "report.md",
        "report.html",
        "summary.md",
        "result.json",
    ];
    files_below(dir)
        .into_iter()
        .filter(|path| !VOLATILE.contains(&path.file_name().unwrap().to_str().unwrap()))
        .map(|path| {
            (
                path.display().to_string(),
                std::fs::read(dir.join(&path)).unwrap(),
            )
        })
        .collect()
}

/// `planbox ARGS --runs-dir RUNS`'s standard output; it must exit 0.
fn planbox_at(runs: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_whose_expected_answer_is_wrong_fails_the_batch() {
    let retail = example("retail");
    let work = tempfile::tempdir().unwrap();
    let suite = work.path().join("wrong.jsonl");
    let line = json!({
        "id": "retail-wrong",
        "goal": retail.goal,
        "inputs": retail.inputs,
        "expect": {"region": "North", "growth_pct": retail.expect["growth_pct"], "peak_month": retail.expect["peak_month"]},
    });
    std::fs::write(&suite, format!("{line}\n")).unwrap();
    let model = Model::start(vec![retail.clone()], 1).await;
    let (runs, junit) = (work.path().join("runs"), work.path().join("batch.xml"));
    let (code, lines, stderr) = batch(&suite, &model, &runs, &junit).await;

    assert_eq!(code, Some(1), "{lines:#?}\n{stderr}");
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (&lines[0]["id"], &lines[0]["status"], &lines[0]["expect_ok"]),
        (&json!("retail-wrong"), &json!("achieved"), &json!(false)),
        "the goal was achieved, but not with the expected answer"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"1\" failures=\"1\""), "{xml}");
    let region = &retail.expect["region"];
    assert!(
        xml.contains(&format!(
            "<failure message=\"@region: expected North, got {region}\"/>"
        )),
        "{xml}"
    );
    assert!(
        stderr.contains("retail-wrong") && stderr.contains("FAIL"),
        "{stderr}"
    );
    assert_eq!(common::leftovers(&run_id(&lines[0])).await, (0, 0));
}

/// `planbox run GOAL --expect NAME=VALUE...` on one example against the fake model.
async fn run_expecting(
    example: &Example,
    model: &Model,
    runs: &Path,
    expect: &[String],
) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"));
    command.arg("run").arg(&example.goal);
    for input in &example.inputs {
        command.arg("--input").arg(input);
    }
    for value in expect {
        command.arg("--expect").arg(value);
    }
    let output = command
        .args(["--parallel", "2", "--timeout", "180", "--memory", "1g"])
        .args(fake_model_args(model, runs))
        .envs(FAKE_MODEL_ENV.iter().map(|k| (k, "")))
        .output()
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_checks_the_answer_against_expected_values() {
    let retail = example("retail");
    let model = Model::start(vec![retail.clone()], 1).await;
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let region = retail.expect["region"].to_lowercase();
    let growth = &retail.expect["growth_pct"];

    let right = [format!("region={region}"), format!("@growth_pct={growth}")];
    let (code, stderr) = run_expecting(&retail, &model, &runs, &right).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("expected answer: matched (2 values)"),
        "{stderr}"
    );

    let wrong = [
        format!("region={region}"),
        "growth_pct=99.9".to_string(),
        "peak_month_name=May".to_string(),
    ];
    let (code, stderr) = run_expecting(&retail, &model, &runs, &wrong).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "expected answer: @growth_pct: expected 99.9, got {growth}; @peak_month_name: missing (expected May)"
        )),
        "{stderr}"
    );
    assert_eq!(*model.unexpected.lock().unwrap(), Vec::<String>::new());
}

/// `make demo` checks its answer with `--expect` values from the Makefile: they must be what
/// the demo's reference script prints in the sandbox, and the goal must ask for those names.
#[tokio::test]
async fn the_demo_expectations_are_what_its_reference_script_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let variable = |name: &str| {
        makefile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} := ")))
            .unwrap_or_else(|| panic!("the Makefile sets {name}"))
            .to_string()
    };
    let expected: BTreeMap<String, String> = variable("DEMO_EXPECT")
        .split_whitespace()
        .filter(|w| *w != "--expect")
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect();
    let asked = planbox::answer::answer_names(&variable("DEMO_GOAL"));
    assert_eq!(
        expected.keys().cloned().collect::<Vec<_>>(),
        {
            let mut asked = asked.clone();
            asked.sort();
            asked
        },
        "DEMO_EXPECT names every answer DEMO_GOAL asks for"
    );

    let sandbox = DockerSandbox::new(
        common::docker().await,
        Policy::default(),
        sandbox::image::tag(),
    )
    .await
    .expect("the sandbox image is missing: run `make image` before the tests");
    let work = tempfile::tempdir().unwrap();
    let run_id = format!("test-demo-reference-{}", std::process::id());
    let job = Job {
        inputs: vec![root.join("fixtures/demo/sales.csv")],
        out_dir: work.path().join("out"),
        run_id: run_id.clone(),
        state: Default::default(),
    };
    let script = std::fs::read_to_string(root.join("fixtures/demo/reference.py")).unwrap();
    let output = sandbox.exec(&job, &script).await.unwrap();
    assert_eq!(output.status, Status::Exited(0), "{}", output.stderr);
    let printed: BTreeMap<String, String> = planbox::answer::answer_values(&output.stdout)
        .into_iter()
        .collect();
    assert_eq!(printed, expected, "printed:\n{}", output.stdout);
    let chart = std::fs::read(work.path().join("out/revenue_2023.png")).unwrap();
    assert!(chart.starts_with(PNG));
    sandbox.settle().await;
    assert_eq!(common::leftovers(&run_id).await, (0, 0));
}

/// SIGTERM stops a running batch: every container and volume goes and the exit code is 130. The
/// goal that had finished was reported as it finished, the one running is named with the
/// command that continues it, and the one not yet started is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalled_batch_removes_its_containers_and_names_the_runs_to_resume() {
    // The first goal runs its reference scripts; the others' scripts sleep.
    let mut suite_goals = examples();
    for example in &mut suite_goals[1..] {
        for script in example.scripts.values_mut() {
            *script = "import time\ntime.sleep(600)\n".to_string();
        }
    }
    let ids: Vec<String> = suite_goals.iter().map(|e| e.id.clone()).collect();
    let work = tempfile::tempdir().unwrap();
    let suite = work.path().join("three.jsonl");
    let lines: Vec<String> = suite_goals
        .iter()
        .map(|e| {
            json!({"id": e.id, "goal": e.goal, "inputs": e.inputs, "expect": e.expect}).to_string()
        })
        .collect();
    std::fs::write(&suite, lines.join("\n") + "\n").unwrap();
    let model = Model::start(suite_goals, 1).await;
    let runs = work.path().join("runs");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .arg("batch")
        .arg(&suite)
        .args(["--goals-parallel", "1", "--json", "--timeout", "600"])
        .arg("--junit")
        .arg(work.path().join("stopped.xml"))
        .args(fake_model_args(&model, &runs))
        .envs(FAKE_MODEL_ENV.iter().map(|k| (k, "")))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let printed: Arc<Mutex<Vec<Value>>> = Arc::default();
    let reader = {
        let printed = printed.clone();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                printed
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        })
    };
    // The second goal has a step running (its attempt folder exists) before the signal.
    let running = |runs: &Path| {
        std::fs::read_dir(runs).map_or(0, |folders| {
            folders
                .filter(|f| {
                    let steps = f.as_ref().unwrap().path().join("steps");
                    std::fs::read_dir(steps).is_ok_and(|mut s| {
                        s.any(|step| step.unwrap().path().join("attempt-1").is_dir())
                    })
                })
                .count()
        })
    };
    for _ in 0..1200 {
        if printed.lock().unwrap().len() == 1
            && running(&runs) == 2
            && common::owned_by(pid).await >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        running(&runs),
        2,
        "the batch never ran the second goal's steps"
    );
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the batch stops within a minute of SIGTERM")
        .unwrap();
    reader.await.unwrap();
    // The goal that finished is in the JUnit report; the stopped ones are not.
    let xml = std::fs::read_to_string(work.path().join("stopped.xml")).unwrap();
    assert!(xml.contains("tests=\"1\""), "{xml}");
    assert!(
        xml.contains(&format!("<testcase name=\"{}\"", ids[0])),
        "{xml}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM; containers removed"),
        "{stderr}"
    );
    let printed = printed.lock().unwrap().clone();
    assert_eq!(printed.len(), 1, "{printed:#?}");
    assert_eq!(
        (&printed[0]["id"], &printed[0]["expect_ok"]),
        (&json!(ids[0]), &json!(true)),
        "the finished goal was reported before the stop: {printed:#?}"
    );
    assert!(
        stderr.contains(&format!("planbox: not started: {}", ids[2])),
        "{stderr}"
    );
    let named: Vec<PathBuf> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("planbox: unfinished, continue with: planbox resume "))
        .map(PathBuf::from)
        .collect();
    let finished = PathBuf::from(printed[0]["run"].as_str().unwrap());
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| *f != finished)
        .collect();
    folders.sort();
    assert_eq!(named, folders, "{stderr}");
    assert_eq!(named.len(), 1, "{stderr}");
    for folder in named.iter().chain([&finished]) {
        assert!(folder.join("run.json").is_file(), "{}", folder.display());
        let id = folder.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            common::leftovers(id).await,
            (0, 0),
            "{id}: containers, volumes"
        );
    }
    assert_eq!(common::owned_by(pid).await, 0, "containers left behind");
}
