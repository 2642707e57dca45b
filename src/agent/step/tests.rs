use super::*;
use crate::plan::StepKind;

fn step(id: &str, deps: &[&str], writes: &[&str], kind: StepKind) -> Step {
    Step {
        writes: writes.iter().map(|w| (*w).to_string()).collect(),
        ..Step::for_test(id, deps, kind)
    }
}

#[test]
fn only_computing_end_steps_end_the_analysis() {
    let plan = Plan {
        goal: "g".into(),
        steps: vec![
            step("load", &[], &["clean.csv"], StepKind::Action),
            step("growth", &["load"], &[], StepKind::Action),
            step("chart", &["load"], &["Chart.PNG"], StepKind::Action),
            step("check", &["load"], &[], StepKind::Verify),
        ],
    };
    let ends = |id: &str| ends_analysis(&plan, plan.steps.iter().find(|s| s.id == id).unwrap());
    assert!(ends("growth"));
    assert!(!ends("load"), "other steps depend on it");
    assert!(!ends("chart"), "it draws, and growth computes");
    assert!(!ends("check"), "it checks");
    let fused = Plan {
        goal: "g".into(),
        steps: vec![step("all", &[], &["bars.png"], StepKind::Action)],
    };
    assert!(
        ends_analysis(&fused, &fused.steps[0]),
        "the only last step draws and computes"
    );
}
