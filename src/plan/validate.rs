//! Why a plan is refused: the checks it must pass before anything runs (ids, text sizes,
//! file names, dependencies, cycles, who writes and who may read each file).

use std::collections::{BTreeMap, HashMap};

use super::{Limits, Plan};

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
    /// A variable used that no ancestor produces.
    #[error(
        "step {step:?} uses variable {name:?}, which no step it depends on (directly or not) produces: add it to that step's \"produces\" or depend on the step that does"
    )]
    UnavailableVariable {
        /// The step.
        step: String,
        /// The variable.
        name: String,
    },
    /// A variable name Python cannot bind.
    #[error(
        "step {step:?} names variable {name:?}: use a Python identifier such as monthly or by_region"
    )]
    BadVariableName {
        /// The step.
        step: String,
        /// The name.
        name: String,
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

/// A name the runner keeps between steps: an ASCII identifier that does not start with `_`
/// (private names are not kept) and is not a Python keyword.
pub fn valid_variable(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let mut chars = name.chars();
    (1..=60).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
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
            for name in step.produces.iter().chain(&step.uses) {
                if !valid_variable(name) {
                    errors.push(PlanError::BadVariableName {
                        step: step.id.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        for step in &self.steps {
            let ancestors = self.ancestors(&step.id);
            for name in &step.uses {
                let produced = self
                    .steps
                    .iter()
                    .any(|s| ancestors.contains(&s.id) && s.produces.contains(name));
                if valid_variable(name) && !produced {
                    errors.push(PlanError::UnavailableVariable {
                        step: step.id.clone(),
                        name: name.clone(),
                    });
                }
            }
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
}
