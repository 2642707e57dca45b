//! The variables finished steps left, as the run folder keeps them: which states a step loads
//! (its direct dependencies', in plan order), and which variable of which dependency it
//! actually gets, by the runner's own rule, so its prompt can say so.

use std::path::PathBuf;

use super::RunFolder;
use crate::plan::{Plan, Step};
pub use crate::prompt::variables::Inherited;
use crate::sandbox::state::{self, Description};

impl RunFolder {
    /// The folder that holds the state an attempt left.
    pub fn state_dir(&self, step: &str, attempt: usize) -> PathBuf {
        self.dir
            .join("steps")
            .join(step)
            .join(format!("attempt-{attempt}"))
            .join("state")
    }

    /// The states `step` loads: its finished direct dependencies' that left one, in plan
    /// order, as (pickle path, step id, sha256).
    pub fn step_states(&self, plan: &Plan, step: &Step) -> Vec<(PathBuf, String, String)> {
        let done = self.state().done;
        plan.steps
            .iter()
            .filter(|s| step.depends_on.contains(&s.id))
            .filter_map(|dep| {
                let finished = done.get(&dep.id)?;
                let sha = finished.state.clone()?;
                let path = self
                    .state_dir(&dep.id, finished.attempt)
                    .join(state::STATE_FILE);
                path.is_file().then(|| (path, dep.id.clone(), sha))
            })
            .collect()
    }

    /// The description of what a finished step left, when it left variables (re-read under
    /// the same limits as at harvest).
    pub fn description(&self, step: &str) -> Option<Description> {
        let done = self.state().done.get(step)?.clone();
        done.state.as_ref()?;
        state::read(&self.state_dir(step, done.attempt))?.ok()
    }

    /// What `step` gets from each direct dependency's state, in plan order, applying the
    /// runner's rule: a later dependency wins a name, except that a value it only passed
    /// through never replaces one another dependency set.
    pub fn inherited(&self, plan: &Plan, step: &Step) -> Vec<(String, Inherited)> {
        let states: Vec<(String, Description)> = self
            .step_states(plan, step)
            .into_iter()
            .filter_map(|(_, dep, _)| Some((dep.clone(), self.description(&dep)?)))
            .collect();
        resolve(&states)
    }
}

/// The runner's load rule over descriptions, in load order.
pub fn resolve(states: &[(String, Description)]) -> Vec<(String, Inherited)> {
    // name -> (index of the dependency it comes from, its setter)
    let mut winner: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
    for (i, (dep, description)) in states.iter().enumerate() {
        for variable in &description.variables {
            let set_by = if variable.set_by.is_empty() {
                dep.as_str()
            } else {
                variable.set_by.as_str()
            };
            let passed_through = set_by != dep;
            if let Some((_, earlier)) = winner.get(variable.name.as_str())
                && passed_through
                && *earlier != set_by
            {
                continue;
            }
            winner.insert(&variable.name, (i, set_by));
        }
    }
    let mut imported: std::collections::BTreeSet<&str> = Default::default();
    states
        .iter()
        .enumerate()
        .map(|(i, (dep, description))| {
            let mut inherited = Inherited::default();
            // An import is the same whichever dependency made it: said once, where first.
            for import in &description.imports {
                if imported.insert(import.name.as_str()) {
                    inherited.imports.push(import.clone());
                }
            }
            for variable in &description.variables {
                let (from, _) = winner[variable.name.as_str()];
                if from == i {
                    inherited.variables.push(variable.clone());
                } else {
                    inherited
                        .replaced
                        .push((variable.name.clone(), states[from].0.clone()));
                }
            }
            inherited.skipped = description
                .skipped
                .iter()
                .map(|s| (s.name.clone(), s.why.clone()))
                .collect();
            (dep.clone(), inherited)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::state::Variable;
    use pretty_assertions::assert_eq;

    fn var(name: &str, set_by: &str) -> Variable {
        Variable {
            name: name.into(),
            kind: "int".into(),
            set_by: set_by.into(),
            bytes: 1,
            shape: None,
            columns: Vec::new(),
            dtype: None,
            index: None,
            sample: None,
            value: None,
            len: None,
        }
    }

    fn described(vars: Vec<Variable>) -> Description {
        Description {
            variables: vars,
            ..Description::default()
        }
    }

    #[test]
    fn a_later_dependency_wins_unless_it_only_passed_the_value_through() {
        // load -> clean (changes df), load -> stats (passes df through, sets mean),
        // and a name both set themselves: the later wins.
        let states = vec![
            (
                "clean".to_string(),
                described(vec![var("df", "clean"), var("n", "clean")]),
            ),
            (
                "stats".to_string(),
                described(vec![
                    var("df", "load"),
                    var("mean", "stats"),
                    var("n", "stats"),
                ]),
            ),
        ];
        let resolved = resolve(&states);
        let names = |i: usize| -> Vec<&str> {
            resolved[i]
                .1
                .variables
                .iter()
                .map(|v| v.name.as_str())
                .collect()
        };
        assert_eq!(names(0), vec!["df"]);
        assert_eq!(names(1), vec!["mean", "n"]);
        assert_eq!(resolved[0].1.replaced, vec![("n".into(), "stats".into())]);
        assert_eq!(resolved[1].1.replaced, vec![("df".into(), "clean".into())]);
    }
}
