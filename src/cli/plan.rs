//! `planbox plan`: the inputs profiled and the validated plan for a goal, printed without
//! running it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use planbox::plan::{Limits, Plan};
use planbox::planner::{Mode, Planned, Planner};
use planbox::profile::Profile;

use super::args::{PlanArgs, max_steps};
use super::model::Model;
use super::print_stdout;

/// Plan the goal and print the plan, as a tree or as JSON.
pub(super) async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let max_steps = max_steps(args.max_steps)?;
    // Inputs are checked and profiled before any model call.
    let profiles = args
        .inputs
        .iter()
        .map(|path| planbox::profile::profile(path))
        .collect::<Result<Vec<_>, _>>()?;
    let config = args.llm.config()?;
    let model = Model::open(&args.llm, &config)?;
    let mut planner = Planner::new(&model);
    planner.limits.max_steps = max_steps;
    planner.size_by_goal = !args.always_plan;
    let planned = planner
        .plan(&args.goal, &profiles, args.mode.into(), args.reflect)
        .await?;
    if let Some(out) = &args.out {
        let text = format!("{:#}\n", planbox::planner::to_json(&planned));
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "plan written to {}: run it with planbox run GOAL --plan-file {}",
            out.display(),
            out.display()
        );
    }
    if args.json {
        print_stdout(&format!("{:#}\n", planbox::planner::to_json(&planned)));
    } else {
        let mut text = String::from("inputs:\n");
        for profile in &profiles {
            text.push_str(&planbox::profile::render(profile));
        }
        text.push_str(&format!("\nplan ({:?}):\n", planned.mode).to_lowercase());
        text.push_str(&planbox::plan::render_tree(&planned.plan));
        for note in &planned.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        print_stdout(&text);
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan in `path` for `goal` over the inputs `profiles`: the form `planbox plan --out`
/// writes, or `{"steps": [...]}`, checked as a model's plan is; every problem names its step.
pub(super) fn read_plan_file(
    path: &Path,
    goal: &str,
    profiles: &[Profile],
    max_steps: usize,
) -> anyhow::Result<Planned> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let plan = Plan::from_model(goal, &value)
        .map_err(|why| anyhow::anyhow!("{}: not a plan ({why})", path.display()))?;
    let inputs: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let limits = Limits {
        max_steps,
        ..Limits::default()
    };
    let problems = plan.validate(&inputs, &limits);
    if !problems.is_empty() {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{} is not a plan for these inputs: {}",
            path.display(),
            listed.join("; ")
        );
    }
    let mode = serde_json::from_value(value["mode"].clone()).unwrap_or(Mode::Dag);
    Ok(Planned {
        plan,
        mode,
        notes: vec![format!("the plan of {}, run as given", path.display())],
    })
}
