//! Where one step's attempts stand: the conversation a repair builds on, the scripts that
//! already failed, and how many repairs are left.

use std::collections::HashMap;

use crate::llm::{Message, Request};
use crate::prompt;

/// Largest script accepted from the model.
const MAX_SCRIPT: usize = 64 * 1024;

/// Repeats of an already failed script, per step, that do not use up a repair: the script is
/// not run, and the next write samples more freely.
const FREE_REPEATS: usize = 2;

/// Sampling temperature for the writes after a model returned a script that already failed.
const RESAMPLE_TEMPERATURE: f32 = 0.8;

/// Where a step's attempts stand.
pub(super) struct Attempts {
    /// The step's own request, which every repair builds on.
    first: Vec<Message>,
    /// What the next write sends.
    messages: Vec<Message>,
    /// Attempts made in this folder before this call (an earlier run, a fallback).
    before: usize,
    /// Attempts made in this call.
    made: usize,
    /// Attempts that use up a repair.
    counted: usize,
    /// Repeats of a failed script left that do not use up a repair.
    free_repeats: usize,
    /// Sampling temperature; set once the model repeated a failed script.
    temperature: Option<f32>,
    /// Each script that ran and failed, with its problem.
    failed: HashMap<String, String>,
    /// The last problem.
    pub(super) problem: String,
}

/// What a reply gives to run.
pub(super) enum Checked {
    /// A script to run.
    Run(String),
    /// Nothing to run; the next write is already set up. The script, when there was one, is
    /// kept in the attempt's folder.
    Rejected {
        problem: String,
        script: Option<String>,
    },
}

impl Attempts {
    pub(super) fn new(first: Vec<Message>, before: usize) -> Self {
        Attempts {
            messages: first.clone(),
            first,
            before,
            made: 0,
            counted: 0,
            free_repeats: FREE_REPEATS,
            temperature: None,
            failed: HashMap::new(),
            problem: "no attempt was made".into(),
        }
    }

    pub(super) fn may_try(&self, max_repairs: usize) -> bool {
        self.counted <= max_repairs
    }

    /// Begin an attempt: its number in the step's folder.
    pub(super) fn start(&mut self) -> usize {
        self.made += 1;
        self.counted += 1;
        self.before + self.made
    }

    pub(super) fn request(&self) -> Request {
        Request {
            temperature: self.temperature,
            ..Request::new(self.messages.clone())
        }
    }

    /// Check a reply before a container is spent on it.
    pub(super) fn check(&mut self, reply: &str) -> Checked {
        let code = match crate::text::extract_code(reply) {
            None => {
                return self.reject_reply(
                    reply,
                    "The reply held no Python code. Reply with the script in one ```python code block.".into(),
                );
            }
            Some(code) if code.len() > MAX_SCRIPT => {
                let problem = format!(
                    "The script is {} bytes; keep it under {MAX_SCRIPT}.",
                    code.len()
                );
                return self.reject_reply(reply, problem);
            }
            Some(code) => crate::text::with_conventional_imports(&code),
        };
        // A "repair" that returns a script which already failed would fail the same way: it
        // is not run again. The next write starts afresh from the step's request and the
        // error (shown the script, the model copies it) and samples more freely.
        let Some(raised) = self.failed.get(&code).cloned() else {
            return Checked::Run(code);
        };
        self.temperature = Some(RESAMPLE_TEMPERATURE);
        if self.free_repeats > 0 {
            self.free_repeats -= 1;
            self.counted -= 1;
        }
        self.messages = prompt::rewrite_messages(self.first.clone(), &raised);
        self.problem = raised.clone();
        Checked::Rejected {
            problem: raised,
            script: Some(code),
        }
    }

    /// A reply that cannot be run goes back to the model with what is wrong with it.
    fn reject_reply(&mut self, reply: &str, problem: String) -> Checked {
        let mut messages = self.first.clone();
        messages.push(Message::assistant(crate::text::truncate_middle(
            reply, 2000,
        )));
        messages.push(Message::user(problem.clone()));
        self.messages = messages;
        self.problem = problem.clone();
        Checked::Rejected {
            problem,
            script: None,
        }
    }

    /// Make the next write's request smaller after the model refused it as too long: the
    /// failed script and its exchange go, the step's own request keeps its head and tail.
    /// False when there is nothing left to cut.
    pub(super) fn shrink(&mut self) -> bool {
        let before: usize = self.messages.iter().map(|m| m.content.len()).sum();
        let mut messages: Vec<Message> = self.first.clone();
        if let Some(last) = messages.last_mut() {
            let keep = (last.content.len() / 2).max(200);
            last.content = crate::text::truncate_middle(&last.content, keep);
        }
        if self.made > 1 || !self.failed.is_empty() {
            messages.push(Message::user(format!(
                "The last attempt failed: {}",
                crate::text::truncate_middle(&self.problem, 1500)
            )));
        }
        let after: usize = messages.iter().map(|m| m.content.len()).sum();
        if after >= before {
            return false;
        }
        self.messages = messages;
        true
    }

    /// A script ran and failed: the next write repairs it.
    pub(super) fn failed(&mut self, script: String, problem: String) {
        self.messages = prompt::repair_messages(self.first.clone(), &script, &problem);
        self.failed.insert(script, problem.clone());
        self.problem = problem;
    }
}
