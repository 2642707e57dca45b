//! Plans sized to the goal: what a goal asks for (its `@name[...]` answers, the files it
//! names, its numbered parts) bounds how many steps its plan may have.

use crate::profile::Profile;

/// Most steps a plan for `goal` is asked for: sized to what the goal asks for, when it says
/// (one step to prepare the data, one that computes the requested answers, one per file it
/// names), else `max_steps`. A small model otherwise chains a step per operation (read,
/// filter, group, sum, sort, print) or splits a mean and a standard deviation into steps of
/// their own, and every hand-off is a chance to lose a column and costs a script.
pub fn step_budget(goal: &str, profiles: &[Profile], max_steps: usize) -> usize {
    let answers = crate::answer::answer_names(goal).len();
    let files = deliverables(goal, profiles).len();
    if answers == 0 && files == 0 {
        return max_steps;
    }
    (1 + usize::from(answers > 0) + files).min(max_steps)
}

/// Whether `goal` is one step by what it asks for: `@name[...]` answers, no file to write
/// (an input it names aside), and no numbered parts of its own ("1. ... 2. ..."). Such a
/// goal is one script: a plan for it costs a model call as long as that script's, and on
/// the dev questions every model plan of one came back as one step once its chains fused.
pub fn one_step_by_its_asks(goal: &str, profiles: &[Profile]) -> bool {
    static PART: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|[\s:(])(\d{1,2})[.)]\s").expect("valid")
    });
    let mut parts: Vec<&str> = PART
        .captures_iter(goal)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    parts.dedup();
    !crate::answer::answer_names(goal).is_empty()
        && deliverables(goal, profiles).is_empty()
        && parts.len() < 2
}

/// The files `goal` names that are not among the inputs: what a run of it must write.
pub fn deliverables(goal: &str, profiles: &[Profile]) -> Vec<String> {
    named_files(goal)
        .into_iter()
        .filter(|f| !profiles.iter().any(|p| &p.name == f))
        .collect()
}

/// The files a goal names (`chart.png`, `summary.csv`), in order: deliverables, once the
/// inputs among them are left out.
pub fn named_files(goal: &str) -> Vec<String> {
    static FILE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)\b[\w-]+\.(?:png|svg|jpe?g|pdf|csv|tsv|xlsx|json|parquet|html|txt)\b",
        )
        .expect("valid")
    });
    let mut files: Vec<String> = Vec::new();
    for found in FILE.find_iter(goal) {
        let file = found.as_str().to_string();
        if !files.contains(&file) {
            files.push(file);
        }
    }
    files
}
