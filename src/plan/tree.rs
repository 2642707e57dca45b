//! The plan drawn as an indented text tree, and the dependency depth of each step that both
//! this tree and the report's graph lay steps out by.

use std::collections::HashMap;

use super::{Plan, StepKind};

/// Draw the plan as an indented tree, each step under the last of its dependencies.
pub fn render_tree(plan: &Plan) -> String {
    let mut out = format!("goal: {}\n", plan.goal);
    let depth = depths(
        plan.steps
            .iter()
            .map(|s| (s.id.as_str(), s.depends_on.as_slice())),
    );
    for (i, step) in plan.steps.iter().enumerate() {
        let depth = depth[i].min(8);
        let branch = if i + 1 == plan.steps.len() {
            "└─"
        } else {
            "├─"
        };
        let kind = match step.kind {
            StepKind::Action => "",
            StepKind::Verify => " [verify]",
        };
        out.push_str(&format!(
            "{branch}{} {}: {}{kind}\n",
            "  ".repeat(depth),
            step.id,
            step.title
        ));
        let rail = if i + 1 == plan.steps.len() {
            " "
        } else {
            "│"
        };
        let pad = format!("{rail} {}   ", "  ".repeat(depth));
        if !step.depends_on.is_empty() {
            out.push_str(&format!("{pad}after: {}\n", step.depends_on.join(", ")));
        }
        if !step.reads.is_empty() {
            out.push_str(&format!("{pad}reads: {}\n", step.reads.join(", ")));
        }
        if !step.uses.is_empty() {
            out.push_str(&format!("{pad}uses: {}\n", step.uses.join(", ")));
        }
        if !step.produces.is_empty() {
            out.push_str(&format!("{pad}produces: {}\n", step.produces.join(", ")));
        }
        if !step.writes.is_empty() {
            out.push_str(&format!("{pad}writes: {}\n", step.writes.join(", ")));
        }
    }
    out
}

/// Depth of each step, given as (id, depends_on): 0 without dependencies, else one more than
/// its deepest dependency. Unknown dependencies are ignored, and a cycle cannot loop forever
/// (depth stops at the number of steps).
pub fn depths<'a>(steps: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Vec<usize> {
    let steps: Vec<(&str, &[String])> = steps.into_iter().collect();
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let mut depth = vec![0; steps.len()];
    for _ in 0..steps.len() {
        let mut changed = false;
        for (i, (_, deps)) in steps.iter().enumerate() {
            for dep in *deps {
                if let Some(&j) = index.get(dep.as_str()) {
                    let want = (depth[j] + 1).min(steps.len());
                    if want > depth[i] {
                        depth[i] = want;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}
