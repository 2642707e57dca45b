//! The plan drawn as an inline SVG graph: steps in rows by dependency depth, an arrow per
//! `depends_on`, each node coloured by status and linked to its section of the report.

use std::collections::HashMap;
use std::fmt::Write;

use super::StepView;
use super::markup::{class, escape};
use crate::plan::StepKind;

const NODE_W: usize = 220;
const NODE_H: usize = 62;
const GAP_X: usize = 36;
const GAP_Y: usize = 52;
const PAD: usize = 12;
/// Title characters that fit on a node at the report's font size.
const TITLE_CHARS: usize = 28;

fn depths(steps: &[StepView]) -> Vec<usize> {
    crate::plan::depths(
        steps
            .iter()
            .map(|v| (v.step.id.as_str(), v.step.depends_on.as_slice())),
    )
}

/// Top-left corner of each node: rows by depth, centred; within a row, plan order, then
/// re-sorted once by the mean column of each step's dependencies to uncross edges.
fn layout(steps: &[StepView]) -> (Vec<(usize, usize)>, usize, usize) {
    let depth = depths(steps);
    let rows = depth.iter().max().map_or(0, |d| d + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); rows];
    for (i, &d) in depth.iter().enumerate() {
        members[d].push(i);
    }
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.step.id.as_str(), i))
        .collect();
    let mut slot = vec![0.0f64; steps.len()];
    for row in &mut members {
        let key = |i: &usize| {
            let parents: Vec<f64> = steps[*i]
                .step
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).map(|&j| slot[j]))
                .collect();
            if parents.is_empty() {
                *i as f64
            } else {
                parents.iter().sum::<f64>() / parents.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|i| (key(i), *i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *row = keyed.into_iter().map(|(_, i)| i).collect();
        let centre = (row.len() as f64 - 1.0) / 2.0;
        for (k, &i) in row.iter().enumerate() {
            slot[i] = k as f64 - centre;
        }
    }
    let widest = members.iter().map(Vec::len).max().unwrap_or(0);
    let width = PAD * 2 + widest * NODE_W + widest.saturating_sub(1) * GAP_X;
    let height = PAD * 2 + rows * NODE_H + rows.saturating_sub(1) * GAP_Y;
    let mut at = vec![(0, 0); steps.len()];
    for (d, row) in members.iter().enumerate() {
        let used = row.len() * NODE_W + row.len().saturating_sub(1) * GAP_X;
        let left = (width - used) / 2;
        for (k, &i) in row.iter().enumerate() {
            at[i] = (left + k * (NODE_W + GAP_X), PAD + d * (NODE_H + GAP_Y));
        }
    }
    (at, width, height)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

/// The plan as an `<svg>` element (no external references; sized by its viewBox).
pub(crate) fn svg(steps: &[StepView]) -> String {
    let (at, width, height) = layout(steps);
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.step.id.as_str(), i))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"plan\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"plan graph\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#6b7280\"/></marker></defs>"
    );
    // Edges first, so nodes sit on top of any edge that passes behind them.
    for (i, view) in steps.iter().enumerate() {
        for dep in &view.step.depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            let (x1, y1) = (at[j].0 + NODE_W / 2, at[j].1 + NODE_H);
            let (x2, y2) = (at[i].0 + NODE_W / 2, at[i].1);
            let bend = (y2.saturating_sub(y1) / 2).max(20);
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"M{x1},{y1} C{x1},{} {x2},{} {x2},{y2}\" marker-end=\"url(#arrow)\"><title>{} → {}</title></path>",
                y1 + bend,
                y2.saturating_sub(bend),
                escape(dep),
                escape(&view.step.id)
            );
        }
    }
    for (view, &(x, y)) in steps.iter().zip(&at) {
        let step = &view.step;
        let status = class(view.status);
        let verify = step.kind == StepKind::Verify;
        let _ = write!(
            out,
            "<a href=\"#step-{}\"><g class=\"node {status}{}\"><title>{}: {}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"8\"/>",
            escape(&step.id),
            if verify { " verify" } else { "" },
            escape(&step.id),
            escape(&step.title)
        );
        if verify {
            // A second, inner border marks checks apart from actions at a glance.
            let _ = write!(
                out,
                "<rect class=\"inner\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"5\"/>",
                x + 4,
                y + 4,
                NODE_W - 8,
                NODE_H - 8
            );
        }
        let attempts = match view.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" class=\"id\">{}{}</text>\
             <text x=\"{}\" y=\"{}\" class=\"title\">{}</text>\
             <text x=\"{}\" y=\"{}\" class=\"meta\">{} · {attempts}</text></g></a>",
            x + 12,
            y + 19,
            escape(&shorten(&step.id, TITLE_CHARS - 4)),
            if verify { " ✓ verify" } else { "" },
            x + 12,
            y + 36,
            escape(&shorten(&step.title, TITLE_CHARS)),
            x + 12,
            y + 53,
            view.status.label()
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;
    use crate::report::StepStatus;

    fn view(id: &str, deps: &[&str], status: StepStatus, kind: StepKind) -> StepView {
        StepView {
            step: Step {
                id: id.into(),
                title: format!("title of {id}"),
                instruction: String::new(),
                kind,
                depends_on: deps.iter().map(std::string::ToString::to_string).collect(),
                reads: vec![],
                writes: vec![],
                fallback: None,
                produces: Vec::new(),
                uses: Vec::new(),
            },
            status,
            attempts: usize::from(status != StepStatus::NotRun),
            last: None,
        }
    }

    #[test]
    fn one_node_per_step_and_one_edge_per_dependency() {
        let steps = vec![
            view("load", &[], StepStatus::Done, StepKind::Action),
            view("north", &["load"], StepStatus::Done, StepKind::Action),
            view("south", &["load"], StepStatus::Failed, StepKind::Action),
            view(
                "total",
                &["north", "south"],
                StepStatus::NotRun,
                StepKind::Action,
            ),
            view(
                "check",
                &["total", "load"],
                StepStatus::NotRun,
                StepKind::Verify,
            ),
        ];
        let svg = svg(&steps);
        assert_eq!(svg.matches("<g class=\"node ").count(), 5, "{svg}");
        assert_eq!(svg.matches("class=\"edge\"").count(), 6, "{svg}");
        assert_eq!(svg.matches("class=\"node done\"").count(), 2);
        assert_eq!(svg.matches("class=\"node failed\"").count(), 1);
        assert_eq!(svg.matches("class=\"node notrun").count(), 2);
        assert_eq!(svg.matches("class=\"node notrun verify\"").count(), 1);
        assert!(svg.contains("href=\"#step-south\""));
    }

    #[test]
    fn rows_follow_dependency_depth() {
        let steps = vec![
            view("c", &["b"], StepStatus::Done, StepKind::Action),
            view("a", &[], StepStatus::Done, StepKind::Action),
            view("b", &["a"], StepStatus::Done, StepKind::Action),
            view("d", &["a", "c"], StepStatus::Done, StepKind::Action),
        ];
        assert_eq!(depths(&steps), vec![2, 0, 1, 3]);
        let (at, _, height) = layout(&steps);
        assert!(at[1].1 < at[2].1 && at[2].1 < at[0].1 && at[0].1 < at[3].1);
        assert_eq!(height, PAD * 2 + 4 * NODE_H + 3 * GAP_Y);
    }

    #[test]
    fn a_cycle_or_an_unknown_dependency_still_draws() {
        let steps = vec![
            view("a", &["b", "ghost"], StepStatus::Done, StepKind::Action),
            view("b", &["a"], StepStatus::Done, StepKind::Action),
        ];
        let svg = svg(&steps);
        assert_eq!(svg.matches("<g class=\"node ").count(), 2);
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
    }
}
