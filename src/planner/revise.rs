//! Revising a plan: a critique round that improves it, a replan that replaces a failed
//! branch, and mending the slips small models make in a plan's files.

use super::*;

impl<L: Llm> Planner<'_, L> {
    /// One critique round: `None` when the critique finds nothing (or its fix is invalid).
    pub(super) async fn reflect(
        &self,
        goal: &str,
        profiles: &[Profile],
        current: &Plan,
    ) -> Result<Option<(Plan, Vec<String>)>> {
        let plan_json =
            serde_json::to_string_pretty(&current.steps_json()).expect("plans serialize");
        let request = Request {
            schema: Some(Schema {
                decode: None,
                name: "critique".into(),
                schema: json!({
                    "type": "object", "required": ["problems"], "additionalProperties": false,
                    "properties": {"problems": {"type": "array", "items": {"type": "string"}, "maxItems": 8}}
                }),
            }),
            ..Request::new(prompt::critique_messages(goal, profiles, &plan_json))
        };
        let (value, _) = complete_json(self.llm, &request, self.reasks).await?;
        let critique: Critique =
            serde_json::from_value(value).map_err(|e| Error::LlmReply(e.to_string()))?;
        let problems: Vec<String> = critique
            .problems
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .collect();
        if problems.is_empty() {
            return Ok(None);
        }
        let mut messages = prompt::plan_messages(goal, profiles, Shape::Dag, self.limits.max_steps);
        messages.push(Message::assistant(plan_json));
        messages.push(Message::user(format!(
            "A review found these problems:\n- {}\nReply with the improved plan as JSON only.",
            problems.join("\n- ")
        )));
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let request = self.plan_request(messages, self.limits.max_steps, self.limits.max_steps);
        match self
            .ask_valid(goal, &inputs, request, Shape::Dag, &self.limits)
            .await
        {
            Ok(better) => Ok(Some((better, problems))),
            Err(Error::LlmReply(why)) => {
                tracing::info!(%why, "the improved plan was invalid; keeping the original");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

impl<L: Llm> Planner<'_, L> {
    /// Replace `failed` and its descendants in `plan`, keeping every other step. The merged
    /// plan is validated as a whole; its errors go back to the model a bounded number of times.
    pub async fn replan(
        &self,
        plan: &Plan,
        profiles: &[Profile],
        failed: &str,
        problem: &str,
    ) -> Result<Plan> {
        let mut dropped = plan.descendants(failed);
        dropped.insert(failed.to_string());
        let kept: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| !dropped.contains(&s.id))
            .collect();
        let failed_step = plan
            .steps
            .iter()
            .find(|s| s.id == failed)
            .ok_or_else(|| Error::NoSuchStep(failed.to_string()))?;
        let room = self
            .budget(&plan.goal, profiles)
            .saturating_sub(kept.len())
            .max(1);
        let request = self.plan_request(
            prompt::replan_messages(&plan.goal, profiles, &kept, failed_step, problem, room),
            self.limits.max_steps.saturating_sub(kept.len()).max(1),
            room,
        );
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let unfit = format!(
            "The plan adds no new step: replace the failed step \"{failed}\" with at least one \
             new step (the finished steps are kept as they are; do not repeat them)."
        );
        self.ask_until_valid(&plan.goal, &inputs, request, &self.limits, |fresh| {
            self.after_kept(&kept, fresh, &plan.goal, &unfit)
        })
        .await
    }

    /// A plan that answers the follow-up `question` on top of `plan`'s finished steps
    /// (`done`): those are kept as they are, and new steps may depend on them by id to use
    /// their variables and files. `earlier` is the question the finished steps answered.
    pub async fn follow_up(
        &self,
        plan: &Plan,
        profiles: &[Profile],
        done: &[String],
        question: &str,
        earlier: &str,
    ) -> Result<Plan> {
        let kept: Vec<&Step> = plan.steps.iter().filter(|s| done.contains(&s.id)).collect();
        let room = self
            .budget(question, profiles)
            .min(self.limits.max_steps.saturating_sub(kept.len()))
            .max(1);
        let request = self.plan_request(
            prompt::followup_messages(question, profiles, &kept, earlier, room),
            self.limits.max_steps.saturating_sub(kept.len()).max(1),
            room,
        );
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let unfit = "The plan adds no new step: add at least one step that answers the question \
                     (the finished steps are kept as they are; do not repeat them).";
        self.ask_until_valid(question, &inputs, request, &self.limits, |fresh| {
            self.after_kept(&kept, fresh, question, unfit)
        })
        .await
    }

    /// The kept steps, then the model's new ones for `goal`: only the new steps are fused
    /// (kept ones stay as they ran), once a kept step the model repeated is left out. With no
    /// new step left, the plan is unfit (`unfit` says why): it would end the run on the kept
    /// steps alone, answered from whatever they printed.
    fn after_kept(
        &self,
        kept: &[&Step],
        fresh: Plan,
        goal: &str,
        unfit: &str,
    ) -> (Plan, Option<String>) {
        let fresh = Plan {
            goal: fresh.goal,
            steps: fresh
                .steps
                .into_iter()
                .filter(|s| !kept.iter().any(|k| k.id == s.id))
                .collect(),
        };
        let fresh = if self.fuse {
            fresh.fuse_chains(&self.limits).0
        } else {
            fresh
        };
        let none_new = fresh.steps.is_empty();
        let mut steps: Vec<Step> = kept.iter().map(|s| (*s).clone()).collect();
        steps.extend(fresh.steps);
        let plan = Plan {
            goal: goal.to_string(),
            steps,
        };
        (plan, none_new.then(|| unfit.to_string()))
    }
}

/// Mend the slips small models make in a plan's files, where the intent is clear, instead of
/// sending the plan back (a re-ask costs a model call and often brings new slips):
/// a written name without an extension gets `.png` when it names a chart, else `.csv`, in every
/// step that names it; a step reading a file another step writes comes to depend on that step
/// (unless that would make a cycle); a read without an extension that names nothing (a value,
/// not a file) and a step reading its own output are dropped from `reads`; a misspelt file name
/// is left to validation; a file several steps write is a version per writer
/// ([`version_rewritten_files`]).
pub(super) fn mend(plan: &mut Plan, inputs: &[String]) {
    // A dependency on a step that is not in the plan (in a replan, often the failed step the
    // new steps replace) or on itself carries nothing: the reads below restore real ones.
    let ids: std::collections::BTreeSet<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    for step in &mut plan.steps {
        let own = step.id.clone();
        step.depends_on.retain(|d| ids.contains(d) && *d != own);
    }
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for step in &mut plan.steps {
        for file in &mut step.writes {
            if plan::valid_file_name(file) && !file.trim_start_matches('.').contains('.') {
                let lower = file.to_lowercase();
                let chart = ["chart", "plot", "fig", "graph", "png", "image", "hist"]
                    .iter()
                    .any(|k| lower.contains(k));
                let named = format!("{file}.{}", if chart { "png" } else { "csv" });
                renamed.insert(file.clone(), named.clone());
                *file = named;
            }
        }
    }
    for step in &mut plan.steps {
        for file in &mut step.reads {
            if let Some(named) = renamed.get(file.as_str()) {
                *file = named.clone();
            }
        }
    }
    version_rewritten_files(plan, inputs);
    let writers: BTreeMap<String, String> = plan
        .steps
        .iter()
        .flat_map(|s| s.writes.iter().map(|w| (w.clone(), s.id.clone())))
        .collect();
    for i in 0..plan.steps.len() {
        let id = plan.steps[i].id.clone();
        let mut reads = Vec::new();
        for file in std::mem::take(&mut plan.steps[i].reads) {
            if inputs.contains(&file) {
                reads.push(file);
                continue;
            }
            let Some(writer) = writers.get(&file) else {
                // A name with an extension that nothing writes is a real mistake (a misspelt
                // input, a missing step): validation sends it back. Without one, it is a value.
                if file.trim_start_matches('.').contains('.') {
                    reads.push(file);
                }
                continue;
            };
            if writer == &id {
                continue;
            }
            let ancestors = plan.ancestors(&id);
            if !ancestors.contains(writer) && !plan.ancestors(writer).contains(&id) {
                plan.steps[i].depends_on.push(writer.clone());
            }
            reads.push(file);
        }
        plan.steps[i].reads = reads;
    }
}

/// A file several steps write (a small model's `df.csv`, updated step after step) becomes a
/// version per writer, in plan order: the first writer keeps the name (in a replan, the
/// kept steps come first, and what they wrote stays where it is), each later one writes
/// `<stem>_<step>.<ext>`, and a step reading the name reads the version of the last writer
/// listed before it (a step that reads and rewrites a file reads the version before its
/// own). Inputs are left alone: a step "writing" one means it loads it.
fn version_rewritten_files(plan: &mut Plan, inputs: &[String]) {
    let mut writers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        for file in step.writes.iter().filter(|f| !inputs.contains(f)) {
            let at = writers.entry(file.clone()).or_default();
            if !at.contains(&i) {
                at.push(i);
            }
        }
    }
    writers.retain(|_, at| at.len() > 1);
    if writers.is_empty() {
        return;
    }
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    let version = |file: &str, writer: usize| -> String {
        match (
            writers[file].first() == Some(&writer),
            file.rsplit_once('.'),
        ) {
            (true, _) => file.to_string(),
            (false, Some((stem, ext))) => format!("{stem}_{}.{ext}", ids[writer]),
            (false, None) => format!("{file}_{}", ids[writer]),
        }
    };
    for (i, step) in plan.steps.iter_mut().enumerate() {
        for file in &mut step.reads {
            let before = writers
                .get(file.as_str())
                .and_then(|at| at.iter().rev().find(|w| **w < i));
            if let Some(&writer) = before {
                *file = version(file, writer);
            }
        }
        for file in &mut step.writes {
            if writers.contains_key(file.as_str()) {
                *file = version(file, i);
            }
        }
    }
}

/// Make the steps a chain in the order given (what `linear` promises), whatever the model
/// wrote in `depends_on`.
pub(super) fn chain(plan: &mut Plan) {
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    for (i, step) in plan.steps.iter_mut().enumerate() {
        step.depends_on = if i == 0 {
            vec![]
        } else {
            vec![ids[i - 1].clone()]
        };
    }
}
