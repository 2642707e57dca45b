//! The draft written beside the plan ([`super::Options::speculate`]): the request the goal's
//! one-step plan would make first, and whether a plan makes exactly that request.

use super::{Agent, Ctx, step};
use crate::llm::{Llm, Request};
use crate::plan::Plan;
use crate::planner::{self, Planner};
use crate::sandbox::Sandbox;

impl<L: Llm, S: Sandbox> Agent<'_, L, S> {
    /// The request the goal's one-script plan would make first, to be drafted while the
    /// model plans: `None` when speculation is off or `planner` makes its plan without the
    /// model (the step then writes its script while its container starts, as always).
    pub(super) fn draft_request<M: Llm>(
        &self,
        ctx: &Ctx<'_>,
        planner: &Planner<'_, M>,
    ) -> Option<Request> {
        let goal = planner::check_goal(ctx.info.question()).ok()?;
        if !self.options.speculate
            || !planner.asks_the_model(goal, &ctx.profiles, self.options.mode)
        {
            return None;
        }
        self.first_request(ctx, &planner::single_step_delivering(goal, &ctx.profiles))
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
