//! Hierarchical planning: the goal split into sub-goals, each decomposed into steps unless
//! it is one step already, then flattened into one plan.

use super::*;

impl<L: Llm> Planner<'_, L> {
    /// Sub-goals first; each non-atomic one is planned as a graph over the files available to
    /// it, and its steps take its place. Bounded by `max_depth` and the step limit.
    pub(super) async fn hierarchical(&self, goal: &str, profiles: &[Profile]) -> Result<Plan> {
        let max = self.limits.max_steps.min(5);
        let mut schema = plan::schema(&Limits {
            max_steps: max,
            ..self.limits
        });
        schema["properties"]["steps"]["items"]["properties"]["atomic"] = json!({"type": "boolean"});
        let request = Request {
            schema: Some(Schema {
                decode: None,
                name: "subgoals".into(),
                schema,
            }),
            ..Request::new(prompt::subgoal_messages(goal, profiles, max))
        };
        let (value, _) = complete_json(self.llm, &request, self.reasks).await?;
        let atomic: Vec<bool> = value["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| s["atomic"].as_bool().unwrap_or(true))
                    .collect()
            })
            .unwrap_or_default();
        let outline = Plan::from_model(goal, &value).map_err(Error::LlmReply)?;
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let errors = outline.validate(&inputs, &self.limits);
        if !errors.is_empty() {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(Error::LlmReply(format!(
                "invalid sub-goals: {}",
                listed.join("; ")
            )));
        }
        let mut steps: Vec<Step> = Vec::new();
        // For each sub-goal, the ids of the steps that finish it (what dependents wait for).
        let mut finals: std::collections::HashMap<String, Vec<String>> = Default::default();
        let atomic: std::collections::HashMap<&str, bool> = outline
            .steps
            .iter()
            .map(|s| s.id.as_str())
            .zip(atomic)
            .collect();
        let order = outline.topological_order();
        for (index, sub) in order.iter().enumerate() {
            let remaining = order.len() - index - 1;
            let max_inner = self
                .limits
                .max_steps
                .saturating_sub(steps.len() + remaining)
                .min(6);
            let waits_for: Vec<String> = sub
                .depends_on
                .iter()
                .flat_map(|d| finals[d].clone())
                .collect();
            if atomic[sub.id.as_str()] || self.max_depth < 2 || max_inner < 2 {
                finals.insert(sub.id.clone(), vec![sub.id.clone()]);
                steps.push(Step {
                    depends_on: waits_for,
                    ..(*sub).clone()
                });
                continue;
            }
            let available: Vec<String> = inputs
                .iter()
                .cloned()
                .chain(sub.reads.iter().filter(|r| !inputs.contains(r)).cloned())
                .collect();
            let sub_goal = format!(
                "{} (part of: {goal}). Files available: {}. It must write: {}.",
                sub.instruction,
                available.join(", "),
                if sub.writes.is_empty() {
                    "nothing; print the result".to_string()
                } else {
                    sub.writes.join(", ")
                }
            );
            let request = self.plan_request(
                prompt::plan_messages(&sub_goal, profiles, Shape::Dag, max_inner),
                max_inner,
                max_inner,
            );
            let inner = self
                .ask_valid(
                    &sub_goal,
                    &available,
                    request,
                    Shape::Dag,
                    &Limits {
                        max_steps: max_inner,
                        ..self.limits
                    },
                )
                .await?;
            let prefix = |id: &str| format!("{}-{id}", sub.id);
            let inner_ids: Vec<String> = inner.steps.iter().map(|s| s.id.clone()).collect();
            let depended: std::collections::HashSet<&String> = inner
                .steps
                .iter()
                .flat_map(|s| s.depends_on.iter())
                .collect();
            finals.insert(
                sub.id.clone(),
                inner_ids
                    .iter()
                    .filter(|id| !depended.contains(id))
                    .map(|id| prefix(id))
                    .collect(),
            );
            for step in &inner.steps {
                let mut depends_on: Vec<String> =
                    step.depends_on.iter().map(|d| prefix(d)).collect();
                if step.depends_on.is_empty() {
                    depends_on.extend(waits_for.iter().cloned());
                }
                steps.push(Step {
                    id: prefix(&step.id),
                    depends_on,
                    ..step.clone()
                });
            }
        }
        let flat = Plan {
            goal: goal.to_string(),
            steps,
        };
        let errors = flat.validate(&inputs, &self.limits);
        if errors.is_empty() {
            Ok(flat)
        } else {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(Error::LlmReply(format!(
                "the expanded plan is invalid: {}",
                listed.join("; ")
            )))
        }
    }
}
