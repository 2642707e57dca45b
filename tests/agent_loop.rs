//! The agent loop on a fake sandbox and a scripted model: no Docker engine, no model server.
//! Each test queues the model's replies and the scripts' results, runs a goal, and compares
//! the whole event stream; the prompts, event lines and report a person or model reads are
//! snapshots.

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use fakes::{FakeSandbox, Ran, Run, Scripted, ScriptedModel, code};
use planbox::agent::{Agent, Budget, Finished, Options};
use planbox::event::{Collect, PlannedStep, RunEvent};
use planbox::llm::{Meter, Request};
use planbox::run::RunFolder;
use pretty_assertions::assert_eq;
use serde_json::json;

const GOAL: &str = "What is the total amount? Answer as @total[value].";

/// A goal that asks for three values: its plans are asked for two steps at most (one to
/// prepare, one for the answers), and may have a few more.
const GOAL_BY_REGION: &str = "What are the north, south and total amounts? Answer as @north[value] @south[value] @total[value].";

/// A test's run folder over one input, `sales.csv`.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sales.csv"),
            "region,amount\nnorth,10\nsouth,32\n",
        )
        .unwrap();
        World { dir }
    }

    fn create(&self, goal: &str) -> RunFolder {
        let input = self.dir.path().join("sales.csv");
        let runs = self.dir.path().join("runs");
        RunFolder::create(&runs, goal, &[input], "planbox-sandbox:test", json!({}))
            .unwrap()
            .0
    }

    fn input_hash(&self) -> String {
        planbox::run::sha256_file(&self.dir.path().join("sales.csv")).unwrap()
    }
}

/// Chains stay as planned here, and the model plans every goal: these tests are about what
/// passes between steps.
fn options() -> Options {
    Options {
        parallel: 1,
        max_repairs: 1,
        max_replans: 1,
        fuse_chains: false,
        always_plan: true,
        ..Options::default()
    }
}

/// Run the folder's goal to the end with a fresh agent; the events, with the run id and the
/// wall time made stable, and without the progress events (their estimates are times; the
/// test of progress reads them with [`run_all`]).
async fn run(
    folder: &RunFolder,
    model: &ScriptedModel,
    sandbox: &FakeSandbox,
    options: Options,
    meter: Arc<Meter>,
) -> (Finished, Vec<RunEvent>) {
    let (finished, events) = run_all(folder, model, sandbox, options, meter).await;
    let events = events
        .into_iter()
        .filter(|e| !matches!(e, RunEvent::Progress { .. }))
        .collect();
    (finished, events)
}

/// [`run`], every event kept.
async fn run_all(
    folder: &RunFolder,
    model: &ScriptedModel,
    sandbox: &FakeSandbox,
    options: Options,
    meter: Arc<Meter>,
) -> (Finished, Vec<RunEvent>) {
    let events = Collect::default();
    let finished = Agent::new(model, sandbox, options, meter)
        .run(folder, &events)
        .await
        .unwrap();
    let events = events.0.into_inner().unwrap();
    (finished, events.into_iter().map(stable).collect())
}

fn stable(event: RunEvent) -> RunEvent {
    match event {
        RunEvent::RunStarted { goal, .. } => RunEvent::RunStarted {
            run: "<run>".into(),
            goal,
        },
        RunEvent::RunFinished {
            achieved, tokens, ..
        } => RunEvent::RunFinished {
            achieved,
            tokens,
            millis: 0,
        },
        other => other,
    }
}

fn meter() -> Arc<Meter> {
    Arc::new(Meter::new(None, None))
}

fn step(id: &str, deps: &[&str], reads: &[&str], writes: &[&str]) -> serde_json::Value {
    json!({"id": id, "title": format!("do {id}"), "instruction": format!("Do {id}."),
           "kind": "action", "depends_on": deps, "reads": reads, "writes": writes})
}

fn plan(steps: &[serde_json::Value]) -> String {
    json!({ "steps": steps }).to_string()
}

/// The planner's note on a plan of one step, which takes the goal as its instruction.
const ONE_STEP: &str = "one step: its instruction is the goal itself";

/// The plan of one step `id`: the goal's own step, under the model's id.
fn planned_one(id: &str) -> RunEvent {
    RunEvent::Planned {
        version: 1,
        steps: vec![PlannedStep {
            id: id.into(),
            title: "Solve the whole goal in one script".into(),
            depends_on: vec![],
        }],
        notes: vec![ONE_STEP.to_string()],
    }
}

fn planned(version: usize, steps: &[(&str, &[&str])], notes: &[&str]) -> RunEvent {
    RunEvent::Planned {
        version,
        steps: steps
            .iter()
            .map(|(id, deps)| PlannedStep {
                id: (*id).into(),
                title: format!("do {id}"),
                depends_on: deps.iter().map(|d| (*d).to_string()).collect(),
            })
            .collect(),
        notes: notes.iter().map(|n| (*n).to_string()).collect(),
    }
}

fn started(goal: &str) -> [RunEvent; 2] {
    [
        RunEvent::RunStarted {
            run: "<run>".into(),
            goal: goal.into(),
        },
        RunEvent::Profiled {
            inputs: vec!["sales.csv".into()],
        },
    ]
}

fn writing(step: &str, attempt: usize) -> RunEvent {
    RunEvent::Writing {
        step: step.into(),
        attempt,
    }
}

fn running(step: &str, attempt: usize) -> RunEvent {
    RunEvent::Running {
        step: step.into(),
        attempt,
    }
}

fn attempted(step: &str, attempt: usize, tokens: u64, problem: Option<&str>) -> RunEvent {
    RunEvent::Attempted {
        step: step.into(),
        attempt,
        tokens,
        ok: problem.is_none(),
        problem: problem.map(Into::into),
    }
}

fn done(step: &str, reused: bool) -> RunEvent {
    RunEvent::StepDone {
        step: step.into(),
        reused,
    }
}

fn ended(answer: &str, achieved: bool, tokens: u64) -> [RunEvent; 2] {
    [
        RunEvent::Answered {
            answer: answer.into(),
        },
        RunEvent::RunFinished {
            achieved,
            tokens,
            millis: 0,
        },
    ]
}

/// A step stopped because `budget` ran out.
fn stopped_by(budget: &str, step: &str) -> [RunEvent; 2] {
    [
        RunEvent::BudgetSpent {
            budget: budget.into(),
        },
        RunEvent::StepFailed {
            step: step.into(),
            problem: format!("the {budget} budget ran out"),
        },
    ]
}

/// A request as a model reads it, for snapshots.
fn transcript(request: &Request) -> String {
    let mut text = String::new();
    if let Some(t) = request.temperature {
        text.push_str(&format!("(temperature {t})\n"));
    }
    for message in &request.messages {
        text.push_str(&format!("--- {:?}\n{}\n", message.role, message.content));
    }
    text
}

fn attempt_file(folder: &RunFolder, step: &str, attempt: usize, file: &str) -> String {
    let path = folder
        .dir()
        .join(format!("steps/{step}/attempt-{attempt}/{file}"));
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn progress_counts_the_steps_that_ended_and_estimates_once_one_was_timed() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        plan(&[
            step("north", &[], &["sales.csv"], &["north.csv"]),
            step("south", &["north"], &["north.csv"], &["south.csv"]),
            step("total", &["south"], &["south.csv"], &[]),
        ]),
        code("print('north')"),
        code("print('south')"),
        code("print('@total[10]')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("north").writes("north.csv", "region,amount\nnorth,10\n"),
        Run::prints("south").writes("south.csv", "region,amount\nsouth,10\n"),
        Run::prints("@total[10]\n"),
    ]);
    let options = Options {
        fuse_chains: false,
        ..options()
    };
    let (finished, events) = run_all(&folder, &model, &sandbox, options, meter()).await;
    assert!(finished.achieved);
    let progress: Vec<(usize, usize, bool)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Progress { done, total, eta_s } => Some((*done, *total, eta_s.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [(0, 3, false), (1, 3, true), (2, 3, true), (3, 3, true)]
    );
    // Each progress follows the event that moved it: the plan, then each step's end.
    let after: Vec<&str> = events
        .windows(2)
        .filter(|w| matches!(w[1], RunEvent::Progress { .. }))
        .map(|w| match &w[0] {
            RunEvent::Planned { .. } => "planned",
            RunEvent::StepDone { step, .. } => step.as_str(),
            other => panic!("progress after {other:?}"),
        })
        .collect();
    assert_eq!(after, ["planned", "north", "south", "total"]);
    // The folder's event stream carries them too, as `--json` prints them.
    let stream = std::fs::read_to_string(folder.dir().join("events.jsonl")).unwrap();
    let last = stream
        .lines()
        .rfind(|l| l.contains("\"event\":\"progress\""))
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!((&last["done"], &last["total"]), (&json!(3), &json!(3)));
    assert!(last["eta_s"].is_u64(), "{last}");
}

#[tokio::test]
async fn a_dependent_step_reads_its_dependency_s_file_and_the_answer_is_what_it_printed() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        plan(&[
            step("north", &[], &["sales.csv"], &["north.csv"]),
            step("total", &["north"], &["north.csv"], &[]),
        ]),
        code("import pandas as pd\npd.read_csv('/data/sales.csv').head(1).to_csv('north.csv')"),
        code("print('@total[10]')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("north rows: 1").writes("north.csv", "region,amount\nnorth,10\n"),
        Run::prints("@total[10]\n"),
    ]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let mut want = started(GOAL).to_vec();
    want.extend([
        planned(1, &[("north", &[]), ("total", &["north"])], &[]),
        writing("north", 1),
        running("north", 1),
        attempted("north", 1, model.tokens_after(2), None),
        done("north", false),
        writing("total", 1),
        running("total", 1),
        attempted("total", 1, model.tokens_after(3), None),
        done("total", false),
    ]);
    want.extend(ended("@total[10]", true, model.tokens_after(3)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert_eq!(finished.answer, "@total[10]");
    assert_eq!(finished.ended_by, None);
    assert_eq!(
        sandbox
            .ran()
            .iter()
            .map(|r| r.inputs.clone())
            .collect::<Vec<_>>(),
        vec![
            vec!["sales.csv".to_string()],
            vec!["sales.csv".into(), "north.csv".into()]
        ]
    );
    assert_eq!(model.left(), 0);
    assert_eq!(sandbox.left(), 0);

    insta::assert_snapshot!(
        "step_prompt_with_a_dependency",
        transcript(&model.requests()[2])
    );
    let lines: Vec<String> = events.iter().map(planbox::event::describe).collect();
    insta::assert_snapshot!("event_lines", lines.join("\n"));
    let report = std::fs::read_to_string(folder.dir().join("report.md")).unwrap();
    insta::with_settings!({filters => vec![
        (r"\d{8}-\d{6}-[0-9a-f]+", "<run>"),
        (r"\d+(\.\d+)? (ms|s)\b", "<time>"),
    ]}, {
        insta::assert_snapshot!("report_md", report);
    });
}

/// A one-step plan: `only` reads sales.csv and writes nothing.
fn one_step() -> String {
    plan(&[step("only", &[], &["sales.csv"], &[])])
}

const KEY_ERROR: &str = "Traceback (most recent call last):\n  File \"<stdin>\", line 2, in <module>\nKeyError: 'Amount'\n";

#[tokio::test]
async fn a_failing_script_is_repaired_with_its_error_its_line_and_a_hint() {
    let world = World::new();
    let folder = world.create(GOAL);
    let broken = "import pandas as pd\nprint(pd.read_csv('/data/sales.csv')['Amount'].sum())";
    let fixed =
        "import pandas as pd\nprint(f\"@total[{pd.read_csv('/data/sales.csv')['amount'].sum()}]\")";
    let model = ScriptedModel::new([one_step(), code(broken), code(fixed)]);
    let sandbox = FakeSandbox::new([Run::raises(KEY_ERROR), Run::prints("@total[42]\n")]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let problem = "The script exited with code 1.";
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        writing("only", 1),
        running("only", 1),
        attempted("only", 1, model.tokens_after(2), Some(problem)),
        writing("only", 2),
        running("only", 2),
        attempted("only", 2, model.tokens_after(3), None),
        done("only", false),
    ]);
    want.extend(ended("@total[42]", true, model.tokens_after(3)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    let repair = transcript(&model.requests()[2]);
    assert!(repair.contains("    print(pd.read_csv('/data/sales.csv')['Amount'].sum())"));
    insta::assert_snapshot!("repair_prompt", repair);
    let record: serde_json::Value =
        serde_json::from_str(&attempt_file(&folder, "only", 1, "result.json")).unwrap();
    assert_eq!(record["ok"], json!(false));
    assert_eq!(record["status"], json!({"kind": "exited", "detail": 1}));
}

#[tokio::test]
async fn a_repeated_failed_script_is_not_run_again_and_the_next_write_starts_afresh() {
    let world = World::new();
    let folder = world.create(GOAL);
    let broken = "import pandas as pd\nprint(pd.read_csv('/data/sales.csv')['Amount'].sum())";
    let model = ScriptedModel::new([
        one_step(),
        code(broken),
        code(broken),
        code("print('@total[42]')"),
    ]);
    let sandbox = FakeSandbox::new([Run::raises(KEY_ERROR), Run::prints("@total[42]\n")]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let problem = "The script exited with code 1.";
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        writing("only", 1),
        running("only", 1),
        attempted("only", 1, model.tokens_after(2), Some(problem)),
        // The repeat is sent back unrun, and does not use up the one repair.
        writing("only", 2),
        attempted("only", 2, model.tokens_after(3), Some(problem)),
        writing("only", 3),
        running("only", 3),
        attempted("only", 3, model.tokens_after(4), None),
        done("only", false),
    ]);
    want.extend(ended("@total[42]", true, model.tokens_after(4)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert_eq!(sandbox.ran().len(), 2, "the repeated script never ran");
    assert_eq!(sandbox.prepared(), 3, "its container was dropped unused");
    assert_eq!(attempt_file(&folder, "only", 2, "script.py"), broken);
    let rewrite = model.requests()[3].clone();
    assert_eq!(rewrite.temperature, Some(0.8));
    assert!(
        !transcript(&rewrite).contains(broken),
        "a rewrite does not show the script"
    );
    insta::assert_snapshot!("rewrite_prompt", transcript(&rewrite));
}

#[tokio::test]
async fn a_reply_without_code_goes_back_to_the_model_without_running() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        one_step(),
        "I cannot see the data.".to_string(),
        code("print('@total[42]')"),
    ]);
    let sandbox = FakeSandbox::new([Run::prints("@total[42]\n")]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let problem =
        "The reply held no Python code. Reply with the script in one ```python code block.";
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        writing("only", 1),
        attempted("only", 1, model.tokens_after(2), Some(problem)),
        writing("only", 2),
        running("only", 2),
        attempted("only", 2, model.tokens_after(3), None),
        done("only", false),
    ]);
    want.extend(ended("@total[42]", true, model.tokens_after(3)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert_eq!(model.asked(2), problem);
}

#[tokio::test]
async fn spent_repairs_try_the_step_s_fallback_before_any_replan() {
    let world = World::new();
    let folder = world.create(GOAL);
    let mut only = step("only", &[], &["sales.csv"], &[]);
    only["fallback"] = json!("Sum the second column by position.");
    let model = ScriptedModel::new([
        plan(&[only]),
        code("print(undefined)"),
        code("print('@total[42]')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::raises("NameError: name 'undefined' is not defined\n"),
        Run::prints("@total[42]\n"),
    ]);
    let options = Options {
        max_repairs: 0,
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    let problem = "The script exited with code 1.";
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        writing("only", 1),
        running("only", 1),
        attempted("only", 1, model.tokens_after(2), Some(problem)),
        RunEvent::FallingBack {
            step: "only".into(),
            problem: problem.into(),
        },
        writing("only", 2),
        running("only", 2),
        attempted("only", 2, model.tokens_after(3), None),
        done("only", false),
    ]);
    want.extend(ended("@total[42]", true, model.tokens_after(3)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert!(
        model
            .asked(2)
            .contains("Sum the second column by position.")
    );
}

#[tokio::test]
async fn exhausted_repairs_replan_only_the_failed_branch_and_keep_finished_steps() {
    let world = World::new();
    let folder = world.create(GOAL_BY_REGION);
    let model = ScriptedModel::new([
        plan(&[
            step("north", &[], &["sales.csv"], &["north.txt"]),
            step("south", &[], &["sales.csv"], &["south.txt"]),
            step(
                "total",
                &["north", "south"],
                &["north.txt", "south.txt"],
                &[],
            ),
        ]),
        code("n = 10\nopen('north.txt', 'w').write(str(n))"),
        code("print(1 / 0)"),
        plan(&[
            step("south2", &[], &["sales.csv"], &["south.txt"]),
            step(
                "total2",
                &["north", "south2"],
                &["north.txt", "south.txt"],
                &[],
            ),
        ]),
        code("s = 32\nopen('south.txt', 'w').write(str(s))"),
        code("print('@north[10] @south[32] @total[42]')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("").writes("north.txt", "10"),
        Run::raises("ZeroDivisionError: division by zero\n"),
        Run::prints("").writes("south.txt", "32"),
        Run::prints("@north[10] @south[32] @total[42]\n"),
    ]);
    let options = Options {
        max_repairs: 0,
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    let problem = "The script exited with code 1.";
    let mut want = started(GOAL_BY_REGION).to_vec();
    want.extend([
        planned(
            1,
            &[
                ("north", &[]),
                ("south", &[]),
                ("total", &["north", "south"]),
            ],
            &[],
        ),
        writing("north", 1),
        running("north", 1),
        attempted("north", 1, model.tokens_after(2), None),
        done("north", false),
        writing("south", 1),
        running("south", 1),
        attempted("south", 1, model.tokens_after(3), Some(problem)),
        RunEvent::StepFailed {
            step: "south".into(),
            problem: problem.into(),
        },
        RunEvent::StepSkipped {
            step: "total".into(),
            because: "south".into(),
        },
        RunEvent::Replanning {
            step: "south".into(),
            left: 0,
        },
        planned(
            2,
            &[
                ("north", &[]),
                ("south2", &[]),
                ("total2", &["north", "south2"]),
            ],
            &["replanned after south failed: The script exited with code 1."],
        ),
        done("north", true),
        writing("south2", 1),
        running("south2", 1),
        attempted("south2", 1, model.tokens_after(5), None),
        done("south2", false),
        writing("total2", 1),
        running("total2", 1),
        attempted("total2", 1, model.tokens_after(6), None),
        done("total2", false),
    ]);
    want.extend(ended(
        "@north[10] @south[32] @total[42]",
        true,
        model.tokens_after(6),
    ));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert_eq!(sandbox.ran().len(), 4, "north ran once");
    let state = folder.state();
    assert_eq!(
        state.done.keys().collect::<Vec<_>>(),
        ["north", "south2", "total2"]
    );
    assert_eq!(state.replans, 1);
    insta::assert_snapshot!("replan_prompt", transcript(&model.requests()[3]));
}

#[tokio::test]
async fn a_spent_container_budget_ends_the_run_with_an_honest_answer_and_no_replan() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([one_step(), code("print(1 / 0)")]);
    let sandbox = FakeSandbox::new([Run::raises("ZeroDivisionError: division by zero\n")]);
    let options = Options {
        max_containers: Some(1),
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    let problem = "The script exited with code 1.";
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        writing("only", 1),
        running("only", 1),
        attempted("only", 1, model.tokens_after(2), Some(problem)),
    ]);
    want.extend(stopped_by("containers", "only"));
    let answer = "Could not answer: no step produced any result. The containers budget ran out.";
    want.extend(ended(answer, false, model.tokens_after(2)));
    assert_eq!(events, want);
    assert_eq!(finished.ended_by, Some(Budget::Containers));
    assert!(folder.dir().join("report.html").is_file());
}

#[tokio::test]
async fn a_spent_wall_time_stops_before_any_script_is_written() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([one_step()]);
    let sandbox = FakeSandbox::new([]);
    let options = Options {
        wall: Some(Duration::ZERO),
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    let mut want = started(GOAL).to_vec();
    want.push(planned_one("only"));
    want.extend(stopped_by("wall time", "only"));
    let answer = "Could not answer: no step produced any result. The wall time budget ran out.";
    want.extend(ended(answer, false, model.tokens_after(1)));
    assert_eq!(events, want);
    assert_eq!(finished.ended_by, Some(Budget::WallTime));
    assert_eq!(sandbox.prepared(), 0);
}

#[tokio::test]
async fn a_token_budget_spent_by_planning_stops_the_steps_before_they_are_written() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([one_step()]);
    let sandbox = FakeSandbox::new([]);
    let meter = Arc::new(Meter::new(Some(10), None));
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter).await;

    let mut want = started(GOAL).to_vec();
    want.push(planned_one("only"));
    want.extend(stopped_by("tokens", "only"));
    let answer = "Could not answer: no step produced any result. The tokens budget ran out.";
    want.extend(ended(answer, false, model.tokens_after(1)));
    assert_eq!(events, want);
    assert_eq!(finished.ended_by, Some(Budget::Tokens));
    assert_eq!(sandbox.prepared(), 0);
}

#[tokio::test]
async fn a_resumed_run_keeps_finished_steps_and_continues_the_attempt_count() {
    let world = World::new();
    let folder = world.create(GOAL);
    let first = ScriptedModel::new([
        plan(&[
            step("north", &[], &["sales.csv"], &["north.txt"]),
            step("total", &["north"], &["north.txt"], &[]),
        ]),
        code("n = 10\nopen('north.txt', 'w').write(str(n))"),
        code("print(1 / 0)"),
        "Only the north total, 10, is known.".to_string(),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("").writes("north.txt", "10"),
        Run::raises("ZeroDivisionError: division by zero\n"),
    ]);
    let stop = Options {
        max_repairs: 0,
        max_replans: 0,
        ..options()
    };
    let (stopped, _) = run(&folder, &first, &sandbox, stop, meter()).await;
    assert!(!stopped.achieved);
    assert_eq!(
        stopped.answer,
        "Only the north total, 10, is known.\n\n(could not determine @total)"
    );

    let again = RunFolder::open_dir(folder.dir()).unwrap();
    let second = ScriptedModel::new([code("print('@total[10]')")]);
    let sandbox = FakeSandbox::new([Run::prints("@total[10]\n")]);
    let (finished, events) = run(&again, &second, &sandbox, options(), meter()).await;

    let mut want = started(GOAL).to_vec();
    want.extend([
        planned(1, &[("north", &[]), ("total", &["north"])], &[]),
        done("north", true),
        writing("total", 2),
        running("total", 2),
        attempted("total", 2, second.tokens_after(1), None),
        done("total", false),
    ]);
    want.extend(ended("@total[10]", true, second.tokens_after(1)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    assert_eq!(
        sandbox.ran(),
        vec![Ran {
            inputs: vec!["sales.csv".into(), "north.txt".into()],
            states: vec![],
            script: "print('@total[10]')".into(),
        }]
    );
    assert_eq!(again.state().done["total"].attempt, 2);
    let key = planbox::run::cache_key(
        "n = 10\nopen('north.txt', 'w').write(str(n))",
        &[&world.input_hash()],
        "planbox-sandbox:test",
    );
    assert_eq!(again.state().done["north"].key, key);
}

#[tokio::test]
async fn a_summary_s_values_count_only_when_the_steps_printed_them() {
    let goal = "Which region sold most, and how much? Answer as @region[name] @amount[value].";
    let world = World::new();
    let folder = world.create(goal);
    let model = ScriptedModel::new([
        one_step(),
        code("print('south sold 32.04')"),
        "South sold the most. @region[south] @amount[99]".to_string(),
    ]);
    let sandbox = FakeSandbox::new([Run::prints("south sold 32.04\n")]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let answer = "South sold the most.\n\n@region[south] (could not determine @amount)";
    assert_eq!(finished.answer, answer);
    assert!(!finished.achieved, "a value is missing");
    assert_eq!(
        events[events.len() - 2],
        RunEvent::Answered {
            answer: answer.into()
        }
    );
    insta::assert_snapshot!("synthesis_prompt", transcript(&model.requests()[2]));
}

#[tokio::test]
async fn printed_answers_are_taken_as_printed_the_last_one_winning_rounded_as_the_goal_asks() {
    let goal = "What is the mean amount, rounded to 2 decimal places? Answer as @mean[value].";
    let world = World::new();
    let folder = world.create(goal);
    let model = ScriptedModel::new([
        one_step(),
        code("print('@mean[value]')\nprint('@mean[21.0049]')"),
    ]);
    let sandbox = FakeSandbox::new([Run::prints("@mean[value]\n@mean[21.0049]\n")]);
    let (finished, _) = run(&folder, &model, &sandbox, options(), meter()).await;
    assert_eq!(finished.answer, "@mean[21.00]");
    assert!(finished.achieved);
    assert_eq!(model.left(), 0, "no summary was asked for");
}

#[tokio::test]
async fn rescoring_run_folders_shows_what_each_answer_rule_is_worth() {
    let goal = "What is the mean amount, rounded to 2 decimal places? Answer as @mean[value].";
    let world = World::new();
    let folder = world.create(goal);
    let model = ScriptedModel::new([one_step(), code("print('@mean[21.0049]')")]);
    let sandbox = FakeSandbox::new([Run::prints("@mean[21.0049]\n")]);
    run(&folder, &model, &sandbox, options(), meter()).await;
    let suite = [planbox::batch::Goal {
        id: "q1".into(),
        goal: goal.into(),
        inputs: vec![],
        expect: [("mean".to_string(), json!(21.0))].into(),
    }];

    let scores = planbox::batch::rescore(folder.dir().parent().unwrap(), &suite).unwrap();
    let score = |setting: &str| {
        let found = scores.iter().find(|s| s.setting == setting).unwrap();
        (found.right, found.total, found.changed)
    };
    assert_eq!(score("all rules on"), (1, 1, 0));
    assert_eq!(score("rounding off"), (0, 1, 1), "21.0049 is not 21.0");
    assert_eq!(score("no_result off"), (1, 1, 0));
    assert_eq!(scores.len(), 1 + planbox::answer::RULES.len());
}

#[tokio::test]
async fn hint_uses_count_the_hint_each_failed_attempt_got_and_whether_the_next_passed() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        one_step(),
        code("print(total)"),
        code("print('@total[42]')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::raises("NameError: name 'total' is not defined\n"),
        Run::prints("@total[42]\n"),
    ]);
    run(&folder, &model, &sandbox, options(), meter()).await;

    let uses = planbox::batch::hint_uses(folder.dir().parent().unwrap()).unwrap();
    let given: Vec<(&str, usize, usize)> = uses
        .iter()
        .filter(|u| u.fired > 0)
        .map(|u| (u.id, u.fired, u.next_passed))
        .collect();
    assert_eq!(given, vec![("undefined_name", 1, 1)]);
    assert_eq!(uses.len(), planbox::hint::HINTS.len());
}

#[tokio::test]
async fn a_key_refused_mid_run_ends_the_run_with_the_error_and_no_replan() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::answering([
        Scripted::Reply(one_step()),
        Scripted::Fail(|| planbox::Error::LlmKeyRefused {
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            status: reqwest::StatusCode::UNAUTHORIZED,
            key_var: "OPENAI_API_KEY",
            has_key: true,
        }),
    ]);
    let sandbox = FakeSandbox::new([]);
    let events = Collect::default();
    let ended = Agent::new(&model, &sandbox, options(), meter())
        .run(&folder, &events)
        .await;

    assert!(
        matches!(ended, Err(planbox::Error::LlmKeyRefused { .. })),
        "{ended:?}"
    );
    let events: Vec<RunEvent> = events
        .0
        .into_inner()
        .unwrap()
        .into_iter()
        .map(stable)
        .collect();
    let mut want = started(GOAL).to_vec();
    want.extend([
        planned_one("only"),
        RunEvent::Progress {
            done: 0,
            total: 1,
            eta_s: None,
        },
        writing("only", 1),
    ]);
    assert_eq!(
        events, want,
        "no replan, no answer: the run stops where it broke"
    );
    assert_eq!(model.left(), 0);
}

#[tokio::test]
async fn terminal_escapes_a_step_printed_never_reach_the_model() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        plan(&[
            step("north", &[], &["sales.csv"], &[]),
            step("total", &["north"], &[], &[]),
        ]),
        code("print('north 10')"),
        code("print('@total[10]')"),
        "The total is 10. @total[10]".to_string(),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("\u{1b}[31mnorth\u{1b}[0m 10\u{1b}]0;title\u{7}\n"),
        Run::prints("total \u{1b}[1m10\u{1b}[0m\n"),
    ]);
    let (finished, _) = run(&folder, &model, &sandbox, options(), meter()).await;

    assert!(
        model.asked(2).contains("it printed:\n    north 10"),
        "{}",
        model.asked(2)
    );
    assert!(
        model.asked(3).contains("[total]\ntotal 10"),
        "{}",
        model.asked(3)
    );
    for request in model.requests() {
        for message in &request.messages {
            assert!(!message.content.contains('\u{1b}'), "{}", message.content);
        }
    }
    assert_eq!(finished.answer, "The total is 10.\n\n@total[10]");
}

#[tokio::test]
async fn a_chain_planned_an_operation_a_step_runs_as_one_script() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::new([
        plan(&[
            step("load", &[], &["sales.csv"], &[]),
            step("total", &["load"], &[], &[]),
        ]),
        code(
            "import pandas as pd\nprint(f\"@total[{pd.read_csv('/data/sales.csv').amount.sum()}]\")",
        ),
    ]);
    let sandbox = FakeSandbox::new([Run::prints("@total[42]\n")]);
    let options = Options {
        fuse_chains: true,
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    let mut want = started(GOAL).to_vec();
    want.extend([
        RunEvent::Planned {
            version: 1,
            steps: vec![planbox::event::PlannedStep {
                id: "total".into(),
                title: "Solve the whole goal in one script".into(),
                depends_on: vec![],
            }],
            notes: vec![
                "fused the chain load -> total into one step".into(),
                ONE_STEP.into(),
            ],
        },
        writing("total", 1),
        running("total", 1),
        attempted("total", 1, model.tokens_after(2), None),
        done("total", false),
    ]);
    want.extend(ended("@total[42]", true, model.tokens_after(2)));
    assert_eq!(events, want);
    assert!(finished.achieved);
    let prompt = &model.requests()[1].messages[1].content;
    // One step left: the goal's own words are its instruction, not the numbered parts.
    assert!(
        prompt.contains(&format!(
            "This step: Solve the whole goal in one script\n{GOAL}\n"
        )),
        "{prompt}"
    );
    assert!(!prompt.contains("1. Do load."), "{prompt}");
}

#[tokio::test]
async fn a_step_s_prompt_names_the_variables_its_dependencies_left_and_what_they_could_not_keep() {
    let world = World::new();
    let folder = world.create(GOAL_BY_REGION);
    let model = ScriptedModel::new([
        plan(&[
            step("load", &[], &["sales.csv"], &[]),
            step("north", &["load"], &[], &[]),
            step("south", &["load"], &[], &[]),
        ]),
        code("import pandas as pd\nsales = pd.read_csv('/data/sales.csv')"),
        code("print(f'@north[{sales.amount[0]}]')"),
        code("print(f'@south[{sales.amount[1]}] @total[42]')"),
    ]);
    let description = json!({"format": 1, "bytes": 700, "variables": [
        {"name": "sales", "type": "pandas.DataFrame", "set_by": "load", "bytes": 700, "shape": [2, 2],
         "columns": [["region", "object"], ["amount", "int64"]], "sample": "  region  amount\n0  north      10"}],
        "skipped": [{"name": "fig", "type": "matplotlib.Figure", "why": "a chart object: save the chart with plt.savefig in the step that draws it"}],
        "imports": [{"name": "pd", "of": "pandas"}, {"name": "shapiro", "of": "scipy.stats._morestats:shapiro"},
                    {"name": "bad name", "of": "os"}, {"name": "sneaky", "of": "os; rm -rf /"}]});
    let sandbox = FakeSandbox::new([
        Run::prints("").leaves(description),
        Run::prints("@north[10]\n"),
        Run::prints("@south[32] @total[42]\n"),
    ]);
    let (finished, _) = run(&folder, &model, &sandbox, options(), meter()).await;
    assert!(finished.achieved, "{finished:?}");
    let ran = sandbox.ran();
    assert_eq!(ran[1].states, vec!["load".to_string()]);
    assert_eq!(ran[2].states, vec!["load".to_string()]);
    insta::assert_snapshot!(
        "step_prompt_with_variables",
        transcript(&model.requests()[2])
    );
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x02, 0x01, 0xd6, 0xb6, 0xa9, 0xa1, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[tokio::test]
async fn a_chart_the_goal_names_is_required_and_repaired_until_it_is_a_readable_image() {
    let world = World::new();
    let goal = "What is the total amount? Chart it as a bar in total.png. Answer as @total[value].";
    let folder = world.create(goal);
    // The plan forgets the chart; the first script prints the answer and draws nothing, the
    // second writes something that is not a picture, the third draws it.
    let model = ScriptedModel::new([
        one_step(),
        code("print('@total[42]')"),
        code("print('@total[42]')\nopen('total.png', 'w').write('a chart')"),
        code("print('@total[42]')\nplt.savefig('total.png')"),
    ]);
    let sandbox = FakeSandbox::new([
        Run::prints("@total[42]\n"),
        Run::prints("@total[42]\n").writes("total.png", "a chart"),
        Run::prints("@total[42]\n").writes_bytes("total.png", PNG),
    ]);
    let options = Options {
        max_repairs: 2,
        ..options()
    };
    let (finished, events) = run(&folder, &model, &sandbox, options, meter()).await;

    // A plan of one step is the goal's own step, which writes what the goal names.
    let plan = folder.plan().unwrap().unwrap();
    assert_eq!(plan.plan.steps[0].writes, vec!["total.png".to_string()]);
    let problems: Vec<Option<String>> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Attempted { problem, .. } => Some(problem.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            Some("The script exited 0 but did not write total.png.".to_string()),
            Some(
                "The script exited 0 but did not write total.png (not a readable image)."
                    .to_string()
            ),
            None,
        ]
    );
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    // The repair prompt says what is missing.
    assert!(transcript(&model.requests()[2]).contains("did not write total.png"));
}

#[tokio::test]
async fn a_run_that_never_writes_the_named_chart_is_not_achieved() {
    let world = World::new();
    let goal = "What is the total amount? Chart it in total.png. Answer as @total[value].";
    let folder = world.create(goal);
    let model = ScriptedModel::new([
        one_step(),
        code("print('@total[42]')"),
        code("print('@total[42]') "),
        // The replan keeps one step; its script still draws nothing.
        one_step(),
        code("print('@total[42]')  "),
        code("print('@total[42]')   "),
    ]);
    let sandbox = FakeSandbox::new((0..4).map(|_| Run::prints("@total[42]\n")));
    let (finished, _) = run(&folder, &model, &sandbox, options(), meter()).await;
    assert!(!finished.achieved, "{finished:?}");
}

#[tokio::test]
async fn every_failed_branch_is_replanned_in_the_same_round() {
    let world = World::new();
    let folder = world.create(GOAL);
    let branches = plan(&[
        step("north", &[], &["sales.csv"], &[]),
        step("south", &[], &["sales.csv"], &[]),
    ]);
    let model = ScriptedModel::new([
        branches,
        code("print(1 / 0)"),
        code("print(2 / 0)"),
        code("print(3 / 0)"),
        code("print(4 / 0)"),
        // One round: north's branch, then south's, each on the plan the one before left.
        plan(&[step("north2", &[], &["sales.csv"], &[])]),
        plan(&[step("south2", &[], &["sales.csv"], &[])]),
        code("print('@north[10]')"),
        code("print('@total[42]')"),
    ]);
    let zero = "Traceback (most recent call last):\n  File \"<stdin>\", line 1, in <module>\nZeroDivisionError: division by zero\n";
    let sandbox = FakeSandbox::new([
        Run::raises(zero),
        Run::raises(zero),
        Run::raises(zero),
        Run::raises(zero),
        Run::prints("@north[10]\n"),
        Run::prints("@total[42]\n"),
    ]);
    let (finished, events) = run(&folder, &model, &sandbox, options(), meter()).await;

    let replanning: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Replanning { step, left } => {
                assert_eq!(*left, 0, "one round, whatever the branches");
                Some(step.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(replanning, ["north", "south"]);
    let plan = folder.plan().unwrap().unwrap();
    let ids: Vec<&str> = plan.plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["north2", "south2"]);
    assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    // The second replan saw the first's new step as kept, not the failed north.
    let second = transcript(&model.requests()[6]);
    assert!(second.contains("north2"), "{second}");
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    assert_eq!(folder.state().replans, 1);
}

#[tokio::test]
async fn a_prompt_past_the_model_s_context_is_cut_and_asked_again_once() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = ScriptedModel::answering([
        Scripted::Reply(one_step()),
        Scripted::Fail(|| planbox::Error::LlmRefused {
            url: "http://127.0.0.1:8411/v1/chat/completions".into(),
            status: reqwest::StatusCode::BAD_REQUEST,
            message: "the request exceeds the available context size, try increasing it".into(),
        }),
        Scripted::Reply(code("print('@total[42]')")),
    ]);
    let sandbox = FakeSandbox::new([Run::prints("@total[42]\n")]);
    let (finished, _) = run(&folder, &model, &sandbox, options(), meter()).await;
    assert!(finished.achieved, "{finished:?}");
    let requests = model.requests();
    assert_eq!(
        requests.len(),
        3,
        "the plan, the refused write, the write again"
    );
    let size = |r: &Request| r.messages.iter().map(|m| m.content.len()).sum::<usize>();
    assert!(
        size(&requests[2]) < size(&requests[1]),
        "the second write is smaller"
    );
}

/// A model whose plans take a while: the plan's reply comes after `PLAN_DELAY`, a script's at
/// once, and the goal's one-script draft never when `draft_hangs`. It records, per request,
/// whether it was a plan and when it arrived.
struct SlowPlanner {
    plan: String,
    scripts: std::sync::Mutex<std::collections::VecDeque<String>>,
    draft_hangs: bool,
    asked: std::sync::Mutex<Vec<(bool, String, std::time::Instant)>>,
}

const PLAN_DELAY: Duration = Duration::from_millis(300);

impl SlowPlanner {
    fn new(plan: String, scripts: &[&str], draft_hangs: bool) -> Self {
        SlowPlanner {
            plan,
            scripts: std::sync::Mutex::new(scripts.iter().map(|s| code(s)).collect()),
            draft_hangs,
            asked: std::sync::Mutex::default(),
        }
    }

    fn asked(&self) -> Vec<(bool, String, std::time::Instant)> {
        self.asked.lock().unwrap().clone()
    }
}

impl planbox::llm::Llm for SlowPlanner {
    async fn complete(&self, request: &Request) -> planbox::Result<planbox::llm::Reply> {
        let planning = request.schema.is_some();
        let user = request.messages.last().unwrap().content.clone();
        self.asked
            .lock()
            .unwrap()
            .push((planning, user.clone(), std::time::Instant::now()));
        let text = if planning {
            tokio::time::sleep(PLAN_DELAY).await;
            self.plan.clone()
        } else {
            if self.draft_hangs && user.contains("Solve the whole goal in one script") {
                std::future::pending::<()>().await;
            }
            self.scripts.lock().unwrap().pop_front().expect("a script")
        };
        Ok(planbox::llm::Reply {
            usage: planbox::llm::Usage::estimate(request, &text),
            text,
            model: "slow".into(),
            mode: None,
            latency: Duration::ZERO,
        })
    }
}

/// The scripted options with the draft beside the plan (the CLI's default for a local model).
fn drafting() -> Options {
    Options {
        speculate: true,
        ..options()
    }
}

#[tokio::test]
async fn a_plan_of_one_step_runs_the_script_drafted_while_it_was_made() {
    let world = World::new();
    let folder = world.create(GOAL);
    let model = SlowPlanner::new(one_step(), &["print('@total[42]')"], false);
    let sandbox = FakeSandbox::new([Run::prints("@total[42]\n")]);
    let finished = Agent::new(&model, &sandbox, drafting(), meter())
        .run(&folder, &Collect::default())
        .await
        .unwrap();
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer.trim_end(), "@total[42]");
    // Two calls: the plan, and the draft, which began before the plan came back and was
    // the step's script; the step asked for nothing more.
    let asked = model.asked();
    let kinds: Vec<bool> = asked.iter().map(|(planning, _, _)| *planning).collect();
    assert_eq!(kinds, vec![true, false]);
    assert!(
        asked[1].2 - asked[0].2 < PLAN_DELAY,
        "the draft waited for the plan"
    );
    assert!(
        asked[1].1.contains(&format!("\n{GOAL}\n")),
        "{}",
        asked[1].1
    );
    assert_eq!(sandbox.ran().len(), 1);
}

#[tokio::test]
async fn a_plan_of_several_steps_drops_the_draft_unfinished() {
    let world = World::new();
    let folder = world.create(GOAL_BY_REGION);
    let model = SlowPlanner::new(
        plan(&[
            step("north", &[], &["sales.csv"], &[]),
            step("south", &[], &["sales.csv"], &[]),
        ]),
        &["print('@north[10]')", "print('@south[32] @total[42]')"],
        true,
    );
    let sandbox = FakeSandbox::new([
        Run::prints("@north[10]\n"),
        Run::prints("@south[32] @total[42]\n"),
    ]);
    // The draft never ends: the run ends all the same, since it is dropped with the plan.
    let finished = tokio::time::timeout(
        Duration::from_secs(20),
        Agent::new(&model, &sandbox, drafting(), meter()).run(&folder, &Collect::default()),
    )
    .await
    .expect("a hung draft held the run")
    .unwrap();
    assert!(finished.achieved, "{finished:?}");
    let asked = model.asked();
    let drafts = asked
        .iter()
        .filter(|(_, user, _)| user.contains("Solve the whole goal in one script"))
        .count();
    let steps = asked
        .iter()
        .filter(|(planning, user, _)| !planning && user.contains("This step: do "))
        .count();
    assert_eq!((asked.len(), drafts, steps), (4, 1, 2));
    // The two steps wrote their own scripts: the plan's instructions, not the goal.
    assert_eq!(sandbox.ran().len(), 2);
}

#[tokio::test]
async fn no_draft_is_written_when_speculation_is_off_or_nothing_is_planned() {
    for options in [
        Options {
            speculate: false,
            ..options()
        },
        Options {
            mode: planbox::planner::Mode::None,
            ..drafting()
        },
    ] {
        let world = World::new();
        let folder = world.create(GOAL);
        let model = SlowPlanner::new(one_step(), &["print('@total[42]')"], false);
        let sandbox = FakeSandbox::new([Run::prints("@total[42]\n")]);
        let planning = options.mode != planbox::planner::Mode::None;
        let finished = Agent::new(&model, &sandbox, options, meter())
            .run(&folder, &Collect::default())
            .await
            .unwrap();
        assert!(finished.achieved, "{finished:?}");
        let asked = model.asked();
        let kinds: Vec<bool> = asked.iter().map(|(planning, _, _)| *planning).collect();
        // Without a draft the step's call comes only once the plan is back.
        if planning {
            assert_eq!(kinds, vec![true, false]);
            assert!(asked[1].2 - asked[0].2 >= PLAN_DELAY);
        } else {
            assert_eq!(kinds, vec![false]);
        }
    }
}
