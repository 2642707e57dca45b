use std::collections::BTreeMap;
use std::sync::Mutex;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;
use crate::sandbox::{Output, Warm};

/// Runs "scripts" without a container: a script is JSON, `{"exit": N, "files": {"name":
/// "text"}, "bytes": {"name": "hex"}, "stdout": "text"}`, or `"break"` for a sandbox that
/// fails. Every job is kept.
#[derive(Default)]
struct Scripted {
    jobs: Mutex<Vec<Job>>,
}

struct Ready(Job);

impl Sandbox for Scripted {
    type Warm = Ready;

    async fn prepare(&self, job: &Job) -> Result<Ready> {
        self.jobs.lock().unwrap().push(job.clone());
        Ok(Ready(job.clone()))
    }
}

impl Warm for Ready {
    async fn run(self, script: &str) -> Result<Output> {
        let script: Value = serde_json::from_str(script).unwrap();
        if script == "break" {
            return Err(Error::ImageMissing("planbox-sandbox:test".into()));
        }
        std::fs::create_dir_all(&self.0.out_dir).unwrap();
        for (name, text) in script["files"].as_object().into_iter().flatten() {
            std::fs::write(self.0.out_dir.join(name), text.as_str().unwrap()).unwrap();
        }
        for (name, hex) in script["bytes"].as_object().into_iter().flatten() {
            std::fs::write(
                self.0.out_dir.join(name),
                hex::decode(hex.as_str().unwrap()).unwrap(),
            )
            .unwrap();
        }
        Ok(Output {
            status: Status::Exited(script["exit"].as_i64().unwrap_or(0)),
            stdout: script["stdout"].as_str().unwrap_or_default().to_string(),
            stderr: String::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            artifacts: vec![],
            start: Duration::ZERO,
            run: Duration::ZERO,
            state: None,
        })
    }
}

/// A step of a finished run: what it wrote in the run, and the script kept for it.
struct Done {
    id: &'static str,
    depends_on: &'static [&'static str],
    wrote: &'static [(&'static str, &'static str)],
    script: Value,
    /// What the step printed in the run.
    printed: &'static str,
}

/// A script that writes `files` and exits 0.
fn writes(files: &[(&str, &str)]) -> Value {
    json!({"exit": 0, "files": files.iter().copied().collect::<BTreeMap<_, _>>()})
}

/// A run folder under `dir` over the input `sales.csv`, with `steps` done (and `pending`
/// planned but not done), and its plan.
fn finished_run(dir: &Path, steps: &[Done], pending: &[&str]) -> (RunFolder, Plan) {
    let input = dir.join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\n").unwrap();
    let (folder, _) =
        RunFolder::create(&dir.join("runs"), "goal", &[input], "img", json!({})).unwrap();
    let planned = |id: &str, depends_on: &[&str]| json!({"id": id, "title": id, "instruction": id, "kind": "action", "depends_on": depends_on});
    let plan = json!({
        "goal": "goal",
        "steps": steps.iter().map(|s| planned(s.id, s.depends_on))
            .chain(pending.iter().map(|id| planned(id, &[])))
            .collect::<Vec<_>>(),
    });
    folder.write_plan(1, &plan).unwrap();
    for step in steps {
        let attempt = folder.attempt_dir(step.id, 1).unwrap();
        std::fs::write(attempt.join("script.py"), step.script.to_string()).unwrap();
        std::fs::write(attempt.join("stdout"), step.printed).unwrap();
        std::fs::create_dir_all(attempt.join("files")).unwrap();
        let mut outputs = BTreeMap::new();
        for (file, text) in step.wrote {
            let path = folder.output_path(step.id, 1, file);
            std::fs::write(&path, text).unwrap();
            outputs.insert(file.to_string(), sha256_file(&path).unwrap());
        }
        let done = DoneStep {
            attempt: 1,
            key: "k".into(),
            outputs,
            exit_code: 0,
            state: None,
        };
        folder.mark_done(step.id, done).unwrap();
    }
    let plan = folder.plan().unwrap().unwrap().plan;
    (folder, plan)
}

/// The checks without their timings, which vary.
fn untimed(checks: Vec<Check>) -> Vec<Check> {
    checks
        .into_iter()
        .map(|check| Check {
            took: Duration::ZERO,
            ..check
        })
        .collect()
}

fn check(subject: Subject, problems: Vec<Problem>) -> Check {
    Check {
        subject,
        problems,
        took: Duration::ZERO,
    }
}

fn step(id: &str) -> Subject {
    Subject::Step(id.into())
}

#[tokio::test]
async fn a_run_whose_scripts_write_the_same_files_again_verifies() {
    let dir = tempfile::tempdir().unwrap();
    const CLEAN: &[(&str, &str)] = &[("clean.csv", "region,amount\nnorth,10\n")];
    let steps = [
        Done {
            id: "load",
            depends_on: &[],
            wrote: CLEAN,
            script: writes(CLEAN),
            printed: "",
        },
        Done {
            id: "total",
            depends_on: &["load"],
            wrote: &[("total.txt", "10")],
            script: json!({"exit": 0, "files": {"total.txt": "10"}, "stdout": "@total[10]\n"}),
            printed: "total so far\n@total[10]\n",
        },
    ];
    let (folder, plan) = finished_run(dir.path(), &steps, &["chart"]);
    let sandbox = Scripted::default();

    let checks = verify(&folder, &plan, &sandbox, 1e-6).await.unwrap();

    assert_eq!(
        untimed(checks),
        vec![
            check(Subject::Inputs, vec![]),
            check(step("load"), vec![]),
            check(step("total"), vec![]),
        ],
        "a step that was never done is not checked"
    );
    let jobs = sandbox.jobs.lock().unwrap();
    let info = folder.info().unwrap();
    assert_eq!(
        jobs[1].inputs,
        vec![
            info.inputs[0].path.clone(),
            folder.output_path("load", 1, "clean.csv")
        ],
        "a step sees the run's inputs and what its ancestors wrote"
    );
    assert_eq!(jobs[1].run_id, format!("verify-{}", info.id));
}

#[tokio::test]
async fn everything_that_did_not_reproduce_is_named_with_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        Done {
            id: "numbers",
            depends_on: &[],
            wrote: &[
                ("close.csv", "x\n0.3\n"),
                ("far.csv", "x\n0.3\n"),
                ("chart.png", "one rendering"),
                ("total.txt", "10"),
                ("gone.txt", "here"),
            ],
            script: json!({"exit": 1, "files": {
                "close.csv": "x\n0.30000000001\n",
                "far.csv": "x\n0.4\n",
                "chart.png": "another rendering",
                "total.txt": "11",
            }}),
            printed: "",
        },
        Done {
            id: "broken",
            depends_on: &[],
            wrote: &[],
            script: json!("break"),
            printed: "",
        },
    ];
    let (folder, plan) = finished_run(dir.path(), &steps, &[]);
    std::fs::write(dir.path().join("sales.csv"), "region,amount\nnorth,11\n").unwrap();

    let checks = verify(&folder, &plan, &Scripted::default(), 1e-6)
        .await
        .unwrap();

    assert_eq!(
        untimed(checks),
        vec![
            check(
                Subject::Inputs,
                vec![Problem::InputChanged {
                    name: "sales.csv".into()
                }]
            ),
            check(
                step("numbers"),
                vec![
                    Problem::Status {
                        now: Status::Exited(1),
                        then: 0
                    },
                    Problem::NotAnImage {
                        file: "chart.png".into()
                    },
                    Problem::Differs {
                        file: "far.csv".into()
                    },
                    Problem::NotWritten {
                        file: "gone.txt".into()
                    },
                    Problem::Differs {
                        file: "total.txt".into()
                    },
                ]
            ),
            check(
                step("broken"),
                vec![Problem::Sandbox(
                    "sandbox image planbox-sandbox:test is missing: run `make image` (or `planbox image build`)"
                        .into()
                )]
            ),
        ]
    );
}

/// A 1×1 PNG, and the same picture with another text chunk: equal charts, other bytes.
const PNG_A: &str = "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005000201d6b6a9a10000000049454e44ae426082";
const PNG_B: &str = "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c48900000009744558745300766572310e5c5e6d0000000d4944415478da63f8cfc0f01f0005000201d6b6a9a10000000049454e44ae426082";

#[tokio::test]
async fn answers_are_printed_again_and_charts_still_decode() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        Done {
            id: "same",
            depends_on: &[],
            wrote: &[],
            script: json!({"exit": 0, "bytes": {"chart.png": PNG_B}, "stdout": "regions: 2\n@top[south] @total[37525.50000000001]\n"}),
            printed: "regions: 2\n@top[South] @total[37525.5]\n",
        },
        Done {
            id: "changed",
            depends_on: &[],
            wrote: &[],
            script: json!({"exit": 0, "stdout": "@top[north]\n"}),
            printed: "@top[south] @total[37525.5]\n",
        },
    ];
    let (folder, plan) = finished_run(dir.path(), &steps, &[]);
    // The charts as the run wrote them: a real PNG for "same".
    let chart = folder.output_path("same", 1, "chart.png");
    std::fs::write(&chart, hex::decode(PNG_A).unwrap()).unwrap();
    let mut state = folder.state();
    state
        .done
        .get_mut("same")
        .unwrap()
        .outputs
        .insert("chart.png".into(), sha256_file(&chart).unwrap());
    folder
        .mark_done("same", state.done["same"].clone())
        .unwrap();

    let checks = verify(&folder, &plan, &Scripted::default(), 1e-6)
        .await
        .unwrap();

    assert_eq!(
        untimed(checks),
        vec![
            check(Subject::Inputs, vec![]),
            check(
                step("same"),
                vec![Problem::Answer {
                    name: "top".into(),
                    then: "South".into(),
                    now: Some("south".into())
                }]
            ),
            check(
                step("changed"),
                vec![
                    Problem::Answer {
                        name: "top".into(),
                        then: "south".into(),
                        now: Some("north".into())
                    },
                    Problem::Answer {
                        name: "total".into(),
                        then: "37525.5".into(),
                        now: None
                    },
                ]
            ),
        ],
        "a number within the tolerance and a re-rendered chart pass; text must match exactly"
    );
}

#[tokio::test]
async fn a_missing_input_is_named_with_where_the_run_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, plan) = finished_run(dir.path(), &[], &[]);
    std::fs::remove_file(dir.path().join("sales.csv")).unwrap();

    let checks = verify(&folder, &plan, &Scripted::default(), 1e-6)
        .await
        .unwrap();

    let path = folder.info().unwrap().inputs[0].path.clone();
    assert_eq!(
        checks[0]
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![format!("input sales.csv is missing ({})", path.display())]
    );
    assert!(!checks[0].passed());
}

#[test]
fn problems_read_as_the_verify_report_shows_them() {
    let shown = [
        Problem::InputChanged {
            name: "sales.csv".into(),
        },
        Problem::Status {
            now: Status::TimedOut,
            then: 0,
        },
        Problem::NotWritten {
            file: "a.csv".into(),
        },
        Problem::Differs {
            file: "b.txt".into(),
        },
        Problem::NotAnImage {
            file: "c.png".into(),
        },
        Problem::Answer {
            name: "total".into(),
            then: "10".into(),
            now: Some("11".into()),
        },
        Problem::Answer {
            name: "total".into(),
            then: "10".into(),
            now: None,
        },
    ]
    .iter()
    .map(ToString::to_string)
    .collect::<Vec<_>>();
    assert_eq!(
        shown,
        vec![
            "input sales.csv changed since the run",
            "timed out (the run had exit code 0)",
            "a.csv was not written again",
            "b.txt differs",
            "c.png is not a readable image",
            "it printed @total[11], the run printed @total[10]",
            "it printed no @total[...], the run printed @total[10]",
        ]
    );
}

#[test]
fn csv_files_agree_when_their_numbers_are_within_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let a = file("a.csv", "name,value\nnorth,100.0\n");
    let near = file("near.csv", "name,value\nnorth, 100.00001\n");
    let far = file("far.csv", "name,value\nnorth,101\n");
    let renamed = file("renamed.csv", "name,value\nsouth,100.0\n");
    let longer = file("longer.csv", "name,value\nnorth,100.0\nsouth,1\n");
    assert!(csv_close(&a, &near, 1e-6));
    assert!(!csv_close(&a, &far, 1e-6));
    assert!(csv_close(&a, &far, 0.1));
    assert!(!csv_close(&a, &renamed, 1.0));
    assert!(!csv_close(&a, &longer, 1.0));
    assert!(!csv_close(&a, &dir.path().join("missing.csv"), 1.0));
}
