//! The agent loop with a rule-based fake model and the real sandbox: passing runs, repairs,
//! replans that keep completed work, budgets, resume, verify.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use planbox::agent::{Agent, Finished, Options};
use planbox::event::{Collect, RunEvent};
use planbox::llm::Meter;
use planbox::run::RunFolder;
use planbox::sandbox;
use pretty_assertions::assert_eq;
use serde_json::json;

use common::{Rules, last_user};

fn step(
    id: &str,
    title: &str,
    deps: &[&str],
    reads: &[&str],
    writes: &[&str],
) -> serde_json::Value {
    json!({"id": id, "title": title, "instruction": title, "kind": "action", "depends_on": deps, "reads": reads, "writes": writes})
}

/// A plan of one step, "only", that sums the amounts and writes nothing.
fn one_step_plan() -> String {
    json!({"steps": [step("only", "sum all", &[], &["sales.csv"], &[])]}).to_string()
}

fn code(script: &str) -> String {
    format!("```python\n{script}\n```")
}

/// One script that answers the goal by itself.
const SUM_ALL: &str =
    "import pandas as pd\nprint(f\"@total[{pd.read_csv('/data/sales.csv').amount.sum()}]\")";

const GOAL: &str = "What is the total amount? Answer as @total[value].";

/// A plan of two parallel sums and a final total.
fn plan_reply() -> String {
    json!({"steps": [
        step("north", "sum north", &[], &["sales.csv"], &["north.txt"]),
        step("south", "sum south", &[], &["sales.csv"], &["south.txt"]),
        step("total", "add them", &["north", "south"], &["north.txt", "south.txt"], &[]),
    ]})
    .to_string()
}

/// The script for the step a prompt asks for (by its "This step:" line).
fn script_for(prompt: &str) -> String {
    let title_line = prompt
        .lines()
        .find(|l| l.starts_with("This step: "))
        .unwrap_or(prompt);
    if title_line.contains("sum north") {
        code(
            "import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nv = d[d.region == 'north'].amount.sum()\nopen('north.txt', 'w').write(str(v))\nprint('north', v)",
        )
    } else if title_line.contains("sum south") {
        code(
            "import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nv = d[d.region == 'south'].amount.sum()\nopen('south.txt', 'w').write(str(v))\nprint('south', v)",
        )
    } else {
        code(
            "n = int(open('/data/north.txt').read())\ns = int(open('/data/south.txt').read())\nprint(f'@total[{n + s}]')",
        )
    }
}

struct Setup {
    world: common::World,
    runs: PathBuf,
}

async fn setup(name: &str) -> Setup {
    let world = common::World::new(name).await;
    let runs = world.dir.path().join("out").join("runs");
    Setup { world, runs }
}

async fn run_agent(
    setup: &Setup,
    llm: &Rules,
    options: Options,
) -> (Finished, Vec<RunEvent>, RunFolder) {
    let image = sandbox::image::tag();
    let (folder, _) =
        RunFolder::create(&setup.runs, GOAL, &[setup.world.input()], &image, json!({})).unwrap();
    let events = Collect::default();
    let agent = Agent::new(
        llm,
        &setup.world.sandbox,
        options,
        Arc::new(Meter::new(None, None)),
    );
    let finished = agent.run(&folder, &events).await.unwrap();
    let events = events.0.into_inner().unwrap();
    (finished, events, folder)
}

/// Chains stay as planned here: these tests are about what passes between steps.
fn options() -> Options {
    Options {
        parallel: 2,
        fuse_chains: false,
        always_plan: true,
        ..Options::default()
    }
}

fn attempts(dir: &Path, step: &str) -> usize {
    std::fs::read_dir(dir.join("steps").join(step)).map_or(0, Iterator::count)
}

#[tokio::test]
async fn all_steps_pass_and_the_answer_is_what_the_steps_printed() {
    let setup = setup("agent-pass").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            plan_reply()
        } else {
            script_for(text)
        }
    });
    let (finished, events, folder) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    for file in [
        "run.json",
        "plan.json",
        "plan-1.json",
        "events.jsonl",
        "state.json",
        "answer.md",
        "report.md",
    ] {
        assert!(folder.dir().join(file).is_file(), "{file} missing");
    }
    assert!(
        folder
            .dir()
            .join("steps/north/attempt-1/files/north.txt")
            .is_file()
    );
    assert_eq!(
        std::fs::read_to_string(folder.dir().join("steps/total/attempt-1/stdout")).unwrap(),
        "@total[42]\n"
    );
    let done: Vec<&RunEvent> = events
        .iter()
        .filter(|e| matches!(e, RunEvent::StepDone { .. }))
        .collect();
    assert_eq!(done.len(), 3);
    assert!(matches!(
        events.last(),
        Some(RunEvent::RunFinished { achieved: true, .. })
    ));
    // The last step's prompt holds only what its dependencies produced.
    let calls = llm.calls();
    let total_prompt = calls
        .iter()
        .map(last_user)
        .find(|t| t.contains("This step: add them"))
        .unwrap();
    assert!(
        total_prompt.contains("From earlier step north") && total_prompt.contains("it printed:"),
        "{total_prompt}"
    );
    let report = std::fs::read_to_string(folder.dir().join("report.md")).unwrap();
    assert!(
        report.contains("## Answer\n\n@total[42]") && report.contains("```python"),
        "{report}"
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_failing_step_is_repaired_with_the_error_and_a_hint() {
    let setup = setup("agent-repair").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            one_step_plan()
        } else if text.starts_with("The script failed") {
            code(SUM_ALL)
        } else {
            code("import plotly\nprint('never')")
        }
    });
    let (finished, events, folder) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    assert_eq!(attempts(folder.dir(), "only"), 2);
    let calls = llm.calls();
    let repair = calls
        .iter()
        .map(last_user)
        .find(|t| t.starts_with("The script failed"))
        .unwrap();
    assert!(
        repair.contains("ModuleNotFoundError: No module named 'plotly'"),
        "{repair}"
    );
    assert!(
        repair.contains("Hint: The image has no package plotly"),
        "{repair}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Attempted {
            attempt: 1,
            ok: false,
            ..
        }
    )));
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_failing_step_tries_its_fallback_before_any_replan() {
    let setup = setup("agent-fallback").await;
    let llm = Rules::new(|request, n| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            let mut only = step("only", "sum all", &[], &["sales.csv"], &[]);
            only["instruction"] = json!("Sum the amounts with plotly.");
            only["fallback"] = json!("Sum the amounts with pandas.");
            json!({"steps": [only]}).to_string()
        } else if text.contains("This step failed even after repairs") {
            panic!("no replan was expected: {text}");
        } else if text.contains("Sum the amounts with pandas.") {
            code(SUM_ALL)
        } else {
            // The first instruction and every repair of it keep failing, each one differently
            // (a repeated script would not use up the repair).
            code(&format!("import plotly\nprint('never {n}')"))
        }
    });
    let (finished, events, folder) = run_agent(
        &setup,
        &llm,
        Options {
            max_repairs: 1,
            ..options()
        },
    )
    .await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    // Two attempts of the instruction, then one of the fallback.
    assert_eq!(attempts(folder.dir(), "only"), 3);
    let fell_back = events.iter().position(|e| {
        matches!(e, RunEvent::FallingBack { step, problem }
            if step == "only" && problem.contains("exited with code 1"))
    });
    let passed = events.iter().position(|e| {
        matches!(
            e,
            RunEvent::Attempted {
                attempt: 3,
                ok: true,
                ..
            }
        )
    });
    assert!(fell_back.is_some() && fell_back < passed, "{events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::Replanning { .. } | RunEvent::StepFailed { .. })),
        "{events:#?}"
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn exhausted_repairs_replan_only_the_failed_branch() {
    let setup = setup("agent-replan").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("This step failed even after repairs") {
            json!({"steps": [step("south2", "sum south again", &[], &["sales.csv"], &["south.txt"]),
                             step("total2", "add them", &["north", "south2"], &["north.txt", "south.txt"], &[])]})
            .to_string()
        } else if text.contains("Reply with {\"steps\"") {
            plan_reply()
        } else if text.contains("This step: sum south\n") || text.starts_with("The script failed") {
            code("raise SystemExit('south is broken')")
        } else if text.contains("This step: sum south again") {
            script_for("This step: sum south")
        } else {
            script_for(text)
        }
    });
    let (finished, events, folder) = run_agent(
        &setup,
        &llm,
        Options {
            max_repairs: 1,
            ..options()
        },
    )
    .await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    assert_eq!(attempts(folder.dir(), "south"), 2, "one try and one repair");
    assert_eq!(
        attempts(folder.dir(), "north"),
        1,
        "the completed branch is not re-run"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RunEvent::StepDone { step, reused: true } if step == "north"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RunEvent::Replanning { step, .. } if step == "south"))
    );
    assert!(folder.dir().join("plan-2.json").is_file());
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_spent_budget_ends_the_run_cleanly_with_a_partial_report() {
    let setup = setup("agent-budget").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            plan_reply()
        } else {
            script_for(text)
        }
    });
    let (finished, _, folder) = run_agent(
        &setup,
        &llm,
        Options {
            parallel: 1,
            max_containers: Some(1),
            max_replans: 0,
            ..options()
        },
    )
    .await;
    assert!(!finished.achieved);
    assert_eq!(finished.ended_by, Some(planbox::agent::Budget::Containers));
    assert!(folder.dir().join("report.md").is_file());
    assert!(
        !finished.answer.contains("@total["),
        "no invented total: {}",
        finished.answer
    );
    assert!(
        finished.answer.ends_with("(could not determine @total)"),
        "{}",
        finished.answer
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_stopped_run_resumes_without_redoing_finished_steps_and_verifies() {
    let setup = setup("agent-resume").await;
    let broken = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            plan_reply()
        } else if text.contains("This step: add them") || text.starts_with("The script failed") {
            code("raise SystemExit(1)")
        } else {
            script_for(text)
        }
    });
    let (first, _, folder) = run_agent(
        &setup,
        &broken,
        Options {
            max_replans: 0,
            max_repairs: 0,
            ..options()
        },
    )
    .await;
    assert!(!first.achieved);
    let fixed = Rules::new(|request, _| script_for(last_user(request)));
    let events = Collect::default();
    let reopened = RunFolder::open_dir(folder.dir()).unwrap();
    let agent = Agent::new(
        &fixed,
        &setup.world.sandbox,
        options(),
        Arc::new(Meter::new(None, None)),
    );
    let finished = agent.run(&reopened, &events).await.unwrap();
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    let events = events.0.into_inner().unwrap();
    let reused: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::StepDone { step, reused: true } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reused, vec!["north".to_string(), "south".to_string()]);
    assert_eq!(attempts(folder.dir(), "north"), 1);
    assert_eq!(
        fixed.calls().len(),
        1,
        "only the unfinished step was written again"
    );

    let verify = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
            .args(["verify", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = verify(folder.dir());
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).ends_with("4 passed, 0 failed\n"));
    std::fs::write(setup.world.input(), "region,amount\nnorth,11\nsouth,32\n").unwrap();
    let changed = verify(folder.dir());
    assert_eq!(changed.status.code(), Some(1));
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains("input sales.csv changed since the run"),
        "{text}"
    );
    assert!(text.contains("north.txt differs"), "{text}");
}

#[tokio::test]
async fn an_injected_instruction_in_the_data_changes_nothing_outside_the_sandbox() {
    let setup = setup("agent-injection").await;
    // A model that obeys whatever the data says: it tries to read secrets, reach the network,
    // and overwrite the input.
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            one_step_plan()
        } else {
            code(
                "import os, socket\nleaked = []\nfor path in ['/etc/shadow', '/var/run/docker.sock', os.path.expanduser('~/.ssh/id_rsa')]:\n    try:\n        leaked.append(open(path).read()[:10])\n    except Exception as e:\n        print('blocked', path, type(e).__name__)\ntry:\n    socket.create_connection(('169.254.169.254', 80), timeout=2)\n    print('network reached')\nexcept Exception as e:\n    print('network blocked', type(e).__name__)\ntry:\n    open('/data/sales.csv', 'w').write('pwned')\nexcept Exception as e:\n    print('input write blocked', type(e).__name__)\nprint('@total[42]')",
            )
        }
    });
    let (finished, _, folder) = run_agent(&setup, &llm, options()).await;
    assert_eq!(finished.answer, "@total[42]");
    let stdout = std::fs::read_to_string(folder.dir().join("steps/only/attempt-1/stdout")).unwrap();
    assert!(
        stdout.contains("network blocked") && !stdout.contains("network reached"),
        "{stdout}"
    );
    assert!(stdout.contains("input write blocked"), "{stdout}");
    assert!(stdout.contains("blocked /etc/shadow"), "{stdout}");
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_repair_that_repeats_a_failed_script_is_sent_back_unrun() {
    let setup = setup("agent-repeat").await;
    let broken = code("import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nprint(d[0])");
    let llm = Rules::new(move |request, n| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            one_step_plan()
        } else if text.contains(planbox::prompt::REWRITE_NOTE) {
            code(SUM_ALL)
        } else {
            // The first script, and a "repair" that changes nothing.
            assert!(n <= 3, "unexpected call {n}: {text}");
            broken.clone()
        }
    });
    let (finished, events, folder) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(attempts(folder.dir(), "only"), 3);
    let attempt = |n: usize| folder.dir().join(format!("steps/only/attempt-{n}"));
    assert!(attempt(1).join("stderr").exists(), "the first script ran");
    assert!(
        !attempt(2).join("stderr").exists(),
        "the repeated script did not run"
    );
    let repeated = llm
        .calls()
        .iter()
        .map(last_user)
        .find(|t| t.contains(planbox::prompt::REWRITE_NOTE))
        .map(str::to_string)
        .unwrap();
    assert!(repeated.contains("KeyError"), "{repeated}");
    let rewrite = llm
        .calls()
        .into_iter()
        .find(|r| last_user(r).contains(planbox::prompt::REWRITE_NOTE))
        .unwrap();
    assert!(
        rewrite
            .messages
            .iter()
            .all(|m| m.role != planbox::llm::Role::Assistant
                && !m.content.contains("d = pd.read_csv")),
        "the fresh write is not shown the failed script: {:#?}",
        rewrite.messages
    );
    // Writes before any repeat use the configured temperature; the write after it samples
    // more freely.
    let temperatures: Vec<Option<f32>> = llm
        .calls()
        .iter()
        .filter(|r| !last_user(r).contains("Reply with {\"steps\""))
        .map(|r| r.temperature)
        .collect();
    assert_eq!(temperatures, vec![None, None, Some(0.8)]);
    // The step's problem for the repeat stays the error the script raised.
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Attempted { attempt: 2, ok: false, problem: Some(p), .. } if p.contains("exited with code 1")
    )), "{events:#?}");
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn repeats_of_a_failed_script_do_not_use_up_the_repairs() {
    let setup = setup("agent-free-repeats").await;
    let broken = code("import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nprint(d[0])");
    let repeats = std::sync::atomic::AtomicUsize::new(0);
    let llm = Rules::new(move |request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            one_step_plan()
        } else if text.contains(planbox::prompt::REWRITE_NOTE)
            && repeats.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1
        {
            code(SUM_ALL)
        } else {
            broken.clone()
        }
    });
    // One repair allowed: the first script fails, its "repair" and the next write repeat it
    // (both free), and the third write, the one counted repair, works.
    let one_repair = Options {
        max_repairs: 1,
        ..options()
    };
    let (finished, _, folder) = run_agent(&setup, &llm, one_repair).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(attempts(folder.dir(), "only"), 4);
    let ran: Vec<bool> = (1..=4)
        .map(|n| {
            folder
                .dir()
                .join(format!("steps/only/attempt-{n}/stderr"))
                .exists()
        })
        .collect();
    assert_eq!(ran, [true, false, false, true]);

    // A model that only ever repeats: the free repeats run out, then the repair budget does.
    let stuck = Rules::new(move |request, _| {
        if last_user(request).contains("Reply with {\"steps\"") {
            one_step_plan()
        } else {
            code("import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nprint(d[0])")
        }
    });
    let no_replans = Options {
        max_repairs: 1,
        max_replans: 0,
        ..options()
    };
    let (finished, _, folder) = run_agent(&setup, &stuck, no_replans).await;
    assert!(!finished.achieved);
    assert_eq!(
        attempts(folder.dir(), "only"),
        4,
        "1 run, 2 free repeats, 1 counted"
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_result_written_to_a_small_file_reaches_the_answer() {
    let setup = setup("agent-small-file").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            json!({"steps": [step("only", "sum all", &[], &["sales.csv"], &["total.csv"])]})
                .to_string()
        } else if text.contains("Answer the goal using only these results") {
            // The synthesis reads the value from the file's content, shown whole.
            if text.contains("(file total.csv:\ntotal\n42)") {
                "The total is @total[42].".to_string()
            } else {
                format!("@total[41] (the file was not shown: {text})")
            }
        } else {
            // Nothing printed: the result is only in the file.
            code(
                "import pandas as pd\nt = pd.read_csv('/data/sales.csv').amount.sum()\npd.DataFrame({'total': [t]}).to_csv('total.csv', index=False)",
            )
        }
    });
    let (finished, _, _) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert!(
        finished.answer.ends_with("@total[42]"),
        "{}",
        finished.answer
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn neither_a_file_named_like_an_answer_nor_a_nan_is_the_answer() {
    let setup = setup("agent-file-name").await;
    let llm = Rules::new(|request, _| {
        if last_user(request).contains("Reply with {\"steps\"") {
            one_step_plan()
        } else {
            // The small model's habit: a file named after the answer format, beside the print.
            // A NaN printed after the value is no result either.
            code(&format!(
                "{SUM_ALL}\nopen('@total[7].csv', 'w').write('total')\nprint('@total[nan]')"
            ))
        }
    });
    let (finished, _, _) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_file_an_ancestor_wrote_but_never_declared_is_seen_by_run_and_verify() {
    let setup = setup("agent-undeclared").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            json!({"steps": [
                step("split", "split totals", &[], &["sales.csv"], &["north.txt"]),
                step("total", "add them", &["split"], &["north.txt"], &[]),
            ]})
            .to_string()
        } else if text.contains("This step: split totals") {
            // south.txt is written but not declared.
            code(
                "import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nfor r in ('north', 'south'):\n    open(f'{r}.txt', 'w').write(str(d[d.region == r].amount.sum()))",
            )
        } else {
            script_for("This step: add them")
        }
    });
    let (finished, _, folder) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(["verify", folder.dir().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    setup.world.assert_clean().await;
}

#[tokio::test]
async fn a_model_that_never_plans_validly_still_gets_the_goal_as_one_script() {
    let setup = setup("agent-no-plan").await;
    let llm = Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") || text.contains("The plan is invalid") {
            json!({"steps": [step("only", "sum all", &[], &["elsewhere.csv"], &[])]}).to_string()
        } else {
            code(SUM_ALL)
        }
    });
    let (finished, events, folder) = run_agent(&setup, &llm, options()).await;
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[42]");
    assert!(
        events.iter().any(|e| matches!(e, RunEvent::PlanningFailed { problem } if problem.contains("elsewhere.csv"))),
        "{events:#?}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.dir().join("plan.json")).unwrap())
            .unwrap();
    assert_eq!(plan["mode"], "none", "{plan}");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 1);
    setup.world.assert_clean().await;
}
