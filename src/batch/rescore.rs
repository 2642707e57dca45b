//! What each rule for the model is worth, read from finished run folders without running
//! anything again: each answer rule switched off in turn over the answers the steps gave, and
//! how often each failure hint fired and the next attempt then passed.

use std::path::Path;

use super::Goal;
use crate::answer::compose::recompose;
use crate::answer::expect::mismatches;
use crate::error::{Error, Result};
use crate::hint::{Failure, HINTS, digest::with_source_lines, matching};
use crate::run::{AttemptRecord, RunFolder};

/// How many goals of a suite one answer-rule setting gets right from existing run folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescored {
    /// The setting: `all rules on`, or `<id> off`.
    pub setting: String,
    /// Goals answered right.
    pub right: usize,
    /// Goals scored (run folders whose goal is in the suite).
    pub total: usize,
    /// Answers that read otherwise than with every rule on.
    pub changed: usize,
}

/// Score the run folders under `runs` against `goals` again, composing each answer from what
/// its steps printed (and the model summary it stored) with every answer rule on, then with
/// each rule off in turn: what each rule is worth, without running anything again.
pub fn rescore(runs: &Path, goals: &[Goal]) -> Result<Vec<Rescored>> {
    let ids: Vec<&str> = crate::answer::rule_ids().collect();
    let mut settings = vec![("all rules on".to_string(), crate::rules::Rules::default())];
    for id in &ids {
        let off = crate::rules::Rules::without([*id], &ids).expect("a known rule");
        settings.push((format!("{id} off"), off));
    }
    let mut scores: Vec<Rescored> = settings
        .iter()
        .map(|(setting, _)| Rescored {
            setting: setting.clone(),
            right: 0,
            total: 0,
            changed: 0,
        })
        .collect();
    for dir in run_folders(runs)? {
        let folder = RunFolder::open_dir(&dir)?;
        let info = folder.info()?;
        let Some(goal) = goals.iter().find(|g| g.goal == info.goal) else {
            continue;
        };
        let plan = folder.plan()?.map(|planned| planned.plan);
        let printed = folder.printed(plan.as_ref());
        let summary = std::fs::read_to_string(dir.join("summary.md")).ok();
        let all_on = recompose(&info.goal, &printed, summary.as_deref(), &settings[0].1);
        for ((_, rules), score) in settings.iter().zip(&mut scores) {
            let answer = recompose(&info.goal, &printed, summary.as_deref(), rules);
            score.total += 1;
            score.changed += usize::from(answer != all_on);
            if mismatches(&goal.expected(), &answer).is_empty() {
                score.right += 1;
            }
        }
    }
    Ok(scores)
}

/// How often one failure hint was given, over the failed attempts of some run folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintUse {
    /// The hint.
    pub id: &'static str,
    /// Failed attempts it recognises: the hint they got, unless it was switched off.
    pub fired: usize,
    /// Of those, the ones whose step passed on its next attempt.
    pub next_passed: usize,
}

/// For every hint, how often it was the hint for a failed attempt in the run folders under
/// `runs` (recomputed from each attempt's stored error output and script), and how often the
/// step's next attempt passed.
pub fn hint_uses(runs: &Path) -> Result<Vec<HintUse>> {
    let mut uses: Vec<HintUse> = HINTS
        .iter()
        .map(|hint| HintUse {
            id: hint.id,
            fired: 0,
            next_passed: 0,
        })
        .collect();
    let rules = crate::rules::Rules::default();
    for dir in run_folders(runs)? {
        let Ok(steps) = std::fs::read_dir(dir.join("steps")) else {
            continue;
        };
        for step in steps.flatten() {
            let record = |n: usize| -> Option<AttemptRecord> {
                let text =
                    std::fs::read_to_string(step.path().join(format!("attempt-{n}/result.json")))
                        .ok()?;
                serde_json::from_str(&text).ok()
            };
            let attempts = std::fs::read_dir(step.path()).map_or(0, Iterator::count);
            for n in 1..=attempts {
                let Some(failed) = record(n).filter(|r| !r.ok) else {
                    continue;
                };
                let attempt = step.path().join(format!("attempt-{n}"));
                let read =
                    |name: &str| std::fs::read_to_string(attempt.join(name)).unwrap_or_default();
                let stderr = with_source_lines(&read("stderr"), &read("script.py"));
                // An attempt that exited 0 failed for a declared file it did not write.
                let missing = vec!["a declared file".to_string()];
                let failure = Failure {
                    status: &failed.status,
                    stderr: &stderr,
                    missing: if failed.status.success() {
                        &missing
                    } else {
                        &[]
                    },
                    undefined: &[],
                    defined: &[],
                };
                let Some((hint, _)) = matching(&failure, &rules) else {
                    continue;
                };
                let counted = uses
                    .iter_mut()
                    .find(|u| u.id == hint.id)
                    .expect("every hint");
                counted.fired += 1;
                if record(n + 1).is_some_and(|next| next.ok) {
                    counted.next_passed += 1;
                }
            }
        }
    }
    Ok(uses)
}

/// The run folders directly under `runs`.
fn run_folders(runs: &Path) -> Result<Vec<std::path::PathBuf>> {
    let context = || format!("reading {}", runs.display());
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(runs).map_err(Error::io(context()))? {
        let dir = entry.map_err(Error::io(context()))?.path();
        if dir.join("run.json").is_file() {
            folders.push(dir);
        }
    }
    folders.sort();
    Ok(folders)
}
