//! `planbox plan`: the inputs profiled and the validated plan for a goal, printed without
//! running it.

use std::process::ExitCode;

use planbox::planner::Planner;

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
    let planned = planner
        .plan(&args.goal, &profiles, args.mode.into(), args.reflect)
        .await?;
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
