//! The planner: a goal and input profiles in, a validated plan out. Invalid plans go back to
//! the model with the exact errors a bounded number of times; planning modes range from no
//! plan (one script) to hierarchical decomposition; an optional reflection round critiques and
//! improves the plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::llm::{Llm, Message, Request, Schema, complete_json};
use crate::plan::{self, Limits, Plan, Step, StepKind};
use crate::profile::Profile;
use crate::prompt::{self, Shape};

/// Longest goal accepted, in characters.
pub const MAX_GOAL: usize = 4000;

/// How to plan (`--plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One script for the whole goal: the baseline, and right for trivial goals.
    None,
    /// A chain of steps.
    Linear,
    /// A dependency graph; independent steps run in parallel.
    Dag,
    /// Sub-goals, each decomposed into steps unless it is one step already.
    Hierarchical,
    /// The model decides whether a plan is needed (then `dag`) or not (then `none`).
    Auto,
}

/// A validated plan and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The mode that produced it (`auto` resolves to `none` or `dag`).
    pub mode: Mode,
    /// Degradations and decisions worth showing the user.
    pub notes: Vec<String>,
}

/// Plans goals with a model.
pub struct Planner<'a, L> {
    llm: &'a L,
    /// Plan limits.
    pub limits: Limits,
    /// Times an invalid plan is sent back with its errors.
    pub reasks: usize,
    /// Deepest level of sub-goals in hierarchical mode.
    pub max_depth: usize,
}

#[derive(Deserialize)]
struct Triage {
    plan: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct Critique {
    problems: Vec<String>,
}

impl<'a, L: Llm> Planner<'a, L> {
    /// A planner with default limits (12 steps, 3 re-asks, depth 2).
    pub fn new(llm: &'a L) -> Self {
        Planner {
            llm,
            limits: Limits::default(),
            reasks: 3,
            max_depth: 2,
        }
    }

    /// Plan `goal` over the profiled inputs; `reflect` critique rounds follow when above zero.
    pub async fn plan(
        &self,
        goal: &str,
        profiles: &[Profile],
        mode: Mode,
        reflect: usize,
    ) -> Result<Planned> {
        let goal = goal.trim();
        if goal.is_empty() {
            return Err(Error::Config(
                "the goal is empty: say what to find out".into(),
            ));
        }
        let length = goal.chars().count();
        if length > MAX_GOAL {
            return Err(Error::Config(format!(
                "the goal is {length} characters; at most {MAX_GOAL}: put data in an input file and describe the question"
            )));
        }
        let mut notes = Vec::new();
        let (mut planned, used) = match mode {
            Mode::None => (single_step(goal, profiles), Mode::None),
            Mode::Linear => (
                self.graph(goal, profiles, Shape::Linear, self.limits.max_steps)
                    .await?,
                Mode::Linear,
            ),
            Mode::Dag => (
                self.graph(goal, profiles, Shape::Dag, self.limits.max_steps)
                    .await?,
                Mode::Dag,
            ),
            Mode::Hierarchical => match self.hierarchical(goal, profiles).await {
                Ok(plan) => (plan, Mode::Hierarchical),
                Err(err) => {
                    notes.push(format!(
                        "hierarchical planning failed ({err}); planned as a graph instead"
                    ));
                    (
                        self.graph(goal, profiles, Shape::Dag, self.limits.max_steps)
                            .await?,
                        Mode::Dag,
                    )
                }
            },
            Mode::Auto => {
                let request = Request {
                    schema: Some(Schema {
                        name: "triage".into(),
                        schema: json!({
                            "type": "object", "required": ["plan", "reason"], "additionalProperties": false,
                            "properties": {"plan": {"type": "boolean"}, "reason": {"type": "string"}}
                        }),
                    }),
                    temperature: Some(0.0),
                    ..Request::new(prompt::triage_messages(goal, profiles))
                };
                let (value, _) = complete_json(self.llm, &request, self.reasks).await?;
                let triage: Triage =
                    serde_json::from_value(value).map_err(|e| Error::LlmReply(e.to_string()))?;
                notes.push(format!(
                    "auto: {} ({})",
                    if triage.plan {
                        "planned as a graph"
                    } else {
                        "one script, no plan"
                    },
                    triage.reason.trim()
                ));
                if triage.plan {
                    (
                        self.graph(goal, profiles, Shape::Dag, self.limits.max_steps)
                            .await?,
                        Mode::Dag,
                    )
                } else {
                    (single_step(goal, profiles), Mode::None)
                }
            }
        };
        if used != Mode::None {
            for _ in 0..reflect {
                match self.reflect(goal, profiles, &planned).await? {
                    Some((better, problems)) => {
                        notes.push(format!("reflection fixed: {}", problems.join("; ")));
                        planned = better;
                    }
                    None => {
                        notes.push("reflection found no problems".into());
                        break;
                    }
                }
            }
        }
        Ok(Planned {
            plan: planned,
            mode: used,
            notes,
        })
    }

    fn plan_request(&self, messages: Vec<Message>, max_steps: usize) -> Request {
        let limits = Limits {
            max_steps,
            ..self.limits
        };
        Request {
            schema: Some(Schema {
                name: "plan".into(),
                schema: plan::schema(&limits),
            }),
            ..Request::new(messages)
        }
    }

    /// Ask for a plan, validate it, and send the errors back until it is valid or the re-asks
    /// run out.
    async fn ask_valid(
        &self,
        goal: &str,
        inputs: &[String],
        request: Request,
        shape: Shape,
        limits: &Limits,
    ) -> Result<Plan> {
        self.ask_until_valid(goal, inputs, request, limits, |mut plan| {
            if shape == Shape::Linear {
                chain(&mut plan);
            }
            plan
        })
        .await
    }

    /// The re-ask loop: `complete` turns the model's plan into the plan to check (a chain, a
    /// merge with kept steps); its errors go back to the model until it is valid.
    async fn ask_until_valid(
        &self,
        goal: &str,
        inputs: &[String],
        mut request: Request,
        limits: &Limits,
        complete: impl Fn(Plan) -> Plan,
    ) -> Result<Plan> {
        let mut last = Vec::new();
        for _ in 0..=self.reasks {
            let (value, reply) = complete_json(self.llm, &request, self.reasks).await?;
            let mut plan = complete(Plan::from_model(goal, &value).map_err(Error::LlmReply)?);
            mend(&mut plan, inputs);
            for step in &mut plan.steps {
                // Inputs are read-only: a step "writing" one means it loads it.
                step.writes.retain(|w| !inputs.contains(w));
                // A check produces nothing and follows what it checks: a "verify" step that
                // writes files or depends on nothing is an action under the wrong name (small
                // models label every step so), and would be prompted as a bare assertion.
                if step.kind == StepKind::Verify
                    && (!step.writes.is_empty() || step.depends_on.is_empty())
                {
                    step.kind = StepKind::Action;
                }
            }
            let errors = plan.validate(inputs, limits);
            if errors.is_empty() {
                return Ok(plan);
            }
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            request
                .messages
                .push(Message::assistant(crate::text::truncate_middle(
                    &reply.text,
                    6000,
                )));
            request.messages.push(Message::user(format!(
                "The plan is invalid:\n- {}\nReply with the corrected plan as JSON only.",
                listed.join("\n- ")
            )));
            last = listed;
        }
        Err(Error::LlmReply(format!(
            "no valid plan after {} re-asks; last problems: {}",
            self.reasks,
            last.join("; ")
        )))
    }

    async fn graph(
        &self,
        goal: &str,
        profiles: &[Profile],
        shape: Shape,
        max_steps: usize,
    ) -> Result<Plan> {
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let request = self.plan_request(
            prompt::plan_messages(goal, profiles, shape, max_steps),
            max_steps,
        );
        let limits = Limits {
            max_steps,
            ..self.limits
        };
        self.ask_valid(goal, &inputs, request, shape, &limits).await
    }

    /// Sub-goals first; each non-atomic one is planned as a graph over the files available to
    /// it, and its steps take its place. Bounded by `max_depth` and the step limit.
    async fn hierarchical(&self, goal: &str, profiles: &[Profile]) -> Result<Plan> {
        let max = self.limits.max_steps.min(5);
        let mut schema = plan::schema(&Limits {
            max_steps: max,
            ..self.limits
        });
        schema["properties"]["steps"]["items"]["properties"]["atomic"] = json!({"type": "boolean"});
        let request = Request {
            schema: Some(Schema {
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

    /// One critique round: `None` when the critique finds nothing (or its fix is invalid).
    async fn reflect(
        &self,
        goal: &str,
        profiles: &[Profile],
        current: &Plan,
    ) -> Result<Option<(Plan, Vec<String>)>> {
        let plan_json =
            serde_json::to_string_pretty(&current.steps_json()).expect("plans serialize");
        let request = Request {
            schema: Some(Schema {
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
        let request = self.plan_request(messages, self.limits.max_steps);
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
            .ok_or_else(|| Error::Config(format!("no step {failed}")))?;
        let room = self.limits.max_steps.saturating_sub(kept.len()).max(1);
        let request = self.plan_request(
            prompt::replan_messages(&plan.goal, profiles, &kept, failed_step, problem, room),
            room,
        );
        let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        self.ask_until_valid(&plan.goal, &inputs, request, &self.limits, |fresh| {
            let mut steps: Vec<Step> = kept.iter().map(|s| (*s).clone()).collect();
            steps.extend(
                fresh
                    .steps
                    .into_iter()
                    .filter(|s| !kept.iter().any(|k| k.id == s.id)),
            );
            Plan {
                goal: plan.goal.clone(),
                steps,
            }
        })
        .await
    }
}

/// The `none` mode's plan: one step that does the whole goal.
pub fn single_step(goal: &str, profiles: &[Profile]) -> Plan {
    Plan {
        goal: goal.to_string(),
        steps: vec![Step {
            id: "solve".into(),
            title: "Solve the whole goal in one script".into(),
            instruction: goal.to_string(),
            kind: StepKind::Action,
            depends_on: vec![],
            reads: profiles.iter().map(|p| p.name.clone()).collect(),
            writes: vec![],
            fallback: None,
        }],
    }
}

/// Mend the slips small models make in a plan's files, where the intent is clear, instead of
/// sending the plan back (a re-ask costs a model call and often brings new slips):
/// a written name without an extension gets `.png` when it names a chart, else `.csv`, in every
/// step that names it; a step reading a file another step writes comes to depend on that step
/// (unless that would make a cycle); a read without an extension that names nothing (a value,
/// not a file) and a step reading its own output are dropped from `reads`; a misspelt file name
/// is left to validation.
fn mend(plan: &mut Plan, inputs: &[String]) {
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

/// Make the steps a chain in the order given (what `linear` promises), whatever the model
/// wrote in `depends_on`.
fn chain(plan: &mut Plan) {
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    for (i, step) in plan.steps.iter_mut().enumerate() {
        step.depends_on = if i == 0 {
            vec![]
        } else {
            vec![ids[i - 1].clone()]
        };
    }
}

/// JSON of a planned result for `--json` and the run folder.
pub fn to_json(planned: &Planned) -> Value {
    json!({"goal": planned.plan.goal, "mode": planned.mode, "notes": planned.notes, "steps": planned.plan.steps})
}
