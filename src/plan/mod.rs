//! Plans: a goal broken into code-oriented steps forming a dependency graph, each naming the
//! files it reads and writes, and the graph queries on it (ancestors, cycles, the ready-set
//! that drives parallel scheduling).

mod fuse;
mod json;
#[cfg(test)]
mod tests;
mod tree;
mod validate;

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use fuse::is_chart;
pub use json::{plain_name, schema};
pub use tree::{depths, render_tree};
pub use validate::{PlanError, valid_file_name, valid_variable};

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
    /// Top-level variables its script leaves for the steps after it (a DataFrame, a number,
    /// a fitted model...): checked after it runs.
    #[serde(default)]
    pub produces: Vec<String>,
    /// Variables its script uses that steps it depends on produce; they are loaded before
    /// the script starts.
    #[serde(default)]
    pub uses: Vec<String>,
}

#[cfg(test)]
impl Step {
    /// Step `id` of `kind` after `deps`, titled by its id: no files, no variables.
    pub(crate) fn for_test(id: &str, deps: &[&str], kind: StepKind) -> Step {
        Step {
            id: id.into(),
            title: id.into(),
            instruction: format!("Do {id}."),
            kind,
            depends_on: deps.iter().map(|d| (*d).to_string()).collect(),
            reads: Vec::new(),
            writes: Vec::new(),
            fallback: None,
            produces: Vec::new(),
            uses: Vec::new(),
        }
    }
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

impl Plan {
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

    /// Make each of `files` a required output: one no step writes goes to the writes of the
    /// last step that ends the analysis (an action nothing depends on). Returns the (file,
    /// step) pairs added.
    pub fn require_outputs(&mut self, files: &[String]) -> Vec<(String, String)> {
        let last_id = self
            .topological_order()
            .into_iter()
            .rev()
            .find(|s| {
                s.kind == StepKind::Action
                    && !self.steps.iter().any(|d| d.depends_on.contains(&s.id))
            })
            .map(|s| s.id.clone());
        let Some(last_id) = last_id else {
            return Vec::new();
        };
        let mut added = Vec::new();
        for file in files {
            if !valid_file_name(file) || self.steps.iter().any(|s| s.writes.contains(file)) {
                continue;
            }
            if let Some(step) = self.steps.iter_mut().find(|s| s.id == last_id) {
                step.writes.push(file.clone());
                added.push((file.clone(), last_id.clone()));
            }
        }
        added
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

    /// Which step produces the variable `name`, if any (the last in plan order).
    pub fn producer_of(&self, name: &str) -> Option<&Step> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.produces.iter().any(|p| p == name))
    }

    /// Which step writes `file`, if any.
    pub fn writer_of(&self, file: &str) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.writes.iter().any(|w| w == file))
    }
}
