//! A run's final answer from what its steps printed: the `@name[value]` values taken as
//! printed when every asked name was, otherwise a model's summary whose values must be
//! grounded in the printed output; rounded as the goal asks.

use crate::rules::Rules;

use super::{
    ANSWER_TOKEN, answer_names, answer_values, answer_values_where, grounded_in, is_computed,
    round_as_asked, values_after_placeholders,
};

/// What the finished steps left for the answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Printed {
    /// Per step, in plan order: its id and what it printed, with the files it wrote named and
    /// its small text files shown whole.
    pub results: Vec<(String, String)>,
    /// Everything the steps printed and their small text files, without file names (a file
    /// may be named after an answer's format, and a file name is not an answer): what an
    /// answer value must be grounded in.
    pub text: String,
}

/// The first move towards an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Draft {
    /// No step printed anything: there is nothing to answer from, and a model asked to
    /// reformat nothing would invent a value.
    Nothing,
    /// Every asked value was printed: the answer, before rounding.
    Printed(String),
    /// A model must summarize the results (`prompt::synthesis_messages`), and [`ground`] its
    /// summary.
    Summarize,
}

/// What the steps printed decides how the answer is made.
pub fn draft(goal: &str, printed: &Printed, rules: &Rules) -> Draft {
    if printed.results.iter().all(|(_, out)| out.trim().is_empty()) {
        return Draft::Nothing;
    }
    let names = answer_names(goal);
    let values = computed_values(goal, &printed.text, rules);
    let value = |name: &String| values.iter().find(|(p, _)| p == name);
    if !names.is_empty() && names.iter().all(|n| value(n).is_some()) {
        let tokens: Vec<String> = names
            .iter()
            .filter_map(value)
            .map(|(p, v)| format!("@{p}[{v}]"))
            .collect();
        return Draft::Printed(tokens.join(" "));
    }
    Draft::Summarize
}

/// A model's summary with its `@name[value]` values replaced: a printed value wins, a
/// written one counts only when grounded in what the steps printed, and a name with neither
/// says it could not be determined.
pub fn ground(goal: &str, summary: &str, printed: &Printed, rules: &Rules) -> String {
    let names = answer_names(goal);
    if names.is_empty() {
        return summary.to_string();
    }
    let values = computed_values(goal, &printed.text, rules);
    let written = computed_values(goal, summary, rules);
    let fixed: Vec<String> = names
        .iter()
        .map(|name| {
            let from_summary = written
                .iter()
                .find(|(p, v)| p == name && grounded_in(v, &printed.text));
            match values.iter().find(|(p, _)| p == name).or(from_summary) {
                Some((p, v)) => format!("@{p}[{v}]"),
                None => format!("(could not determine @{name})"),
            }
        })
        .collect();
    let prose = ANSWER_TOKEN.replace_all(summary, "").trim().to_string();
    format!("{prose}\n\n{}", fixed.join(" "))
}

/// The steps' results as they are, for when no model may summarize them (the token budget
/// is spent).
pub fn unsummarized(printed: &Printed) -> String {
    printed
        .results
        .iter()
        .map(|(id, out)| format!("[{id}]\n{}", crate::text::truncate_middle(out.trim(), 800)))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The final answer (rounded as the goal asks), and whether it holds every asked name.
pub fn finish(goal: &str, answer: &str, rules: &Rules) -> (String, bool) {
    let answer = round_as_asked(goal, answer, rules);
    let values = answer_values(&answer);
    let complete = answer_names(goal)
        .iter()
        .all(|n| values.iter().any(|(p, _)| p == n));
    (answer, complete)
}

/// The answer the run folder's steps give under `rules`, the model's summary (when one was
/// asked for and stored) standing in for a new model call: how a run's answer would read with
/// some answer rules switched off, without running anything again.
pub fn recompose(goal: &str, printed: &Printed, summary: Option<&str>, rules: &Rules) -> String {
    let answer = match draft(goal, printed, rules) {
        Draft::Nothing => "Could not answer: no step produced any result.".to_string(),
        Draft::Printed(answer) => answer,
        Draft::Summarize => {
            let summary = summary.map_or_else(|| unsummarized(printed), str::to_string);
            ground(goal, &summary, printed, rules)
        }
    };
    finish(goal, &answer, rules).0
}

/// The computed `@name[value]` values in `text`, a value printed after its placeholder read
/// as the value when that rule is on.
fn computed_values(goal: &str, text: &str, rules: &Rules) -> Vec<(String, String)> {
    let keep = |_: &str, value: &str| is_computed(value, rules);
    if rules.on("placeholder_then_value") {
        answer_values_where(&values_after_placeholders(goal, text), keep)
    } else {
        answer_values_where(text, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const GOAL: &str = "Which region? Answer as @region[name] @total[value].";

    fn printed(text: &str) -> Printed {
        Printed {
            results: vec![("only".into(), text.into())],
            text: text.into(),
        }
    }

    #[test]
    fn printed_values_are_the_answer_and_nan_is_not() {
        let out = printed("@region[south]\n@total[42.5]\n@total[nan]");
        assert_eq!(
            draft(GOAL, &out, &Rules::default()),
            Draft::Printed("@region[south] @total[42.5]".into())
        );
        let nan = printed("@region[south] @total[nan]");
        assert_eq!(draft(GOAL, &nan, &Rules::default()), Draft::Summarize);
        let off = Rules::without(["no_result"], &["no_result"]).unwrap();
        assert_eq!(
            draft(GOAL, &nan, &off),
            Draft::Printed("@region[south] @total[nan]".into())
        );
        assert_eq!(
            draft(GOAL, &printed(" \n"), &Rules::default()),
            Draft::Nothing
        );
    }

    #[test]
    fn a_value_printed_after_the_goals_placeholder_is_the_answer() {
        let goal = "Which region? Answer as @region[name] @total[value].";
        let out = printed("@region[name] south\n@total[value] 42.5\n");
        assert_eq!(
            draft(goal, &out, &Rules::default()),
            Draft::Printed("@region[south] @total[42.5]".into())
        );
        let off = Rules::without(["placeholder_then_value"], &["placeholder_then_value"]).unwrap();
        assert_eq!(
            draft(goal, &out, &off),
            Draft::Printed("@region[name] @total[value]".into())
        );
    }

    #[test]
    fn a_summary_keeps_only_grounded_values() {
        let out = printed("south leads with 42.519");
        assert_eq!(
            ground(
                GOAL,
                "South leads. @region[south] @total[99]",
                &out,
                &Rules::default()
            ),
            "South leads.\n\n@region[south] (could not determine @total)"
        );
        assert_eq!(
            ground(
                GOAL,
                "@region[south] @total[42.52]",
                &out,
                &Rules::default()
            ),
            "\n\n@region[south] @total[42.52]"
        );
    }
}
