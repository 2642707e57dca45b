//! Plans: a goal broken into code-oriented steps forming a dependency graph, each naming the
//! files it reads and writes; the checks a plan must pass before anything runs; and the
//! ready-set that drives parallel scheduling.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Computes something and writes files or prints results.
    Action,
    /// Checks what earlier steps produced and fails loudly when it is wrong.
    Verify,
}

/// One step: small enough for one short Python script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id (letters, digits, `_`, `-`).
    pub id: String,
    /// A short title for people.
    pub title: String,
    /// What the script must do, precisely.
    pub instruction: String,
    /// Action or verify.
    pub kind: StepKind,
    /// Ids of the steps this one needs.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Files it reads: inputs, or files written by its ancestors.
    #[serde(default)]
    pub reads: Vec<String>,
    /// Files it writes (plain names in its output folder).
    #[serde(default)]
    pub writes: Vec<String>,
    /// Another way to do the step (an instruction), tried when the step still fails after
    /// its repairs, before any replan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A goal and its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The user's goal.
    pub goal: String,
    /// The steps, in the order the model gave them.
    pub steps: Vec<Step>,
}

/// Limits a plan must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most steps.
    pub max_steps: usize,
    /// Longest title.
    pub max_title: usize,
    /// Longest instruction.
    pub max_instruction: usize,
    /// Most files a step reads or writes.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 12,
            max_title: 120,
            max_instruction: 2000,
            max_files: 16,
        }
    }
}

/// Why a plan was refused; each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No steps.
    #[error("the plan has no steps")]
    Empty,
    /// Too many steps.
    #[error("the plan has {0} steps; at most {1} are allowed: merge small steps")]
    TooManySteps(usize, usize),
    /// A bad id.
    #[error("step id {0:?} must be 1-40 letters, digits, '_' or '-'")]
    BadId(String),
    /// An id used twice.
    #[error("step id {0:?} is used by more than one step")]
    DuplicateId(String),
    /// A dependency on nothing.
    #[error("step {step:?} depends on unknown step {missing:?}")]
    UnknownDependency {
        /// The step.
        step: String,
        /// The id it names.
        missing: String,
    },
    /// A step depending on itself.
    #[error("step {0:?} depends on itself")]
    SelfDependency(String),
    /// A cycle.
    #[error("the steps form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A read that nothing provides.
    #[error(
        "step {step:?} reads {file:?}, which is neither an input nor written by a step it depends on (directly or not)"
    )]
    UnavailableRead {
        /// The step.
        step: String,
        /// The file.
        file: String,
    },
    /// Two writers of one file.
    #[error("{file:?} is written by both {first:?} and {second:?}: give each output its own name")]
    DuplicateWrite {
        /// The file.
        file: String,
        /// First writer.
        first: String,
        /// Second writer.
        second: String,
    },
    /// A file name that is a path.
    #[error("step {step:?} names file {file:?}: use plain file names (no folders, no '..')")]
    BadFileName {
        /// The step.
        step: String,
        /// The name.
        file: String,
    },
    /// A written file without an extension: the script cannot tell its format, and writes
    /// `name.csv` where the plan expects `name`.
    #[error(
        "step {step:?} writes {file:?}: give it an extension that says its format (such as {file}.csv, {file}.png or {file}.json)"
    )]
    NoExtension {
        /// The step.
        step: String,
        /// The name.
        file: String,
    },
    /// A text over its limit.
    #[error("step {step:?}: {field} is {len} characters; at most {max} are allowed")]
    TooLong {
        /// The step.
        step: String,
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An empty text.
    #[error("step {step:?}: {field} is empty")]
    EmptyField {
        /// The step.
        step: String,
        /// Which field.
        field: &'static str,
    },
}

fn valid_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A plain file name: no separators, not `.`/`..`, no control characters, not too long.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 120
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

impl Plan {
    /// Every problem with the plan, given the names of the input files. Empty when valid.
    pub fn validate(&self, inputs: &[String], limits: &Limits) -> Vec<PlanError> {
        let mut errors = Vec::new();
        if self.steps.is_empty() {
            return vec![PlanError::Empty];
        }
        if self.steps.len() > limits.max_steps {
            errors.push(PlanError::TooManySteps(self.steps.len(), limits.max_steps));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            if !valid_id(&step.id) {
                errors.push(PlanError::BadId(step.id.clone()));
            }
            if ids.insert(step.id.as_str(), i).is_some() {
                errors.push(PlanError::DuplicateId(step.id.clone()));
            }
            let fallback = step
                .fallback
                .as_ref()
                .map(|text| ("fallback", text, limits.max_instruction));
            for (field, text, max) in [
                ("title", &step.title, limits.max_title),
                ("instruction", &step.instruction, limits.max_instruction),
            ]
            .into_iter()
            .chain(fallback)
            {
                let len = text.chars().count();
                if text.trim().is_empty() {
                    errors.push(PlanError::EmptyField {
                        step: step.id.clone(),
                        field,
                    });
                } else if len > max {
                    errors.push(PlanError::TooLong {
                        step: step.id.clone(),
                        field,
                        len,
                        max,
                    });
                }
            }
            for (field, files) in [("reads", &step.reads), ("writes", &step.writes)] {
                if files.len() > limits.max_files {
                    errors.push(PlanError::TooLong {
                        step: step.id.clone(),
                        field,
                        len: files.len(),
                        max: limits.max_files,
                    });
                }
                for file in files {
                    if !valid_file_name(file) {
                        errors.push(PlanError::BadFileName {
                            step: step.id.clone(),
                            file: file.clone(),
                        });
                    }
                }
            }
        }
        for step in &self.steps {
            for dep in &step.depends_on {
                if dep == &step.id {
                    errors.push(PlanError::SelfDependency(step.id.clone()));
                } else if !ids.contains_key(dep.as_str()) {
                    errors.push(PlanError::UnknownDependency {
                        step: step.id.clone(),
                        missing: dep.clone(),
                    });
                }
            }
        }
        let mut writers: BTreeMap<&str, &str> = BTreeMap::new();
        for step in &self.steps {
            for file in &step.writes {
                if valid_file_name(file) && !file.trim_start_matches('.').contains('.') {
                    errors.push(PlanError::NoExtension {
                        step: step.id.clone(),
                        file: file.clone(),
                    });
                }
                if let Some(first) = writers.insert(file.as_str(), step.id.as_str())
                    && first != step.id
                {
                    errors.push(PlanError::DuplicateWrite {
                        file: file.clone(),
                        first: first.to_string(),
                        second: step.id.clone(),
                    });
                }
            }
        }
        for step in &self.steps {
            for file in &step.writes {
                if inputs.contains(file) {
                    errors.push(PlanError::DuplicateWrite {
                        file: file.clone(),
                        first: "the inputs".into(),
                        second: step.id.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            errors.push(PlanError::Cycle(cycle));
            return errors;
        }
        for step in &self.steps {
            let ancestors = self.ancestors(&step.id);
            for file in &step.reads {
                let from_input = inputs.iter().any(|i| i == file);
                let from_ancestor = writers
                    .get(file.as_str())
                    .is_some_and(|w| ancestors.contains(*w));
                if !from_input && !from_ancestor {
                    errors.push(PlanError::UnavailableRead {
                        step: step.id.clone(),
                        file: file.clone(),
                    });
                }
            }
        }
        errors
    }

    fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// A cycle through the dependency edges (ids, first repeated at the end), if any.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state: HashMap<&str, u8> = HashMap::new();
        fn visit<'a>(
            plan: &'a Plan,
            id: &'a str,
            state: &mut HashMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match state.get(id) {
                Some(2) => return None,
                Some(1) => {
                    let start = path.iter().position(|p| *p == id).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..]
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect();
                    cycle.push(id.to_string());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(id, 1);
            path.push(id);
            if let Some(step) = plan.step(id) {
                for dep in &step.depends_on {
                    if dep != id
                        && plan.step(dep).is_some()
                        && let Some(cycle) = visit(plan, dep, state, path)
                    {
                        return Some(cycle);
                    }
                }
            }
            path.pop();
            state.insert(id, 2);
            None
        }
        for step in &self.steps {
            let mut path = Vec::new();
            if let Some(cycle) = visit(self, &step.id, &mut state, &mut path) {
                return Some(cycle);
            }
        }
        None
    }

    /// Every step `id` depends on, directly or not.
    pub fn ancestors(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = self
            .step(id)
            .map(|s| s.depends_on.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(next) = stack.pop() {
            if seen.insert(next.to_string())
                && let Some(step) = self.step(next)
            {
                stack.extend(step.depends_on.iter().map(String::as_str));
            }
        }
        seen
    }

    /// Every step that depends on `id`, directly or not.
    pub fn descendants(&self, id: &str) -> BTreeSet<String> {
        self.steps
            .iter()
            .filter(|s| self.ancestors(&s.id).contains(id))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Steps not in `done` or `blocked` whose dependencies are all in `done`, in plan order.
    pub fn ready<'a>(
        &'a self,
        done: &BTreeSet<String>,
        started: &BTreeSet<String>,
    ) -> Vec<&'a Step> {
        self.steps
            .iter()
            .filter(|s| !done.contains(&s.id) && !started.contains(&s.id))
            .filter(|s| s.depends_on.iter().all(|d| done.contains(d)))
            .collect()
    }

    /// The steps with every step after its dependencies (plan order among equals). Assumes a
    /// validated plan; steps caught in a cycle are left out.
    pub fn topological_order(&self) -> Vec<&Step> {
        let mut done = BTreeSet::new();
        let mut order = Vec::new();
        loop {
            let ready = self.ready(&done, &BTreeSet::new());
            if ready.is_empty() {
                return order;
            }
            for step in ready {
                done.insert(step.id.clone());
                order.push(step);
            }
        }
    }

    /// Which step writes `file`, if any.
    pub fn writer_of(&self, file: &str) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.writes.iter().any(|w| w == file))
    }

    /// The JSON the model is asked for and that is stored: `{"steps": [...]}`.
    pub fn steps_json(&self) -> Value {
        json!({ "steps": self.steps })
    }

    /// Parse the model's `{"steps": [...]}` (extra fields ignored) into a plan for `goal`.
    pub fn from_model(goal: &str, value: &Value) -> Result<Plan, String> {
        #[derive(Deserialize)]
        struct Steps {
            steps: Vec<Step>,
        }
        let Steps { mut steps } =
            serde_json::from_value(value.clone()).map_err(|err| err.to_string())?;
        // Models echo the sandbox paths they were shown (/data/x.csv, ./x.csv): the plan
        // wants plain names, and these name the same file.
        for step in &mut steps {
            for name in step.reads.iter_mut().chain(step.writes.iter_mut()) {
                *name = plain_name(name);
            }
        }
        Ok(Plan {
            goal: goal.to_string(),
            steps,
        })
    }
}

/// `name` without a leading `/data/`, `data/`, `/out/`, `out/` or `./`.
pub fn plain_name(name: &str) -> String {
    let mut name = name.trim();
    for prefix in ["/data/", "data/", "/out/", "out/", "./"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    name.to_string()
}

/// The JSON Schema of a plan, as given to the model.
pub fn schema(limits: &Limits) -> Value {
    json!({
        "type": "object",
        "required": ["steps"],
        "additionalProperties": false,
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.max_steps,
                "items": {
                    "type": "object",
                    "required": ["id", "title", "instruction", "kind", "depends_on", "reads", "writes"],
                    "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 40},
                        "title": {"type": "string", "minLength": 1, "maxLength": limits.max_title},
                        "instruction": {"type": "string", "minLength": 1, "maxLength": limits.max_instruction},
                        "kind": {"type": "string", "enum": ["action", "verify"]},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                        "reads": {"type": "array", "items": {"type": "string"}},
                        "writes": {"type": "array", "items": {"type": "string"}},
                        "fallback": {"type": "string", "maxLength": limits.max_instruction}
                    }
                }
            }
        }
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

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
}
