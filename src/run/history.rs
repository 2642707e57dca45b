//! Past runs at hand: what each run folder under a runs directory says of itself (goal,
//! start, status, answer, duration, tokens), read without changing anything in it.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{RunInfo, State, civil, read_json};
use crate::error::{Error, Result};
use crate::event::RunEvent;

/// How a run stands, from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// It finished and achieved its goal.
    Achieved,
    /// It finished without achieving its goal.
    NotAchieved,
    /// No end is recorded: still running, or stopped (`planbox resume` continues it).
    Unfinished,
}

impl RunStatus {
    /// The word a listing shows.
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Achieved => "achieved",
            RunStatus::NotAchieved => "not achieved",
            RunStatus::Unfinished => "unfinished",
        }
    }
}

/// How a step of a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// An attempt passed.
    Done,
    /// It was attempted and no attempt passed.
    Failed,
    /// Never attempted (a dependency failed, or a budget ran out first).
    NotRun,
}

impl StepStatus {
    /// The one place that decides a step's status, for every renderer.
    pub fn of(state: &State, id: &str, attempts: usize) -> StepStatus {
        if state.done.contains_key(id) {
            StepStatus::Done
        } else if attempts > 0 {
            StepStatus::Failed
        } else {
            StepStatus::NotRun
        }
    }

    /// The words a person reads.
    pub fn label(self) -> &'static str {
        match self {
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::NotRun => "not run",
        }
    }
}

/// Numbers of the `attempt-<n>` folders of a step, in order.
pub fn attempt_numbers(step_dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(step_dir) else {
        return Vec::new();
    };
    let mut numbers: Vec<usize> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("attempt-")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// One run folder, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Run id (the folder's name).
    pub id: String,
    /// The folder.
    pub dir: PathBuf,
    /// Unix seconds when it was created.
    pub started: u64,
    /// The goal.
    pub goal: String,
    /// How it stands.
    pub status: RunStatus,
    /// The final answer, when one was given.
    pub answer: Option<String>,
    /// Wall time in milliseconds, once finished.
    pub millis: Option<u64>,
    /// Tokens used: the total once finished, else the most the events recorded.
    pub tokens: u64,
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
pub fn utc(secs: u64) -> String {
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let (h, m) = ((secs / 3600) % 24, (secs / 60) % 60);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// The end of a run as its events tell it; a torn or unknown line is passed over.
#[derive(Default)]
struct Ending {
    answer: Option<String>,
    finished: Option<(bool, u64)>,
    tokens: u64,
}

fn read_events(path: &Path) -> Ending {
    let mut ending = Ending::default();
    let Ok(file) = std::fs::File::open(path) else {
        return ending;
    };
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<RunEvent>(&line) else {
            continue;
        };
        match event {
            RunEvent::Attempted { tokens, .. } => ending.tokens = ending.tokens.max(tokens),
            RunEvent::Answered { answer } => ending.answer = Some(answer),
            RunEvent::RunFinished {
                achieved,
                tokens,
                millis,
            } => {
                ending.tokens = tokens;
                ending.finished = Some((achieved, millis));
            }
            // A resumed run starts again: what it ends with is what counts.
            RunEvent::RunStarted { .. } => {
                ending.finished = None;
                ending.answer = None;
            }
            _ => {}
        }
    }
    ending
}

/// Tokens a run spent over all its sessions (a run, then each resume). A session's meter
/// goes on from the sessions before it, so its counts include theirs; a session whose counts
/// are below what came before restarted from zero (a run resumed before the count was
/// carried over) and adds to it. A session cut short counts what its last attempt had used.
pub fn tokens_spent(dir: &Path) -> u64 {
    let Ok(file) = std::fs::File::open(dir.join("events.jsonl")) else {
        return 0;
    };
    let combine = |total: u64, session: u64| {
        if session >= total {
            session
        } else {
            total + session
        }
    };
    let (mut total, mut session) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<RunEvent>(&line) {
            Ok(RunEvent::RunStarted { .. }) => {
                total = combine(total, session);
                session = 0;
            }
            Ok(RunEvent::Attempted { tokens, .. } | RunEvent::RunFinished { tokens, .. }) => {
                session = session.max(tokens);
            }
            _ => {}
        }
    }
    combine(total, session)
}

/// Summarise one run folder (one that holds `run.json`).
pub fn summarize(dir: &Path) -> Result<RunSummary> {
    let info: RunInfo = read_json(&dir.join("run.json"))?;
    let ending = read_events(&dir.join("events.jsonl"));
    let status = match ending.finished {
        Some((true, _)) => RunStatus::Achieved,
        Some((false, _)) => RunStatus::NotAchieved,
        None => RunStatus::Unfinished,
    };
    Ok(RunSummary {
        id: info.id,
        dir: dir.to_path_buf(),
        started: info.created,
        goal: info.goal,
        status,
        answer: ending.answer,
        millis: ending.finished.map(|(_, millis)| millis),
        tokens: ending.tokens,
    })
}

/// Every run under `runs_dir`, oldest first; folders without `run.json` are not runs and are
/// passed over, a damaged `run.json` is reported in `damaged` rather than failing the list.
pub fn list(runs_dir: &Path) -> Result<Listing> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Listing::default());
        }
        Err(source) => {
            return Err(Error::Io {
                context: format!("listing {}", runs_dir.display()),
                source,
            });
        }
    };
    let mut listing = Listing::default();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("run.json").is_file() {
            continue;
        }
        match summarize(&dir) {
            Ok(summary) => listing.runs.push(summary),
            Err(err) => listing.damaged.push((dir, err.to_string())),
        }
    }
    listing
        .runs
        .sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
    listing.damaged.sort();
    Ok(listing)
}

/// What [`list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The runs, oldest first.
    pub runs: Vec<RunSummary>,
    /// Folders whose `run.json` could not be read, with why.
    pub damaged: Vec<(PathBuf, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Sink;
    use crate::run::RunFolder;

    fn run_in(runs: &Path, goal: &str) -> RunFolder {
        let (folder, _) = RunFolder::create(runs, goal, &[], "img", serde_json::json!({})).unwrap();
        folder
    }

    #[test]
    fn tokens_add_up_over_sessions_carried_or_restarted() {
        let runs = tempfile::tempdir().unwrap();
        let folder = run_in(runs.path(), "mean fare");
        let started = || RunEvent::RunStarted {
            run: "r".into(),
            goal: "g".into(),
        };
        let attempted = |tokens| RunEvent::Attempted {
            step: "a".into(),
            attempt: 1,
            tokens,
            ok: false,
            problem: None,
        };
        // A session cut short after 300 tokens; a resume that restarted from zero (200
        // more); one that carried the count on (to 650).
        for event in [
            started(),
            attempted(100),
            attempted(300),
            started(),
            attempted(200),
            started(),
            attempted(560),
            RunEvent::RunFinished {
                achieved: true,
                tokens: 650,
                millis: 1,
            },
        ] {
            folder.emit(&event);
        }
        assert_eq!(tokens_spent(folder.dir()), 650);
        let restarted = run_in(runs.path(), "other");
        for event in [started(), attempted(300), started(), attempted(200)] {
            restarted.emit(&event);
        }
        assert_eq!(tokens_spent(restarted.dir()), 500);
        assert_eq!(tokens_spent(runs.path()), 0, "no events, no tokens");
    }

    #[test]
    fn lists_finished_and_unfinished_runs_with_their_answers() {
        let runs = tempfile::tempdir().unwrap();
        let done = run_in(runs.path(), "mean fare");
        done.emit(&RunEvent::Attempted {
            step: "a".into(),
            attempt: 1,
            tokens: 120,
            ok: true,
            problem: None,
        });
        done.emit(&RunEvent::Answered {
            answer: "@mean[34.7]".into(),
        });
        done.emit(&RunEvent::RunFinished {
            achieved: true,
            tokens: 150,
            millis: 4200,
        });
        let open = run_in(runs.path(), "median age");
        open.emit(&RunEvent::Attempted {
            step: "a".into(),
            attempt: 1,
            tokens: 80,
            ok: false,
            problem: Some("exit 1".into()),
        });
        // Not a run: no run.json.
        std::fs::create_dir(runs.path().join("scratch")).unwrap();
        // A torn last line is passed over.
        let mut events = std::fs::OpenOptions::new()
            .append(true)
            .open(open.dir().join("events.jsonl"))
            .unwrap();
        std::io::Write::write_all(&mut events, b"{\"event\":\"run_fin").unwrap();

        let listing = list(runs.path()).unwrap();
        assert!(listing.damaged.is_empty());
        let by_goal = |goal: &str| listing.runs.iter().find(|r| r.goal == goal).unwrap();
        assert_eq!(listing.runs.len(), 2);
        let done = by_goal("mean fare");
        assert_eq!(done.status, RunStatus::Achieved);
        assert_eq!(done.answer.as_deref(), Some("@mean[34.7]"));
        assert_eq!((done.millis, done.tokens), (Some(4200), 150));
        let open = by_goal("median age");
        assert_eq!(open.status, RunStatus::Unfinished);
        assert_eq!(
            (open.answer.as_deref(), open.millis, open.tokens),
            (None, None, 80)
        );
    }

    #[test]
    fn a_resumed_run_counts_its_last_ending_and_a_damaged_one_is_named() {
        let runs = tempfile::tempdir().unwrap();
        let folder = run_in(runs.path(), "goal");
        folder.emit(&RunEvent::RunFinished {
            achieved: false,
            tokens: 10,
            millis: 5,
        });
        folder.emit(&RunEvent::RunStarted {
            run: "again".into(),
            goal: "goal".into(),
        });
        assert_eq!(
            summarize(folder.dir()).unwrap().status,
            RunStatus::Unfinished
        );
        let broken = runs.path().join("broken");
        std::fs::create_dir(&broken).unwrap();
        std::fs::write(broken.join("run.json"), "{").unwrap();
        let listing = list(runs.path()).unwrap();
        assert_eq!(listing.runs.len(), 1);
        assert_eq!(listing.damaged.len(), 1);
        assert_eq!(listing.damaged[0].0, broken);
        assert!(list(&runs.path().join("absent")).unwrap().runs.is_empty());
        assert_eq!(utc(1_796_195_408), "2026-12-02 07:10");
    }
}
