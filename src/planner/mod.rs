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

mod revise;
mod sizing;
mod subgoals;

use revise::{chain, mend};
pub use sizing::{deliverables, named_files, one_step_by_its_asks, step_budget};

/// Longest goal accepted, in characters.
pub const MAX_GOAL: usize = 4000;

/// How to plan (`--plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Fuse chains of steps in graph plans ([`Plan::fuse_chains`]).
    pub fuse: bool,
    /// Plan a goal that is one step by what it asks for ([`one_step_by_its_asks`]) as that
    /// step, without a model call; off, the model plans every goal.
    pub size_by_goal: bool,
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
            fuse: true,
            size_by_goal: true,
        }
    }

    /// Whether [`Planner::plan`] asks the model for a plan of `goal` in `mode`: never for
    /// `none`, nor for a goal that is one step by what it asks for (see
    /// [`one_step_by_its_asks`]) while plans are sized by goal.
    pub fn asks_the_model(&self, goal: &str, profiles: &[Profile], mode: Mode) -> bool {
        match mode {
            Mode::None => false,
            Mode::Hierarchical => true,
            Mode::Dag | Mode::Linear | Mode::Auto => {
                !(self.size_by_goal && one_step_by_its_asks(goal, profiles))
            }
        }
    }

    /// Plan `goal` over the profiled inputs; `reflect` critique rounds follow a plan the model
    /// made (a goal planned without the model is one step, with nothing to critique).
    pub async fn plan(
        &self,
        goal: &str,
        profiles: &[Profile],
        mode: Mode,
        reflect: usize,
    ) -> Result<Planned> {
        let goal = check_goal(goal)?;
        let mut notes = Vec::new();
        if mode != Mode::None && !self.asks_the_model(goal, profiles, mode) {
            notes.push(
                "one step, planned without the model: the goal asks only for values and has no \
                 parts of its own (a step that fails is replanned)"
                    .into(),
            );
            return Ok(Planned {
                plan: single_step(goal, profiles),
                mode: if mode == Mode::Auto { Mode::None } else { mode },
                notes,
            });
        }
        let (mut planned, used) = match mode {
            Mode::None => (single_step(goal, profiles), Mode::None),
            Mode::Linear => (
                self.graph(goal, profiles, Shape::Linear, self.budget(goal, profiles))
                    .await?,
                Mode::Linear,
            ),
            Mode::Dag => (
                self.graph(goal, profiles, Shape::Dag, self.budget(goal, profiles))
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
                        self.graph(goal, profiles, Shape::Dag, self.budget(goal, profiles))
                            .await?,
                        Mode::Dag,
                    )
                }
            },
            Mode::Auto => {
                let request = Request {
                    schema: Some(Schema {
                        decode: None,
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
                        self.graph(goal, profiles, Shape::Dag, self.budget(goal, profiles))
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
        if self.fuse && used == Mode::Dag {
            planned = self.fused(planned, &mut notes);
        }
        if used != Mode::None && planned.steps.len() == 1 {
            planned = the_goal_as_its_step(planned, profiles);
            notes.push("one step: its instruction is the goal itself".into());
        }
        Ok(Planned {
            plan: planned,
            mode: used,
            notes,
        })
    }

    /// `plan` with its chains fused (see [`Plan::fuse_chains`]), each fusion noted.
    fn fused(&self, plan: Plan, notes: &mut Vec<String>) -> Plan {
        let (fused, absorbed) = plan.fuse_chains(&self.limits);
        for (into, from) in absorbed {
            notes.push(format!(
                "fused the chain {} -> {into} into one step",
                from.join(" -> ")
            ));
        }
        fused
    }

    fn budget(&self, goal: &str, profiles: &[Profile]) -> usize {
        step_budget(goal, profiles, self.limits.max_steps)
    }

    /// A plan request: replies are checked against at most `limit` steps, while a server
    /// that decodes by grammar is held to the `budget` the prompt asks for, so a small model
    /// that would chain a step per operation stops where the budget ends instead of writing
    /// steps that fusion merges again (each step costs reply tokens).
    fn plan_request(&self, messages: Vec<Message>, limit: usize, budget: usize) -> Request {
        let steps = |max_steps| {
            plan::schema(&Limits {
                max_steps,
                ..self.limits
            })
        };
        Request {
            schema: Some(Schema {
                decode: (budget < limit).then(|| steps(budget)),
                name: "plan".into(),
                schema: steps(limit),
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
            (plan, None)
        })
        .await
    }

    /// The re-ask loop: `complete` turns the model's plan into the plan to check (a chain, a
    /// merge with kept steps), with a problem of its own when the plan cannot serve (a merge
    /// that adds no step); that and the plan's errors go back to the model until it is valid.
    async fn ask_until_valid(
        &self,
        goal: &str,
        inputs: &[String],
        mut request: Request,
        limits: &Limits,
        complete: impl Fn(Plan) -> (Plan, Option<String>),
    ) -> Result<Plan> {
        let mut last = Vec::new();
        for _ in 0..=self.reasks {
            let (value, reply) = complete_json(self.llm, &request, self.reasks).await?;
            let (mut plan, unfit) =
                complete(Plan::from_model(goal, &value).map_err(Error::LlmReply)?);
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
            let mut listed: Vec<String> = unfit.into_iter().collect();
            listed.extend(
                plan.validate(inputs, limits)
                    .iter()
                    .map(ToString::to_string),
            );
            if listed.is_empty() {
                return Ok(plan);
            }
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
        // The model is asked for `max_steps`, and a grammar holds it there; the schema and the
        // validation hold it to the configured limit only, so a plan a person wrote or a model
        // that needs one more step is not refused for it.
        let request = self.plan_request(
            prompt::plan_messages(goal, profiles, shape, max_steps),
            self.limits.max_steps,
            max_steps,
        );
        self.ask_valid(goal, &inputs, request, shape, &self.limits)
            .await
    }
}

/// The goal, trimmed, when it can be planned: not empty, and short enough to quote.
pub fn check_goal(goal: &str) -> Result<&str> {
    let goal = goal.trim();
    if goal.is_empty() {
        return Err(Error::GoalEmpty);
    }
    let length = goal.chars().count();
    if length > MAX_GOAL {
        return Err(Error::GoalTooLong {
            length,
            max: MAX_GOAL,
        });
    }
    Ok(goal)
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
            produces: Vec::new(),
            uses: Vec::new(),
        }],
    }
}

/// A plan of one step, with the goal itself as its instruction: the model's paraphrase of
/// a goal it did not split loses what the goal states exactly (a method, a rounding, an
/// answer's format), and a fused step's numbered parts read as separate tasks to a small
/// model. It is the `none` plan's step under the model's id, with its fallback, writing the
/// files the goal names: so its script is the one a draft written while planning asked for.
fn the_goal_as_its_step(plan: Plan, profiles: &[Profile]) -> Plan {
    let mut one = single_step_delivering(&plan.goal, profiles);
    if let Some(step) = plan.steps.into_iter().next() {
        let solve = &mut one.steps[0];
        solve.id = step.id;
        solve.fallback = step.fallback;
    }
    one
}

/// [`single_step`] writing the files the goal names, as a run adopts it: the plan a draft
/// written beside the model's plan is for.
pub fn single_step_delivering(goal: &str, profiles: &[Profile]) -> Plan {
    let mut one = single_step(goal, profiles);
    one.require_outputs(&deliverables(goal, profiles));
    one
}

/// JSON of a planned result for `--json` and the run folder.
pub fn to_json(planned: &Planned) -> Value {
    json!({"goal": planned.plan.goal, "mode": planned.mode, "notes": planned.notes, "steps": planned.plan.steps})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sales() -> Vec<Profile> {
        vec![crate::profile::Profile::empty(
            "sales.csv".into(),
            10,
            crate::profile::FileType::Csv,
        )]
    }

    #[test]
    fn a_plan_is_sized_to_what_the_goal_asks_for() {
        let profiles = sales();
        let one_value = "What is the mean fare? Answer as @mean_fare[value].";
        assert_eq!(step_budget(one_value, &profiles, 12), 2);
        let demo = "sales.csv has one row per day. Which region earned most? Chart it in revenue.png. \
                    Answer as @top_region[name] @revenue[value].";
        assert_eq!(named_files(demo), vec!["sales.csv", "revenue.png"]);
        assert_eq!(step_budget(demo, &profiles, 12), 3);
        let four_values =
            "Mean, std, min and max of Volume? Answer as @mean[v] @std[v] @min[v] @max[v].";
        assert_eq!(step_budget(four_values, &profiles, 12), 2);
        assert_eq!(step_budget(demo, &profiles, 2), 2);
        assert_eq!(step_budget("Explore the data.", &profiles, 12), 12);
    }

    #[test]
    fn a_goal_that_asks_only_for_values_is_one_step_unless_it_has_parts() {
        let profiles = sales();
        let one = |goal: &str| one_step_by_its_asks(goal, &profiles);
        assert!(one("What is the mean fare? Answer as @mean_fare[value]."));
        assert!(one(
            "2. Is there a correlation in sales.csv? Answer as @r[value], rounded to 2 decimals."
        ));
        assert!(!one(
            "What is the mean fare? Chart it in fare.png. Answer as @mean_fare[value]."
        ));
        assert!(!one("Explore the data."));
        assert!(!one(
            "Analyse: 1. Remove duplicates. 2. Fill missing values. Answer as @rows[value]."
        ));
        assert!(!one("Steps: (1) clean (2) fit. Answer as @rmse[value]."));
    }
}
