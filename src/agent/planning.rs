//! How the agent gets its plans: the one a resumed run left, a new one (with the goal's
//! one-script draft written beside it), and the replans that replace failed branches.

use super::{Agent, Ctx, Failures, first_line};
use crate::error::{Error, Result};
use crate::event::{PlannedStep, RunEvent};
use crate::llm::Llm;
use crate::planner::{self, Mode, Planned, Planner};
use crate::sandbox::Sandbox;

impl<L: Llm, S: Sandbox> Agent<'_, L, S> {
    /// The plan a resumed run left, or a new one; `None` when a budget ran out first.
    pub(super) async fn first_plan<M: Llm>(
        &self,
        ctx: &Ctx<'_>,
        planner: &Planner<'_, M>,
    ) -> Result<Option<Planned>> {
        if let Some(mut planned) = ctx.folder.plan()? {
            self.adopt(ctx, &mut planned, ctx.folder.state().plan_version)?;
            return Ok(Some(planned));
        }
        let (goal, mode) = (ctx.info.question(), self.options.mode);
        let planning = planner.plan(goal, &ctx.profiles, mode, self.options.reflect);
        let draft = self.draft_request(ctx, planner);
        let drafting = async {
            match &draft {
                Some(request) => self.llm.complete(request).await,
                None => std::future::pending().await,
            }
        };
        let (mut planning, mut drafting) = (std::pin::pin!(planning), std::pin::pin!(drafting));
        let mut drafted = None;
        // The plan first: the draft only fills the time the plan takes.
        let made = loop {
            tokio::select! {
                biased;
                made = &mut planning => break made,
                reply = &mut drafting, if drafted.is_none() => drafted = Some(reply),
            }
        };
        let mut planned = match ctx.budgets.within(made, ctx.sink) {
            Ok(Ok(planned)) => planned,
            Ok(Err(_spent)) => return Ok(None),
            // A model that never gives a valid plan still gets the goal as one script: the
            // plan-free baseline, named in the plan's notes.
            Err(Error::LlmReply(why)) => {
                ctx.emit(RunEvent::PlanningFailed {
                    problem: why.clone(),
                });
                Planned {
                    plan: planner::single_step(goal, &ctx.profiles),
                    mode: Mode::None,
                    notes: vec![format!(
                        "planning failed ({}); the goal runs as one script",
                        first_line(&why)
                    )],
                }
            }
            Err(err) => {
                ctx.emit(RunEvent::PlanningFailed {
                    problem: format!("{err:#}"),
                });
                return Err(err);
            }
        };
        self.adopt(ctx, &mut planned, 1)?;
        // A plan of one step asks what the draft asked: the draft's reply is that step's
        // first script, unless a budget ends the run before any script is written. A draft
        // still being written is awaited here (before the step's container starts: the
        // price of not carrying the unfinished call into the step). A draft that failed
        // leaves the step to ask again, since the second slot's error (a refused
        // connection, a 503) says little about the next call. Any other plan drops the
        // draft, an unfinished one cancelled.
        if let Some(request) = &draft
            && self.first_request(ctx, &planned.plan).as_ref() == Some(request)
            && (drafted.is_some() || ctx.budgets.check(ctx.sink).is_none())
        {
            let reply = match drafted {
                Some(reply) => reply,
                None => drafting.await,
            };
            if let Ok(reply) = reply {
                *ctx.drafted.lock().expect("draft poisoned") = Some((request.clone(), reply));
            }
        }
        Ok(Some(planned))
    }

    /// Make the files the goal names required outputs of the plan, store the plan version
    /// (unless it is the one the folder holds, unchanged) and announce it.
    fn adopt(&self, ctx: &Ctx<'_>, planned: &mut Planned, version: usize) -> Result<()> {
        let added = planned
            .plan
            .require_outputs(&planner::deliverables(ctx.info.question(), &ctx.profiles));
        if !added.is_empty() {
            planned.notes.push(format!(
                "the goal asks for {}: required of the steps that end the analysis",
                added
                    .iter()
                    .map(|(file, step)| format!("{file} (from {step})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if ctx.folder.state().plan_version != version || !added.is_empty() {
            ctx.folder.write_plan(version, &planner::to_json(planned))?;
        }
        ctx.emit(RunEvent::Planned {
            version,
            steps: PlannedStep::all(&planned.plan),
            notes: planned.notes.clone(),
        });
        Ok(())
    }

    /// A new plan replacing every failed step and its descendants (one replan round); `None`
    /// when the run must stop (replans or a budget spent, or no usable plan came back).
    pub(super) async fn replan<M: Llm>(
        &self,
        ctx: &Ctx<'_>,
        planner: &Planner<'_, M>,
        planned: &Planned,
        failures: &Failures,
    ) -> Result<Option<Planned>> {
        let replans = ctx.folder.state().replans;
        if ctx.budgets.spent().is_some() || replans >= self.options.max_replans {
            return Ok(None);
        }
        // Every failed branch is replanned in this round, one after the other, each on the
        // plan the one before left; a branch an earlier replan already replaced is passed.
        let mut plan = planned.plan.clone();
        let mut replanned: Vec<(&String, &String)> = Vec::new();
        for (failed, problem) in failures {
            if !plan.steps.iter().any(|s| &s.id == failed) {
                continue;
            }
            ctx.emit(RunEvent::Replanning {
                step: failed.clone(),
                left: self.options.max_replans - replans - 1,
            });
            let made = planner.replan(&plan, &ctx.profiles, failed, problem).await;
            match ctx.budgets.within(made, ctx.sink) {
                Ok(Ok(fresh)) => {
                    plan = fresh;
                    replanned.push((failed, problem));
                }
                Ok(Err(_spent)) => return Ok(None),
                Err(err) if err.ends_run() => return Err(err),
                // No new plan (an unusable reply, or the model failing mid-run): the run
                // ends here, cleanly, with what the finished steps established, unless an
                // earlier branch of this round was replanned, which then runs.
                Err(err) => {
                    ctx.emit(RunEvent::PlanningFailed {
                        problem: format!("{err:#}"),
                    });
                    if replanned.is_empty() {
                        return Ok(None);
                    }
                    break;
                }
            }
        }
        let dropped: Vec<String> = planned
            .plan
            .steps
            .iter()
            .filter(|s| !plan.steps.iter().any(|r| r.id == s.id))
            .map(|s| s.id.clone())
            .collect();
        ctx.folder.replanned(&dropped)?;
        let mut next = Planned {
            plan,
            mode: planned.mode,
            notes: replanned
                .iter()
                .map(|(failed, problem)| {
                    format!("replanned after {failed} failed: {}", first_line(problem))
                })
                .collect(),
        };
        self.adopt(ctx, &mut next, ctx.folder.state().plan_version + 1)?;
        Ok(Some(next))
    }
}
