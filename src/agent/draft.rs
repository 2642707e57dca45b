//! The draft written beside the plan ([`super::Options::speculate`]): the request the goal's
//! one-step plan would make first, and whether a plan makes exactly that request.

use super::{Agent, Ctx, step};
use crate::llm::{Llm, Request};
use crate::plan::Plan;
use crate::planner::{self, Mode};
use crate::sandbox::Sandbox;

impl<L: Llm, S: Sandbox> Agent<'_, L, S> {
    /// The request the goal's one-script plan would make first, to be drafted while the
    /// model plans: `None` when the mode plans nothing or speculation is off.
    pub(super) fn draft_request(&self, ctx: &Ctx<'_>) -> Option<Request> {
        if !self.options.speculate || self.options.mode == Mode::None {
            return None;
        }
        let goal = planner::check_goal(ctx.info.question()).ok()?;
        let mut sole = planner::single_step(goal, &ctx.profiles);
        sole.require_outputs(&planner::deliverables(ctx.info.question(), &ctx.profiles));
        self.first_request(ctx, &sole)
    }

    /// The first request of a plan of one step that depends on nothing; `None` for any
    /// other plan.
    pub(super) fn first_request(&self, ctx: &Ctx<'_>, plan: &Plan) -> Option<Request> {
        let [step] = plan.steps.as_slice() else {
            return None;
        };
        if !step.depends_on.is_empty() {
            return None;
        }
        Some(step::first_request(ctx, plan, step))
    }
}
