//! Chains fused: a step whose only dependent is the next step, which depends on it alone,
//! gains nothing from a container boundary, since the two share every variable anyway; a
//! small model plans a step per operation (read, filter, group, sum), and each hand-off is a
//! chance to lose a column. Fusing keeps the plan's real structure: branches that run in
//! parallel, checks, and steps several others need.
//!
//! Before fusing, an edge to a dependency that another dependency already descends from is
//! dropped: that other dependency's state holds the first one's variables, and its files stay
//! readable (a step reads what any ancestor wrote). A model that lists every earlier step
//! (read -> skew -> print, print also on read) otherwise hides a chain behind a diamond.

use super::{Plan, Step, StepKind};

impl Plan {
    /// The plan with every such chain of action steps fused into one step (the last one's
    /// id, so its dependents still find it), its instructions numbered in order, as long as
    /// the fused instruction stays within `max_instruction` characters; a file no other step
    /// reads and the goal does not name is no longer required of its step. Returns the fused
    /// plan and, per fused step, the ids it absorbed.
    pub fn fuse_chains(&self, limits: &super::Limits) -> (Plan, Vec<(String, Vec<String>)>) {
        let mut steps = self.without_implied_edges().steps;
        let mut fused: Vec<(String, Vec<String>)> = Vec::new();
        while let Some((first, second)) = next_pair(&steps, limits) {
            let a = steps[first].clone();
            let b = &mut steps[second];
            let mut absorbed_before = fused
                .iter()
                .position(|(id, _)| id == &a.id)
                .map(|i| fused.remove(i).1)
                .unwrap_or_default();
            absorbed_before.push(a.id.clone());
            b.instruction = format!("{}\n{}", numbered(&a, 1), numbered_rest(b, &a));
            b.title = short(&format!("{}; {}", a.title, b.title), limits.max_title);
            b.depends_on = a.depends_on.clone();
            b.reads = union(
                &a.reads,
                &b.reads
                    .iter()
                    .filter(|r| !a.writes.contains(r))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            b.writes = union(&a.writes, &b.writes);
            b.uses = a
                .uses
                .iter()
                .chain(b.uses.iter().filter(|u| !a.produces.contains(u)))
                .cloned()
                .fold(Vec::new(), |mut all, u| {
                    if !all.contains(&u) {
                        all.push(u);
                    }
                    all
                });
            b.produces = union(&a.produces, &b.produces);
            b.fallback = None;
            let id = b.id.clone();
            let mut absorbed = absorbed_before;
            if let Some(i) = fused.iter().position(|(f, _)| f == &id) {
                absorbed.extend(fused.remove(i).1);
            }
            fused.push((id, absorbed));
            steps.remove(first);
        }
        // A file is declared for a hand-off or for the person: one that no other step reads
        // and the goal does not name (a fused step's parts wrote it to hand to each other, or
        // the model named an intermediate table nothing takes) is not required of its step,
        // where a script that keeps the table as a variable would fail on it. It stays
        // declared when the goal names it, it is a chart (and the goal names none), or
        // another step reads it.
        let reads: Vec<(String, Vec<String>)> = steps
            .iter()
            .map(|s| (s.id.clone(), s.reads.clone()))
            .collect();
        // When the goal names its chart, a chart of another name is the model's invention.
        let goal_names_a_chart = self
            .goal
            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .any(|word| is_chart(word.trim_end_matches(['.', ';', ':'])));
        for step in steps.iter_mut() {
            step.writes.retain(|w| {
                self.goal.contains(w.as_str())
                    || (is_chart(w) && !goal_names_a_chart)
                    || reads.iter().any(|(id, r)| id != &step.id && r.contains(w))
            });
        }
        (
            Plan {
                goal: self.goal.clone(),
                steps,
            },
            fused,
        )
    }

    /// The plan with each step's implied dependencies dropped: `d` goes from a step's
    /// `depends_on` when another of its dependencies has `d` as an ancestor. Order and every
    /// other field stay; the set of ancestors of each step is unchanged.
    pub fn without_implied_edges(&self) -> Plan {
        let mut plan = self.clone();
        for step in &mut plan.steps {
            let all = step.depends_on.clone();
            step.depends_on
                .retain(|d| !all.iter().any(|other| self.ancestors(other).contains(d)));
        }
        plan
    }
}

/// The first (a, b) pair to fuse: b depends on a alone, a's only dependent is b, both act.
fn next_pair(steps: &[Step], limits: &super::Limits) -> Option<(usize, usize)> {
    steps.iter().enumerate().find_map(|(i, a)| {
        let dependents: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.depends_on.contains(&a.id))
            .map(|(j, _)| j)
            .collect();
        let [j] = dependents[..] else {
            return None;
        };
        let b = &steps[j];
        // The fused step must still pass validation (a replan validates kept steps again).
        let files = |x: &[String], y: &[String]| union(x, y).len() <= limits.max_files;
        let fits = a.instruction.chars().count() + b.instruction.chars().count() + 16
            <= limits.max_instruction
            && files(&a.reads, &b.reads)
            && files(&a.writes, &b.writes);
        (b.depends_on == [a.id.clone()]
            && a.kind == StepKind::Action
            && b.kind == StepKind::Action
            && a.fallback.is_none()
            && fits)
            .then_some((i, j))
    })
}

/// `a`'s instruction as the first of a numbered list (already numbered when it was fused).
fn numbered(a: &Step, n: usize) -> String {
    if a.instruction.starts_with("1. ") {
        a.instruction.clone()
    } else {
        format!("{n}. {}", a.instruction)
    }
}

/// `b`'s instruction numbered after `a`'s items.
fn numbered_rest(b: &Step, a: &Step) -> String {
    let after = numbered(a, 1).lines().filter(|l| is_item(l)).count();
    format!("{}. {}", after + 1, b.instruction)
}

fn is_item(line: &str) -> bool {
    line.split_once(". ")
        .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether `file` is a picture by its extension (a chart, for people).
pub fn is_chart(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    [".png", ".svg", ".jpg", ".jpeg", ".pdf"]
        .iter()
        .any(|e| lower.ends_with(e))
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut all = a.to_vec();
    for item in b {
        if !all.contains(item) {
            all.push(item.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn step(id: &str, deps: &[&str], kind: StepKind) -> Step {
        Step {
            produces: vec![format!("{id}_out")],
            uses: deps.iter().map(|d| format!("{d}_out")).collect(),
            ..Step::for_test(id, deps, kind)
        }
    }

    #[test]
    fn a_chain_of_operations_becomes_one_step_and_branches_stay() {
        // load -> filter -> group, then group feeds a chart and a sum in parallel, and a
        // check of the sum.
        let plan = Plan {
            goal: "g".into(),
            steps: vec![
                step("load", &[], StepKind::Action),
                step("filter", &["load"], StepKind::Action),
                step("group", &["filter"], StepKind::Action),
                step("chart", &["group"], StepKind::Action),
                step("sum", &["group"], StepKind::Action),
                step("check", &["sum"], StepKind::Verify),
            ],
        };
        let (fused, absorbed) = plan.fuse_chains(&super::super::Limits::default());
        let ids: Vec<&str> = fused.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["group", "chart", "sum", "check"]);
        let group = &fused.steps[0];
        assert_eq!(
            group.instruction,
            "1. Do load.\n2. Do filter.\n3. Do group."
        );
        assert_eq!(group.depends_on, Vec::<String>::new());
        assert_eq!(group.uses, Vec::<String>::new());
        assert_eq!(group.produces, vec!["load_out", "filter_out", "group_out"]);
        assert_eq!(
            absorbed,
            vec![(
                "group".to_string(),
                vec!["load".to_string(), "filter".to_string()]
            )]
        );
        assert!(
            fused
                .validate(&[], &super::super::Limits::default())
                .is_empty()
        );
    }

    #[test]
    fn a_file_handed_down_the_chain_is_no_longer_declared() {
        let mut load = step("load", &[], StepKind::Action);
        load.writes = vec!["clean.csv".into(), "summary.csv".into()];
        let mut sum = step("sum", &["load"], StepKind::Action);
        sum.reads = vec!["clean.csv".into()];
        sum.writes = vec!["total.txt".into(), "bars.png".into()];
        let plan = Plan {
            goal: "Save the summary in summary.csv.".into(),
            steps: vec![load, sum],
        };
        let (fused, _) = plan.fuse_chains(&super::super::Limits::default());
        assert_eq!(fused.steps[0].writes, vec!["summary.csv", "bars.png"]);
        let named = Plan {
            goal: "Chart it in revenue.png.".into(),
            ..plan
        };
        let (fused, _) = named.fuse_chains(&super::super::Limits::default());
        assert_eq!(
            fused.steps[0].writes,
            Vec::<String>::new(),
            "the goal names its chart"
        );
        assert_eq!(fused.steps[0].reads, Vec::<String>::new());
    }

    #[test]
    fn a_table_no_step_reads_is_not_required_of_an_unfused_step() {
        // Two branches join at `report`: nothing fuses. `grouped.csv` is read by no step,
        // `counts.csv` is read by `report`.
        let mut group = step("group", &[], StepKind::Action);
        group.writes = vec!["grouped.csv".into(), "counts.csv".into()];
        let mut other = step("other", &[], StepKind::Action);
        other.writes = vec!["extra.csv".into()];
        let mut report = step("report", &["group", "other"], StepKind::Action);
        report.reads = vec!["counts.csv".into(), "extra.csv".into()];
        report.writes = vec!["report.csv".into(), "scratch.csv".into()];
        let plan = Plan {
            goal: "Write report.csv.".into(),
            steps: vec![group, other, report],
        };
        let (fused, absorbed) = plan.fuse_chains(&super::super::Limits::default());
        assert!(absorbed.is_empty());
        let writes: Vec<(&str, Vec<&str>)> = fused
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.writes.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            writes,
            vec![
                ("group", vec!["counts.csv"]),
                ("other", vec!["extra.csv"]),
                ("report", vec!["report.csv"]),
            ]
        );
    }

    #[test]
    fn a_diamond_made_of_implied_edges_is_a_chain_and_fuses() {
        // read -> skew -> kurt -> print, where kurt and print also name read and skew.
        let plan = Plan {
            goal: "g".into(),
            steps: vec![
                step("read", &[], StepKind::Action),
                step("skew", &["read"], StepKind::Action),
                step("kurt", &["read", "skew"], StepKind::Action),
                step("print", &["skew", "kurt", "read"], StepKind::Action),
            ],
        };
        let reduced = plan.without_implied_edges();
        let deps: Vec<Vec<String>> = reduced.steps.iter().map(|s| s.depends_on.clone()).collect();
        assert_eq!(
            deps,
            vec![
                vec![],
                vec!["read".to_string()],
                vec!["skew".into()],
                vec!["kurt".into()]
            ]
        );
        for step in &plan.steps {
            assert_eq!(reduced.ancestors(&step.id), plan.ancestors(&step.id));
        }
        let (fused, absorbed) = plan.fuse_chains(&super::super::Limits::default());
        assert_eq!(fused.steps.len(), 1);
        assert_eq!(absorbed[0].1, vec!["read", "skew", "kurt"]);
        assert!(
            fused
                .validate(&[], &super::super::Limits::default())
                .is_empty()
        );
        // Two branches that both feed a join are not implied by each other: they stay.
        let branches = Plan {
            goal: "g".into(),
            steps: vec![
                step("read", &[], StepKind::Action),
                step("left", &["read"], StepKind::Action),
                step("right", &["read"], StepKind::Action),
                step("join", &["left", "right"], StepKind::Action),
            ],
        };
        assert_eq!(branches.without_implied_edges(), branches);
    }

    #[test]
    fn nothing_is_fused_past_the_instruction_limit() {
        let plan = Plan {
            goal: "g".into(),
            steps: vec![
                step("a", &[], StepKind::Action),
                step("b", &["a"], StepKind::Action),
            ],
        };
        let limits = super::super::Limits {
            max_instruction: 10,
            ..super::super::Limits::default()
        };
        let (fused, absorbed) = plan.fuse_chains(&limits);
        assert_eq!(fused, plan);
        assert!(absorbed.is_empty());
    }
}
