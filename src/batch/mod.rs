//! A batch: a suite of goals, one JSON object a line, each with the answer values it expects;
//! each finished goal judged against them; the results as a JUnit XML report for CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::agent::Finished;
use crate::answer::expect::mismatches;
use crate::error::{Error, Result};

mod rescore;

pub use rescore::{HintUse, Rescored, hint_uses, rescore};

/// One goal of a suite: `{"id", "goal", "inputs": [...], "expect": {"name": "value"}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Goal {
    /// Names the goal in the results.
    pub id: String,
    /// What to find out.
    pub goal: String,
    /// Input files; relative ones are resolved against the suite file's folder.
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    /// The answer values the goal must give, by name: text or a number.
    #[serde(default)]
    pub expect: BTreeMap<String, serde_json::Value>,
}

impl Goal {
    /// The expected values as `(name, value)` text pairs, in name order.
    pub fn expected(&self) -> Vec<(String, String)> {
        self.expect
            .iter()
            .map(|(name, want)| {
                let want = match want {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), want)
            })
            .collect()
    }
}

/// The goals of the suite file at `path`, in order; blank lines are skipped.
pub fn read(path: &Path) -> Result<Vec<Goal>> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    parse(&text, path)
}

/// The goals of a suite's text; `path` names the suite in errors and anchors relative inputs.
fn parse(text: &str, path: &Path) -> Result<Vec<Goal>> {
    let base = path.parent().unwrap_or(Path::new("."));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let mut goal: Goal = serde_json::from_str(line).map_err(|err| Error::Io {
                context: format!("{} line {}: not a goal object", path.display(), n + 1),
                // The suite file cannot be read as goals: the parser says where in the line.
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            })?;
            // An absolute input stays as it is: `join` keeps it whole.
            goal.inputs = goal.inputs.iter().map(|input| base.join(input)).collect();
            if !id_is_a_name(&goal.id) {
                return Err(Error::Io {
                    context: format!(
                        "{} line {}: goal id {:?} must be letters, digits, '.', '-' and '_' (it names the goal's recording folder)",
                        path.display(),
                        n + 1,
                        goal.id
                    ),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                });
            }
            Ok(goal)
        })
        .collect::<Result<Vec<Goal>>>()
        .and_then(|goals| {
            let mut seen = std::collections::HashSet::new();
            match goals.iter().find(|goal| !seen.insert(goal.id.as_str())) {
                Some(twice) => Err(Error::Io {
                    context: format!("{}: goal id {:?} is used twice", path.display(), twice.id),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                }),
                None => Ok(goals),
            }
        })
}

/// Whether a goal id can name a folder: 1 to 64 of letters, digits, `.`, `-`, `_`, and not
/// only dots.
fn id_is_a_name(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !id.chars().all(|c| c == '.')
}

/// How a goal's run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The agent finished, with the goal achieved or not.
    Finished(Finished),
    /// The run could not start or broke off; the error, described.
    Failed(String),
}

/// Where a goal stands after its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The agent achieved the goal.
    Achieved,
    /// The agent finished without achieving it.
    NotAchieved,
    /// The run failed.
    Error,
}

impl Status {
    /// The status as the results name it: `achieved`, `not_achieved` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Achieved => "achieved",
            Status::NotAchieved => "not_achieved",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One goal's run judged against the values its suite line expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The goal's id.
    pub id: String,
    /// How its run ended.
    pub status: Status,
    /// The answer, or the error of a run that failed.
    pub answer: String,
    /// Each expected value the answer lacks or gives otherwise, described.
    pub mismatches: Vec<String>,
}

impl Verdict {
    /// Whether the goal passes: its run did not fail and gave every expected value.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.status != Status::Error
    }

    /// Why the goal fails (its mismatches, else its status); `None` when it passes.
    pub fn failure(&self) -> Option<String> {
        match (self.passed(), self.mismatches.is_empty()) {
            (true, _) => None,
            (false, true) => Some(self.status.to_string()),
            (false, false) => Some(self.mismatches.join("; ")),
        }
    }

    /// The goal as a JUnit test case that took `time`.
    pub fn case(&self, time: Duration) -> Case {
        Case {
            name: self.id.clone(),
            failure: self.failure(),
            time,
        }
    }
}

/// Judge `goal` by how its run ended.
pub fn judge(goal: &Goal, outcome: Outcome) -> Verdict {
    let (status, answer) = match outcome {
        Outcome::Finished(finished) if finished.achieved => (Status::Achieved, finished.answer),
        Outcome::Finished(finished) => (Status::NotAchieved, finished.answer),
        Outcome::Failed(error) => (Status::Error, error),
    };
    Verdict {
        id: goal.id.clone(),
        status,
        mismatches: mismatches(&goal.expected(), &answer),
        answer,
    }
}

/// One test case of a JUnit report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
    /// How long it took.
    pub time: Duration,
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML document: one test suite named `suite`, one test case per case.
pub fn junit(suite: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
        xml_escape(suite),
        cases.len()
    );
    for case in cases {
        xml.push_str(&format!(
            "  <testcase name=\"{}\" time=\"{:.3}\"",
            xml_escape(&case.name),
            case.time.as_millis() as f64 / 1000.0
        ));
        match &case.failure {
            None => xml.push_str("/>\n"),
            Some(message) => xml.push_str(&format!(
                ">\n    <failure message=\"{}\"/>\n  </testcase>\n",
                xml_escape(message)
            )),
        }
    }
    xml.push_str("</testsuite>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn goal(id: &str, expect: serde_json::Value) -> Goal {
        Goal {
            id: id.into(),
            goal: "which region grew most?".into(),
            inputs: vec![],
            expect: serde_json::from_value(expect).unwrap(),
        }
    }

    fn finished(achieved: bool, answer: &str) -> Outcome {
        Outcome::Finished(Finished {
            achieved,
            answer: answer.into(),
            ended_by: None,
            dir: PathBuf::from("runs/r"),
        })
    }

    #[test]
    fn goal_ids_must_name_a_folder_and_be_unique() {
        let path = Path::new("s.jsonl");
        for bad in ["../up", "a/b", "", "..", "with space"] {
            let line = serde_json::json!({"id": bad, "goal": "g"}).to_string();
            let err = parse(&line, path).unwrap_err().to_string();
            assert!(err.contains("must be letters, digits"), "{bad}: {err}");
        }
        let twice = "{\"id\": \"q1\", \"goal\": \"g\"}\n{\"id\": \"q1\", \"goal\": \"h\"}\n";
        let err = parse(twice, path).unwrap_err().to_string();
        assert!(err.contains("\"q1\" is used twice"), "{err}");
        assert!(parse("{\"id\": \"q-1.b_2\", \"goal\": \"g\"}", path).is_ok());
    }

    #[test]
    fn a_suite_resolves_relative_inputs_against_its_folder_and_skips_blank_lines() {
        let text = concat!(
            r#"{"id": "a", "goal": "g", "inputs": ["data/x.csv", "/abs/y.csv"], "expect": {"n": 3}}"#,
            "\n\n",
            r#"{"id": "b", "goal": "which region grew most?"}"#,
            "\n",
        );
        assert_eq!(
            parse(text, Path::new("suites/s.jsonl")).unwrap(),
            vec![
                Goal {
                    goal: "g".into(),
                    inputs: vec!["suites/data/x.csv".into(), "/abs/y.csv".into()],
                    ..goal("a", serde_json::json!({"n": 3}))
                },
                goal("b", serde_json::json!({})),
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_a_goal_is_named_by_its_number() {
        let text = "{\"id\": \"a\", \"goal\": \"g\"}\n\n{\"id\": \"b\"}\n";
        let err = parse(text, Path::new("s.jsonl")).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            "s.jsonl line 3: not a goal object: missing field `goal` at line 1 column 11"
        );
    }

    #[test]
    fn a_missing_suite_is_an_error_naming_it() {
        let err = read(Path::new("/nonexistent/suite.jsonl")).unwrap_err();
        assert_eq!(err.to_string(), "reading /nonexistent/suite.jsonl");
    }

    #[test]
    fn expected_numbers_and_text_become_text() {
        assert_eq!(
            goal("a", serde_json::json!({"region": "South", "pct": 15.2})).expected(),
            vec![
                ("pct".to_string(), "15.2".to_string()),
                ("region".to_string(), "South".to_string())
            ]
        );
    }

    #[test]
    fn an_achieved_goal_with_its_expected_values_passes() {
        let verdict = judge(
            &goal("a", serde_json::json!({"region": "south"})),
            finished(true, "South. @region[South]"),
        );
        assert_eq!(
            verdict,
            Verdict {
                id: "a".into(),
                status: Status::Achieved,
                answer: "South. @region[South]".into(),
                mismatches: vec![],
            }
        );
        assert_eq!(verdict.failure(), None);
    }

    #[test]
    fn an_achieved_goal_with_a_wrong_value_fails_naming_the_value() {
        let verdict = judge(
            &goal("a", serde_json::json!({"region": "North", "pct": 1})),
            finished(true, "@region[South] @pct[1.0]"),
        );
        assert_eq!(
            verdict.failure(),
            Some("@region: expected North, got South".into())
        );
    }

    #[test]
    fn a_goal_not_achieved_passes_only_on_its_expected_values() {
        let unexpecting = judge(&goal("a", serde_json::json!({})), finished(false, "no"));
        assert_eq!(
            (unexpecting.status, unexpecting.passed()),
            (Status::NotAchieved, true)
        );
        let expecting = judge(
            &goal("a", serde_json::json!({"n": 1})),
            finished(false, "no"),
        );
        assert_eq!(expecting.failure(), Some("@n: missing (expected 1)".into()));
    }

    #[test]
    fn a_failed_run_fails_with_its_error_as_the_answer() {
        let verdict = judge(
            &goal("a", serde_json::json!({})),
            Outcome::Failed("docker request failed".into()),
        );
        assert_eq!(
            (verdict.status, verdict.answer.as_str(), verdict.failure()),
            (Status::Error, "docker request failed", Some("error".into()))
        );
    }

    #[test]
    fn junit_counts_failures_and_escapes_names_and_messages() {
        let xml = junit(
            "suite & co",
            &[
                Case {
                    name: "a".into(),
                    failure: None,
                    time: Duration::from_millis(5),
                },
                Case {
                    name: "b<".into(),
                    failure: Some("x & \"y\"".into()),
                    time: Duration::from_millis(1250),
                },
            ],
        );
        assert_eq!(
            xml,
            concat!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                "<testsuite name=\"suite &amp; co\" tests=\"2\" failures=\"1\">\n",
                "  <testcase name=\"a\" time=\"0.005\"/>\n",
                "  <testcase name=\"b&lt;\" time=\"1.250\">\n",
                "    <failure message=\"x &amp; &quot;y&quot;\"/>\n",
                "  </testcase>\n",
                "</testsuite>\n",
            )
        );
    }
}
