//! The planner with a scripted model: the re-ask loop on invalid plans, each mode, hierarchical
//! expansion bounds, reflection, and bad goals.

use std::sync::Mutex;
use std::time::Duration;

use planbox::llm::{Llm, Reply, Request, Usage};
use planbox::plan::{Limits, StepKind};
use planbox::planner::{Mode, Planner};
use planbox::profile::{FileType, Profile};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Replies with the scripted texts in order and keeps every request.
struct Scripted {
    replies: Mutex<Vec<String>>,
    requests: Mutex<Vec<Request>>,
}

impl Scripted {
    fn new(replies: Vec<Value>) -> Self {
        let mut texts: Vec<String> = replies.into_iter().map(|v| v.to_string()).collect();
        texts.reverse();
        Scripted {
            replies: Mutex::new(texts),
            requests: Mutex::new(vec![]),
        }
    }
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
    fn last_user(&self, n: usize) -> String {
        self.requests()[n].messages.last().unwrap().content.clone()
    }
}

impl Llm for Scripted {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        self.requests.lock().unwrap().push(request.clone());
        let text = self
            .replies
            .lock()
            .unwrap()
            .pop()
            .expect("the test scripted no more replies");
        Ok(Reply {
            text,
            usage: Usage::default(),
            model: "scripted".into(),
            mode: None,
            latency: Duration::ZERO,
        })
    }
}

fn inputs() -> Vec<Profile> {
    vec![Profile {
        name: "sales.csv".into(),
        bytes: 100,
        file_type: FileType::Csv,
        columns: vec![],
        rows: Some(3),
        rows_estimated: false,
        sampled_rows: 3,
        sample: vec![],
        delimiter: Some(','),
        notes: vec![],
    }]
}

fn step(id: &str, deps: &[&str], reads: &[&str], writes: &[&str]) -> Value {
    json!({"id": id, "title": format!("do {id}"), "instruction": format!("Do {id}."), "kind": "action",
           "depends_on": deps, "reads": reads, "writes": writes})
}

fn steps(list: Vec<Value>) -> Value {
    json!({ "steps": list })
}

fn ids(planned: &planbox::planner::Planned) -> Vec<(String, Vec<String>)> {
    planned
        .plan
        .steps
        .iter()
        .map(|s| (s.id.clone(), s.depends_on.clone()))
        .collect()
}

fn pair(id: &str, deps: &[&str]) -> (String, Vec<String>) {
    (
        id.to_string(),
        deps.iter().map(std::string::ToString::to_string).collect(),
    )
}

/// A planner that keeps chains as the model gave them, for tests of what it checks.
fn unfused<L: planbox::llm::Llm>(llm: &L) -> Planner<'_, L> {
    let mut planner = Planner::new(llm);
    planner.fuse = false;
    planner
}

/// The plan `llm` gives for a graph, unfused, checked to come from one request (no re-ask).
async fn planned_without_a_reask(llm: &Scripted) -> planbox::planner::Planned {
    let planned = unfused(llm)
        .plan("goal", &inputs(), Mode::Dag, 0)
        .await
        .unwrap();
    assert_eq!(llm.requests().len(), 1, "no re-ask");
    planned
}

type Files<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);

/// Each step's id, dependencies, reads and writes.
fn files(planned: &planbox::planner::Planned) -> Vec<Files<'_>> {
    planned
        .plan
        .steps
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.depends_on.iter().map(String::as_str).collect(),
                s.reads.iter().map(String::as_str).collect(),
                s.writes.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_invalid_plan_goes_back_with_its_errors() {
    let llm = Scripted::new(vec![
        steps(vec![
            step("a", &["b"], &["sales.csv"], &["x.csv"]),
            step("b", &["a"], &["x.csv"], &[]),
        ]),
        steps(vec![
            step("a", &[], &["sales.csv"], &["x.csv"]),
            step("b", &["a"], &["x.csv"], &[]),
        ]),
    ]);
    let planned = unfused(&llm)
        .plan("goal", &inputs(), Mode::Dag, 0)
        .await
        .unwrap();
    assert_eq!(ids(&planned), vec![pair("a", &[]), pair("b", &["a"])]);
    assert_eq!(
        llm.last_user(1),
        "The plan is invalid:\n- the steps form a cycle: a -> b -> a\nReply with the corrected plan as JSON only."
    );
    assert_eq!(llm.requests()[1].messages.len(), 4);
    assert_eq!(llm.requests()[0].schema.as_ref().unwrap().name, "plan");
}

#[tokio::test]
async fn a_model_that_keeps_failing_gets_a_clear_error() {
    let bad = steps(vec![step("a", &[], &["missing.csv"], &[])]);
    let llm = Scripted::new(vec![bad.clone(), bad.clone(), bad]);
    let mut planner = Planner::new(&llm);
    planner.reasks = 2;
    let err = planner
        .plan("goal", &inputs(), Mode::Dag, 0)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "unusable model reply: no valid plan after 2 re-asks; last problems: step \"a\" reads \"missing.csv\", which is neither an input nor written by a step it depends on (directly or not)"
    );
}

#[tokio::test]
async fn linear_plans_are_chains_whatever_the_model_wrote() {
    let llm = Scripted::new(vec![steps(vec![
        step("a", &[], &["sales.csv"], &["x.csv"]),
        step("b", &[], &[], &[]),
        step("c", &["a"], &["x.csv"], &[]),
    ])]);
    let planned = Planner::new(&llm)
        .plan("goal", &inputs(), Mode::Linear, 0)
        .await
        .unwrap();
    assert_eq!(
        ids(&planned),
        vec![pair("a", &[]), pair("b", &["a"]), pair("c", &["b"])]
    );
    assert!(llm.last_user(0).contains("The steps form a chain"));
}

#[tokio::test]
async fn only_real_checks_stay_verify_steps() {
    let verify = |id: &str, deps: &[&str], reads: &[&str], writes: &[&str]| {
        let mut s = step(id, deps, reads, writes);
        s["kind"] = json!("verify");
        s
    };
    let llm = Scripted::new(vec![steps(vec![
        verify("load", &[], &["sales.csv"], &["clean.csv"]),
        verify("first", &[], &["sales.csv"], &[]),
        verify("sum", &["load"], &["clean.csv"], &["total.txt"]),
        verify("check", &["sum"], &["total.txt"], &[]),
    ])]);
    let planned = unfused(&llm)
        .plan("goal", &inputs(), Mode::Dag, 0)
        .await
        .unwrap();
    let kinds: Vec<(&str, StepKind)> = planned
        .plan
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("load", StepKind::Action),
            ("first", StepKind::Action),
            ("sum", StepKind::Action),
            ("check", StepKind::Verify),
        ]
    );
}

#[tokio::test]
async fn slips_with_a_clear_intent_are_mended_not_sent_back() {
    let llm = Scripted::new(vec![steps(vec![
        // Extensionless outputs: a table and a chart.
        step("load", &[], &["sales.csv"], &["sorted_df"]),
        step("draw", &["load"], &["sorted_df"], &["revenue_chart"]),
        // Reads load's table without depending on it, and names a value as a "file".
        step("pick", &[], &["sorted_df", "fastest_region"], &[]),
        // Reads its own output, depends on itself and on a step that does not exist (in a
        // replan: the failed step it replaces).
        step(
            "sum",
            &["load", "sum", "ghost"],
            &["sorted_df", "total.txt"],
            &["total.txt"],
        ),
    ])]);
    assert_eq!(
        files(&planned_without_a_reask(&llm).await),
        vec![
            ("load", vec![], vec!["sales.csv"], vec!["sorted_df.csv"]),
            (
                "draw",
                vec!["load"],
                vec!["sorted_df.csv"],
                vec!["revenue_chart.png"]
            ),
            ("pick", vec!["load"], vec!["sorted_df.csv"], vec![]),
            (
                "sum",
                vec!["load"],
                vec!["sorted_df.csv"],
                vec!["total.txt"]
            ),
        ]
    );
}

#[tokio::test]
async fn a_file_every_step_rewrites_is_a_version_per_step() {
    // What the offline model plans for the demo: one `df.csv`, read and written again by
    // each step, some steps naming no dependency. The first writer keeps the name (in a
    // replan, what a kept step wrote stays where it is).
    let llm = Scripted::new(vec![steps(vec![
        // Writing an input means loading it: never versioned.
        step("load", &[], &["sales.csv"], &["df.csv", "sales.csv"]),
        step(
            "filter",
            &[],
            &["df.csv", "sales.csv"],
            &["df.csv", "sales.csv"],
        ),
        step("group", &["filter"], &["df.csv"], &["df.csv"]),
        step("chart", &[], &["df.csv"], &["revenue.png"]),
    ])]);
    assert_eq!(
        files(&planned_without_a_reask(&llm).await),
        vec![
            ("load", vec![], vec!["sales.csv"], vec!["df.csv"]),
            (
                "filter",
                vec!["load"],
                vec!["df.csv", "sales.csv"],
                vec!["df_filter.csv"]
            ),
            (
                "group",
                vec!["filter"],
                vec!["df_filter.csv"],
                vec!["df_group.csv"]
            ),
            (
                "chart",
                vec!["group"],
                vec!["df_group.csv"],
                vec!["revenue.png"]
            ),
        ]
    );
}

#[tokio::test]
async fn a_replan_that_only_repeats_the_finished_steps_is_asked_again() {
    let plan = planbox::plan::Plan::from_model(
        "goal",
        &steps(vec![
            step("load", &[], &["sales.csv"], &[]),
            step("sum", &["load"], &[], &[]),
        ]),
    )
    .unwrap();
    let llm = Scripted::new(vec![
        steps(vec![step("load", &[], &["sales.csv"], &[])]),
        steps(vec![
            step("load", &[], &["sales.csv"], &[]),
            step("total", &["load"], &[], &[]),
        ]),
    ]);
    let replanned = unfused(&llm)
        .replan(&plan, &inputs(), "sum", "KeyError: 'amount'")
        .await
        .unwrap();
    let ids: Vec<&str> = replanned.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec!["load", "total"]);
    assert_eq!(llm.requests().len(), 2);
    assert!(
        llm.last_user(1)
            .contains("The plan adds no new step: replace the failed step \"sum\""),
        "{}",
        llm.last_user(1)
    );
}

#[tokio::test]
async fn no_plan_means_one_step_and_no_model_call() {
    let llm = Scripted::new(vec![]);
    let planned = Planner::new(&llm)
        .plan("count the rows", &inputs(), Mode::None, 1)
        .await
        .unwrap();
    assert_eq!(ids(&planned), vec![pair("solve", &[])]);
    assert_eq!(planned.plan.steps[0].reads, vec!["sales.csv".to_string()]);
    assert!(llm.requests().is_empty());
}

#[tokio::test]
async fn auto_lets_the_model_decide() {
    let llm = Scripted::new(vec![json!({"plan": false, "reason": "one count"})]);
    let planned = Planner::new(&llm)
        .plan("count the rows", &inputs(), Mode::Auto, 0)
        .await
        .unwrap();
    assert_eq!(
        (planned.mode, planned.notes.clone()),
        (
            Mode::None,
            vec!["auto: one script, no plan (one count)".to_string()]
        )
    );
    let llm = Scripted::new(vec![
        json!({"plan": true, "reason": "chart and answer"}),
        steps(vec![step("a", &[], &["sales.csv"], &[])]),
    ]);
    let planned = Planner::new(&llm)
        .plan("chart it", &inputs(), Mode::Auto, 0)
        .await
        .unwrap();
    assert_eq!(planned.mode, Mode::Dag);
}

#[tokio::test]
async fn hierarchical_plans_expand_sub_goals_within_the_bounds() {
    let mut clean = step("clean", &[], &["sales.csv"], &["clean.csv"]);
    clean["atomic"] = json!(true);
    let mut analyse = step("analyse", &["clean"], &["clean.csv"], &["growth.csv"]);
    analyse["atomic"] = json!(false);
    let llm = Scripted::new(vec![
        steps(vec![analyse, clean]),
        steps(vec![
            step("sum", &[], &["clean.csv"], &["totals.csv"]),
            step("growth", &["sum"], &["totals.csv"], &["growth.csv"]),
        ]),
    ]);
    let planned = Planner::new(&llm)
        .plan("growth per region", &inputs(), Mode::Hierarchical, 0)
        .await
        .unwrap();
    assert_eq!(planned.mode, Mode::Hierarchical);
    assert_eq!(
        ids(&planned),
        vec![
            pair("clean", &[]),
            pair("analyse-sum", &["clean"]),
            pair("analyse-growth", &["analyse-sum"])
        ]
    );
    assert!(llm.last_user(1).contains("It must write: growth.csv"));

    // With room for no more than one step per sub-goal, nothing is expanded.
    let mut a = step("a", &[], &["sales.csv"], &["a.csv"]);
    a["atomic"] = json!(false);
    let mut b = step("b", &["a"], &["a.csv"], &[]);
    b["atomic"] = json!(false);
    let llm = Scripted::new(vec![steps(vec![a, b])]);
    let mut planner = Planner::new(&llm);
    planner.limits = Limits {
        max_steps: 2,
        ..Limits::default()
    };
    let planned = planner
        .plan("goal", &inputs(), Mode::Hierarchical, 0)
        .await
        .unwrap();
    assert_eq!(ids(&planned), vec![pair("a", &[]), pair("b", &["a"])]);
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn reflection_adopts_a_valid_improvement() {
    let llm = Scripted::new(vec![
        steps(vec![step("a", &[], &["sales.csv"], &[])]),
        json!({"problems": ["nothing checks the result"]}),
        steps(vec![
            step("a", &[], &["sales.csv"], &["r.csv"]),
            json!({"id": "check", "title": "check", "instruction": "Check r.csv has rows.", "kind": "verify",
                   "depends_on": ["a"], "reads": ["r.csv"], "writes": []}),
        ]),
        json!({"problems": []}),
    ]);
    let planned = Planner::new(&llm)
        .plan("goal", &inputs(), Mode::Dag, 2)
        .await
        .unwrap();
    assert_eq!(ids(&planned), vec![pair("a", &[]), pair("check", &["a"])]);
    assert_eq!(
        planned.notes,
        vec![
            "reflection fixed: nothing checks the result".to_string(),
            "reflection found no problems".to_string()
        ]
    );
}

#[tokio::test]
async fn empty_and_huge_goals_are_refused_before_any_call() {
    let llm = Scripted::new(vec![]);
    let planner = Planner::new(&llm);
    let empty = planner
        .plan("   ", &inputs(), Mode::Dag, 0)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(empty, "the goal is empty: say what to find out");
    let huge = planner
        .plan(&"x".repeat(5000), &inputs(), Mode::Dag, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(huge.contains("5000 characters"), "{huge}");
    assert!(llm.requests().is_empty());
}

#[tokio::test]
async fn a_plan_of_one_step_takes_the_goal_as_its_instruction() {
    let goal = "What is the mean amount? Chart it in amount.png. Answer as @mean[value].";
    let mut only = step("mean", &[], &["sales.csv"], &["amount.png", "mean.txt"]);
    only["instruction"] = json!("Compute the mean.");
    let llm = Scripted::new(vec![steps(vec![only])]);
    let planned = Planner::new(&llm)
        .plan(goal, &inputs(), Mode::Dag, 0)
        .await
        .unwrap();
    let step = &planned.plan.steps[0];
    assert_eq!(
        (
            step.id.as_str(),
            step.title.as_str(),
            step.instruction.as_str(),
            step.writes.clone()
        ),
        (
            "mean",
            "Solve the whole goal in one script",
            goal,
            vec!["amount.png".to_string()]
        )
    );
    assert_eq!(
        planned.notes,
        vec!["one step: its instruction is the goal itself".to_string()]
    );
    // The goal asks for one value and one file: the grammar holds the reply to three steps,
    // while the reply is checked against the configured limit.
    let schema = llm.requests()[0].schema.clone().unwrap();
    let max_items = |s: &Value| s["properties"]["steps"]["maxItems"].clone();
    assert_eq!(
        (
            max_items(&schema.decode.unwrap()),
            max_items(&schema.schema)
        ),
        (json!(3), json!(Limits::default().max_steps))
    );
}

#[tokio::test]
async fn a_plan_of_several_steps_keeps_their_instructions() {
    let llm = Scripted::new(vec![steps(vec![
        step("a", &[], &["sales.csv"], &[]),
        step("b", &[], &["sales.csv"], &[]),
    ])]);
    let planned = Planner::new(&llm)
        .plan("Two things.", &inputs(), Mode::Dag, 0)
        .await
        .unwrap();
    let instructions: Vec<&str> = planned
        .plan
        .steps
        .iter()
        .map(|s| s.instruction.as_str())
        .collect();
    assert_eq!(instructions, vec!["Do a.", "Do b."]);
    assert!(planned.notes.is_empty(), "{:?}", planned.notes);
    // No size in the goal: the grammar is not narrowed.
    assert_eq!(llm.requests()[0].schema.as_ref().unwrap().decode, None);
}

#[tokio::test]
async fn a_goal_that_asks_only_for_values_is_one_step_without_a_model_call() {
    let goal = "What is the mean amount? Answer as @mean[value].";
    let llm = Scripted::new(vec![]);
    for mode in [Mode::Dag, Mode::Linear, Mode::Auto] {
        let planned = Planner::new(&llm)
            .plan(goal, &inputs(), mode, 0)
            .await
            .unwrap();
        assert_eq!(ids(&planned), vec![pair("solve", &[])]);
        assert_eq!(planned.plan.steps[0].instruction, goal);
        assert!(planned.notes[0].starts_with("one step, planned without the model"));
        assert!(!Planner::new(&llm).asks_the_model(goal, &inputs(), mode));
    }
    assert!(llm.requests().is_empty());
    // A goal that names a chart, or has parts of its own, goes to the model; `none` never.
    let charted = "Chart the mean amount in mean.png. Answer as @mean[value].";
    let parts = "1. Find the mean amount. 2. Find its median. Answer as @mean[value].";
    let planner = Planner::new(&llm);
    assert!(planner.asks_the_model(charted, &inputs(), Mode::Dag));
    assert!(planner.asks_the_model(parts, &inputs(), Mode::Linear));
    assert!(planner.asks_the_model(goal, &inputs(), Mode::Hierarchical));
    assert!(!planner.asks_the_model(charted, &inputs(), Mode::None));
    // Asked to, the model plans it.
    let llm = Scripted::new(vec![steps(vec![step("a", &[], &["sales.csv"], &[])])]);
    let mut planner = Planner::new(&llm);
    planner.size_by_goal = false;
    assert!(planner.asks_the_model(goal, &inputs(), Mode::Dag));
    planner.plan(goal, &inputs(), Mode::Dag, 0).await.unwrap();
    assert_eq!(llm.requests().len(), 1);
}
