//! The plan as JSON: the schema the model is given, the `{"steps": [...]}` it replies with
//! (sandbox paths made plain), and the form that is stored.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Limits, Plan, Step};

impl Plan {
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
            // Models put answer placeholders (`@top[name]`) and files (`chart.png`) among the
            // variables: the name between `@` and the brackets is the variable, a file is
            // written.
            for name in std::mem::take(&mut step.produces) {
                let name = placeholder_name(&name);
                if super::valid_file_name(&name) && name.contains('.') {
                    if !step.writes.contains(&name) {
                        step.writes.push(name);
                    }
                } else if !name.is_empty() && !step.produces.contains(&name) {
                    step.produces.push(name);
                }
            }
            for name in &mut step.uses {
                *name = placeholder_name(name);
            }
            // A check leaves nothing behind: a "verify" step that produces values computes
            // them, and its script must not be asked to assert instead.
            if step.kind == super::StepKind::Verify && !step.produces.is_empty() {
                step.kind = super::StepKind::Action;
            }
        }
        let mut plan = Plan {
            goal: goal.to_string(),
            steps,
        };
        plan.mend_uses();
        Ok(plan)
    }

    /// Drop from each step's `uses` the names no ancestor produces. `uses` only tells the
    /// script what to expect: it gets every variable its dependencies left either way, and
    /// its request lists those. A small model often names there what the step itself makes;
    /// sending the plan back for it costs a whole plan's tokens and rarely mends it.
    fn mend_uses(&mut self) {
        let produced: Vec<(String, std::collections::BTreeSet<String>)> = self
            .steps
            .iter()
            .map(|step| {
                let ancestors = self.ancestors(&step.id);
                let names = self
                    .steps
                    .iter()
                    .filter(|s| ancestors.contains(&s.id))
                    .flat_map(|s| s.produces.iter().cloned())
                    .collect();
                (step.id.clone(), names)
            })
            .collect();
        for (step, (_, names)) in self.steps.iter_mut().zip(produced) {
            step.uses.retain(|u| names.contains(u));
        }
    }
}

/// The variable an answer placeholder names: `outlier_count` for `@outlier_count[value]`.
fn placeholder_name(name: &str) -> String {
    let name = name.split('[').next().unwrap_or_default().trim();
    name.strip_prefix('@').unwrap_or(name).trim().to_string()
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
                        "produces": {"type": "array", "items": {"type": "string"}},
                        "uses": {"type": "array", "items": {"type": "string"}},
                        "fallback": {"type": "string", "maxLength": limits.max_instruction}
                    }
                }
            }
        }
    })
}
