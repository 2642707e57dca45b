use std::collections::BTreeSet;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

fn step(id: &str, deps: &[&str], reads: &[&str], writes: &[&str]) -> Step {
    Step {
        id: id.into(),
        title: format!("do {id}"),
        instruction: format!("Do {id}."),
        kind: StepKind::Action,
        depends_on: deps.iter().map(std::string::ToString::to_string).collect(),
        reads: reads.iter().map(std::string::ToString::to_string).collect(),
        writes: writes
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        fallback: None,
        produces: Vec::new(),
        uses: Vec::new(),
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        goal: "g".into(),
        steps,
    }
}

fn errors(steps: Vec<Step>) -> Vec<PlanError> {
    plan(steps).validate(&["sales.csv".to_string()], &Limits::default())
}

#[test]
fn a_valid_dag_has_no_errors() {
    let steps = vec![
        step("load", &[], &["sales.csv"], &["clean.csv"]),
        step("north", &["load"], &["clean.csv"], &["north.csv"]),
        step("south", &["load"], &["clean.csv"], &["south.csv"]),
        step(
            "chart",
            &["north", "south"],
            &["north.csv", "south.csv", "sales.csv"],
            &["chart.png"],
        ),
    ];
    assert_eq!(errors(steps), vec![]);
}

#[test]
fn each_invalid_shape_yields_its_named_error() {
    let cases: Vec<(Vec<Step>, PlanError)> = vec![
        (vec![], PlanError::Empty),
        (
            vec![step("a b", &[], &[], &[])],
            PlanError::BadId("a b".into()),
        ),
        (
            vec![step("a", &[], &[], &[]), step("a", &[], &[], &[])],
            PlanError::DuplicateId("a".into()),
        ),
        (
            vec![step("a", &["zz"], &[], &[])],
            PlanError::UnknownDependency {
                step: "a".into(),
                missing: "zz".into(),
            },
        ),
        (
            vec![step("a", &["a"], &[], &[])],
            PlanError::SelfDependency("a".into()),
        ),
        (
            vec![
                step("a", &["c"], &[], &[]),
                step("b", &["a"], &[], &[]),
                step("c", &["b"], &[], &[]),
            ],
            PlanError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()]),
        ),
        (
            vec![step("a", &[], &[], &["happiness_data"])],
            PlanError::NoExtension {
                step: "a".into(),
                file: "happiness_data".into(),
            },
        ),
        (
            vec![step("a", &[], &["other.csv"], &[])],
            PlanError::UnavailableRead {
                step: "a".into(),
                file: "other.csv".into(),
            },
        ),
        (
            vec![
                step("a", &[], &[], &["x.csv"]),
                step("b", &[], &["x.csv"], &[]),
            ],
            PlanError::UnavailableRead {
                step: "b".into(),
                file: "x.csv".into(),
            },
        ),
        (
            vec![
                step("a", &[], &[], &["x.csv"]),
                step("b", &[], &[], &["x.csv"]),
            ],
            PlanError::DuplicateWrite {
                file: "x.csv".into(),
                first: "a".into(),
                second: "b".into(),
            },
        ),
        (
            vec![step("a", &[], &[], &["../x.csv"])],
            PlanError::BadFileName {
                step: "a".into(),
                file: "../x.csv".into(),
            },
        ),
    ];
    for (steps, want) in cases {
        let got = errors(steps);
        assert!(got.contains(&want), "wanted {want:?}, got {got:?}");
    }
}

#[test]
fn size_limits_are_enforced() {
    let many: Vec<Step> = (0..13)
        .map(|i| step(&format!("s{i}"), &[], &[], &[]))
        .collect();
    assert!(errors(many).contains(&PlanError::TooManySteps(13, 12)));
    let mut long = step("a", &[], &[], &[]);
    long.instruction = "x".repeat(2001);
    assert!(errors(vec![long]).contains(&PlanError::TooLong {
        step: "a".into(),
        field: "instruction",
        len: 2001,
        max: 2000
    }));
}

#[test]
fn ready_steps_follow_dependencies() {
    let p = plan(vec![
        step("a", &[], &[], &[]),
        step("b", &["a"], &[], &[]),
        step("c", &[], &[], &[]),
    ]);
    let ids = |steps: Vec<&Step>| steps.into_iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(p.ready(&BTreeSet::new(), &BTreeSet::new())),
        vec!["a", "c"]
    );
    let done: BTreeSet<String> = ["a".to_string()].into();
    assert_eq!(ids(p.ready(&done, &BTreeSet::new())), vec!["b", "c"]);
    assert_eq!(p.descendants("a"), ["b".to_string()].into());
}

#[test]
fn sandbox_paths_in_model_plans_become_plain_names() {
    let value = json!({"steps": [{"id": "a", "title": "t", "instruction": "i", "kind": "action",
        "depends_on": [], "reads": ["/data/sales.csv", "data/x.csv"], "writes": ["./out.csv", "/out/chart.png"]}]});
    let p = Plan::from_model("g", &value).unwrap();
    assert_eq!(
        p.steps[0].reads,
        vec!["sales.csv".to_string(), "x.csv".to_string()]
    );
    assert_eq!(
        p.steps[0].writes,
        vec!["out.csv".to_string(), "chart.png".to_string()]
    );
    assert_eq!(plain_name("sub/x.csv"), "sub/x.csv");
}

#[test]
fn model_json_round_trips_and_ignores_extra_fields() {
    let value = json!({"steps": [{"id": "a", "title": "t", "instruction": "i", "kind": "verify",
        "depends_on": [], "reads": [], "writes": [], "note": "extra"}]});
    let p = Plan::from_model("g", &value).unwrap();
    assert_eq!(p.steps[0].kind, StepKind::Verify);
    assert_eq!(p.steps_json()["steps"][0].get("note"), None);
    assert!(crate::llm::schema::validate(&schema(&Limits::default()), &p.steps_json()).is_ok());
}

#[test]
fn answer_placeholders_and_files_among_the_variables_are_read_as_meant() {
    let value = serde_json::json!({"steps": [{"id": "a", "title": "t", "instruction": "i", "kind": "verify",
        "produces": ["top_region[name]", "revenue_2023.png", "total", "@outlier_count"], "uses": ["df[x]"]}]});
    let plan = Plan::from_model("g", &value).unwrap();
    let step = &plan.steps[0];
    assert_eq!(step.produces, vec!["top_region", "total", "outlier_count"]);
    assert_eq!(step.writes, vec!["revenue_2023.png"]);
    assert_eq!(step.uses, Vec::<String>::new(), "no ancestor produces df");
    assert_eq!(
        step.kind,
        StepKind::Action,
        "a step that produces values is no check"
    );
}

#[test]
fn a_model_s_uses_keep_only_what_ancestors_produce() {
    let value = serde_json::json!({"steps": [
        {"id": "load", "title": "t", "instruction": "i", "kind": "action", "produces": ["df"], "uses": ["df"]},
        {"id": "corr", "title": "t", "instruction": "i", "kind": "action", "depends_on": ["load"],
         "produces": ["r"], "uses": ["df", "r", "elsewhere"]}]});
    let plan = Plan::from_model("g", &value).unwrap();
    assert_eq!(plan.steps[0].uses, Vec::<String>::new());
    assert_eq!(plan.steps[1].uses, vec!["df"]);
}
