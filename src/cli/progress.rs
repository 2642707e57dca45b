//! Progress for people: on a terminal, a live tree of the plan (each step's state and elapsed
//! time, tokens so far, replans left); elsewhere, one line per event.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use planbox::event::{Human, PlannedStep, RunEvent, Sink, describe};
use planbox::text::strip_escapes;

/// Progress on stderr: live when stderr is a terminal, lines otherwise.
pub(super) enum Progress {
    /// One line per event.
    Lines(Human<std::io::Stderr>),
    /// The live tree.
    Live(Live),
}

impl Progress {
    /// The right view for this stderr; `replans` is the run's replan budget.
    pub(super) fn for_stderr(replans: usize) -> Progress {
        let stderr = std::io::stderr();
        if stderr.is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb") {
            Progress::Live(Live::new(ProgressDrawTarget::stderr(), replans))
        } else {
            Progress::Lines(Human(Mutex::new(stderr)))
        }
    }
}

impl Sink for Progress {
    fn emit(&self, event: &RunEvent) {
        match self {
            Progress::Lines(human) => human.emit(event),
            Progress::Live(live) => live.emit(event),
        }
    }
}

/// The live tree: a header line and one line per step, indented by dependency depth.
pub(super) struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    state: Mutex<LiveState>,
}

struct LiveState {
    goal: String,
    tokens: u64,
    replans_left: usize,
    /// The last progress: steps ended, steps planned, seconds left.
    progress: Option<(usize, usize, Option<u64>)>,
    /// Each step's line: its label (id and title) and bar.
    steps: BTreeMap<String, (String, ProgressBar)>,
    /// Steps whose last attempt failed: their next write is a repair.
    repairing: BTreeSet<String>,
    /// Steps now running their fallback instruction.
    falling_back: BTreeSet<String>,
}

const TICK: Duration = Duration::from_millis(120);

impl Live {
    fn new(target: ProgressDrawTarget, replans: usize) -> Live {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {wide_msg} {elapsed:>4}")
                .expect("valid template"),
        );
        header.enable_steady_tick(TICK);
        Live {
            multi,
            header,
            state: Mutex::new(LiveState {
                goal: String::new(),
                tokens: 0,
                replans_left: replans,
                progress: None,
                steps: BTreeMap::new(),
                repairing: BTreeSet::new(),
                falling_back: BTreeSet::new(),
            }),
        }
    }

    fn step_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}{spinner:.dim} {wide_msg} {elapsed:>4}")
            .expect("valid template")
    }

    fn done_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}  {wide_msg}").expect("valid template")
    }

    fn refresh_header(&self, state: &LiveState) {
        let far = state
            .progress
            .map_or(String::new(), |(done, total, eta_s)| {
                format!(" · {}", how_far(done, total, eta_s))
            });
        self.header.set_message(format!(
            "{}{far} · {} tokens · {} replan(s) left",
            one_line(&state.goal, 50),
            state.tokens,
            state.replans_left
        ));
    }

    /// Lay out a (new) plan: steps already shown keep their line and state.
    fn lay_out(&self, state: &mut LiveState, steps: &[PlannedStep]) {
        let ids: BTreeSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        state.steps.retain(|id, (_, bar)| {
            let keep = ids.contains(id.as_str());
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });
        for (step, depth) in steps.iter().zip(depths(steps)) {
            if state.steps.contains_key(&step.id) {
                continue;
            }
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(Self::step_style());
            bar.set_prefix(format!("{}└ ", "  ".repeat(depth + 1)));
            // Ids and titles come from the model: no terminal escapes reach the screen.
            let label = strip_escapes(&format!("{} {}", step.id, step.title));
            bar.set_message(format!("{label}: waiting"));
            state.steps.insert(step.id.clone(), (label, bar));
        }
    }

    fn set(&self, state: &LiveState, step: &str, what: &str, ticking: bool) {
        if let Some((label, bar)) = state.steps.get(step) {
            let fallback = if state.falling_back.contains(step) {
                "fallback: "
            } else {
                ""
            };
            bar.set_message(strip_escapes(&format!("{label}: {fallback}{what}")));
            if ticking {
                bar.set_style(Self::step_style());
                bar.enable_steady_tick(TICK);
            } else {
                bar.disable_steady_tick();
                bar.set_style(Self::done_style());
                bar.tick();
            }
        }
    }
}

impl Sink for Live {
    fn emit(&self, event: &RunEvent) {
        let mut state = self.state.lock().expect("progress poisoned");
        match event {
            RunEvent::RunStarted { goal, .. } => {
                state.goal = goal.clone();
                self.refresh_header(&state);
            }
            RunEvent::Planned { steps, .. } => self.lay_out(&mut state, steps),
            RunEvent::Writing { step, attempt } => {
                let what = if state.repairing.contains(step) {
                    format!("repairing (attempt {attempt})")
                } else {
                    format!("writing (attempt {attempt})")
                };
                self.set(&state, step, &what, true);
            }
            RunEvent::Running { step, attempt } => {
                self.set(&state, step, &format!("running (attempt {attempt})"), true)
            }
            RunEvent::Attempted {
                step, tokens, ok, ..
            } => {
                state.tokens = *tokens;
                if !ok {
                    state.repairing.insert(step.clone());
                }
                self.refresh_header(&state);
            }
            RunEvent::StepDone { step, reused } => {
                let what = if *reused {
                    "✓ done (kept)"
                } else {
                    "✓ done"
                };
                self.set(&state, step, what, false);
            }
            RunEvent::StepFailed { step, problem } => {
                let problem = one_line(problem, 80);
                self.set(&state, step, &format!("✗ failed: {problem}"), false);
            }
            RunEvent::StepSkipped { step, because } => self.set(
                &state,
                step,
                &format!("– skipped ({because} failed)"),
                false,
            ),
            RunEvent::FallingBack { step, .. } => {
                state.repairing.remove(step);
                state.falling_back.insert(step.clone());
                self.set(&state, step, "starting", true);
            }
            RunEvent::Replanning { left, .. } => {
                state.replans_left = *left;
                self.refresh_header(&state);
                let _ = self.multi.println(strip_escapes(&describe(event)));
            }
            RunEvent::PlanningFailed { .. } | RunEvent::BudgetSpent { .. } => {
                let _ = self.multi.println(strip_escapes(&describe(event)));
            }
            RunEvent::Progress { done, total, eta_s } => {
                state.progress = Some((*done, *total, *eta_s));
                self.refresh_header(&state);
            }
            RunEvent::RunFinished { tokens, .. } => {
                state.tokens = *tokens;
                self.header
                    .finish_with_message(strip_escapes(&describe(event)));
                // Finished bars are drawn once more and then left alone, so the lines printed
                // after the run (answer, report paths) never interleave with redraws.
                for (_, bar) in state.steps.values() {
                    bar.disable_steady_tick();
                    bar.finish();
                }
            }
            RunEvent::Profiled { .. } | RunEvent::Answered { .. } | RunEvent::StateSaved { .. } => {
            }
        }
    }
}

/// "step 3 of 7 · 28% · about 2 min left": the step under way (the last one once all ended),
/// the share of steps ended and the time left.
fn how_far(done: usize, total: usize, eta_s: Option<u64>) -> String {
    let step = (done + 1).min(total.max(1));
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    format!(
        "step {step} of {total} · {percent}% · {}",
        planbox::event::describe_eta(eta_s)
    )
}

/// `text` on one line of at most `max` characters: lines joined, the rest cut with "…". A
/// line drawn by the live tree must not wrap, or its redraw leaves copies behind.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn depths(steps: &[PlannedStep]) -> Vec<usize> {
    planbox::plan::depths(
        steps
            .iter()
            .map(|s| (s.id.as_str(), s.depends_on.as_slice())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(id: &str, deps: &[&str]) -> PlannedStep {
        PlannedStep {
            id: id.into(),
            title: format!("title {id}"),
            depends_on: deps.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn tree_lines_are_single_lines_of_bounded_length() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 6), "abcde…");
        assert_eq!(one_line(&"é".repeat(100), 5).chars().count(), 5);
    }

    #[test]
    fn the_live_tree_tracks_states_tokens_and_replans() {
        let live = Live::new(ProgressDrawTarget::hidden(), 3);
        let emit = |e: RunEvent| live.emit(&e);
        let line = |id: &str| live.state.lock().unwrap().steps[id].1.message();
        let attempted = |step: &str, attempt: usize, tokens: u64, ok: bool| RunEvent::Attempted {
            step: step.into(),
            attempt,
            tokens,
            ok,
            problem: None,
        };
        let writing = |step: &str, attempt: usize| RunEvent::Writing {
            step: step.into(),
            attempt,
        };
        emit(RunEvent::RunStarted {
            run: "r".into(),
            goal: "count rows".into(),
        });
        emit(RunEvent::Planned {
            version: 1,
            steps: vec![planned("s1", &[]), planned("s2", &["s1"])],
            notes: vec![],
        });
        assert_eq!(line("s2"), "s2 title s2: waiting");
        emit(writing("s1", 1));
        assert_eq!(line("s1"), "s1 title s1: writing (attempt 1)");
        emit(attempted("s1", 1, 200, false));
        emit(writing("s1", 2));
        assert_eq!(line("s1"), "s1 title s1: repairing (attempt 2)");
        emit(attempted("s1", 2, 420, true));
        emit(RunEvent::StepDone {
            step: "s1".into(),
            reused: false,
        });
        assert_eq!(line("s1"), "s1 title s1: ✓ done");
        emit(attempted("s2", 1, 500, false));
        emit(RunEvent::FallingBack {
            step: "s2".into(),
            problem: "exit 1".into(),
        });
        emit(writing("s2", 2));
        assert_eq!(line("s2"), "s2 title s2: fallback: writing (attempt 2)");
        emit(RunEvent::Replanning {
            step: "s2".into(),
            left: 2,
        });
        emit(RunEvent::Planned {
            version: 2,
            steps: vec![
                planned("s1", &[]),
                PlannedStep {
                    title: "evil \u{1b}]0;pwned\u{7}\u{1b}[2J".into(),
                    ..planned("s3", &["s1"])
                },
            ],
            notes: vec![],
        });
        let state = live.state.lock().unwrap();
        assert_eq!(state.steps["s1"].1.message(), "s1 title s1: ✓ done");
        let fresh = state.steps["s3"].1.message();
        assert!(
            fresh.starts_with("s3 evil") && !fresh.contains('\u{1b}') && !fresh.contains('\u{7}'),
            "{fresh:?}"
        );
        assert_eq!(state.steps["s3"].1.prefix(), "    └ ");
        assert!(
            !state.steps.contains_key("s2"),
            "a replaced step leaves the tree"
        );
        assert_eq!(
            live.header.message(),
            "count rows · 500 tokens · 2 replan(s) left"
        );
        drop(state);
        emit(RunEvent::Progress {
            done: 1,
            total: 2,
            eta_s: Some(150),
        });
        assert_eq!(
            live.header.message(),
            "count rows · step 2 of 2 · 50% · about 3 min left · 500 tokens · 2 replan(s) left"
        );
        assert_eq!(
            how_far(0, 4, None),
            "step 1 of 4 · 0% · estimating time left"
        );
        assert_eq!(
            how_far(4, 4, Some(20)),
            "step 4 of 4 · 100% · under a minute left"
        );
    }
}
