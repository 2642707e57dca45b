//! The `@name[value]` answer format: the names a goal asks for, the values printed, whether
//! a value is grounded in what the steps printed, rounding as the goal asks, and comparing an
//! answer with an expectation. [`compose`] builds a run's final answer from these.

pub mod compose;
pub mod expect;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use crate::rules::Rules;

/// The answer rules a run can switch off: id, what it does, the case that motivated it.
pub static RULES: &[(&str, &str, &str)] = &[
    (
        "no_result",
        "NaN, None, inf and the like are not results",
        "a mean over an empty selection printed as @mean[nan]",
    ),
    (
        "placeholder_then_value",
        "a value printed after its name's placeholder from the goal (`@region[name] south`) is the value",
        "the demo's script printed `@top_region[name] south` and the answer read `name`",
    ),
    (
        "rounding",
        "values are rounded to the precision the goal asks for",
        "steps that print full precision where the goal asks for two decimals",
    ),
];

/// The ids of [`RULES`].
pub fn rule_ids() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|(id, _, _)| *id)
}

/// An answer's `@name[` opening; the name is the first group.
static ANSWER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"@([A-Za-z_][A-Za-z0-9_]*)\[").expect("valid regex"));

/// An answer token `@name[value]`: the name, then the value (one line, no `]`).
pub(crate) static ANSWER_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"@([A-Za-z_][A-Za-z0-9_]*)\[([^\]\n]*)\]").expect("valid regex"));

/// The `@name[value]` names a goal asks for, in order.
pub fn answer_names(goal: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for capture in ANSWER_NAME.captures_iter(goal) {
        let name = capture[1].to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Every `@name[value]` printed with a non-empty value, last one per name winning.
pub fn answer_values(text: &str) -> Vec<(String, String)> {
    answer_values_where(text, |_, _| true)
}

/// [`answer_values`] keeping only the `(name, value)` pairs `keep` accepts, before the last
/// of each name wins.
pub fn answer_values_where(text: &str, keep: impl Fn(&str, &str) -> bool) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = Vec::new();
    for capture in ANSWER_TOKEN.captures_iter(text) {
        let (name, value) = (capture[1].to_string(), capture[2].trim().to_string());
        if value.is_empty() || !keep(&name, &value) {
            continue;
        }
        values.retain(|(n, _)| n != &name);
        values.push((name, value));
    }
    values
}

/// `text` with every `@name[placeholder] value` read as `@name[value]`, where the placeholder
/// is the one the goal writes between that name's brackets and a value follows on the line
/// (up to the next `@name[`): a script that copied the goal's format and printed its value
/// after it. A placeholder printed alone stays as it is (it can be the real answer), and so
/// does a name the goal writes with several placeholders.
pub fn values_after_placeholders(goal: &str, text: &str) -> String {
    // A name the goal gives several placeholders (`@answer[yes]` ... `@answer[no]`) lists
    // its possible values: what follows one of them is no value of its own.
    let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in ANSWER_TOKEN.captures_iter(goal) {
        written
            .entry(c[1].to_string())
            .or_default()
            .insert(c[2].trim().to_lowercase());
    }
    let placeholders: BTreeMap<String, String> = written
        .into_iter()
        .filter_map(
            |(name, all)| match all.into_iter().collect::<Vec<_>>()[..] {
                [ref one] if !one.is_empty() => Some((name, one.clone())),
                _ => None,
            },
        )
        .collect();
    if placeholders.is_empty() {
        return text.to_string();
    }
    let mut read = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while let Some(token) = ANSWER_TOKEN.captures(rest) {
            let whole = token.get(0).expect("a match has group 0");
            read.push_str(&rest[..whole.start()]);
            let after = &rest[whole.end()..];
            let until = ANSWER_NAME.find(after).map_or(after.len(), |m| m.start());
            let value = after[..until].trim().trim_start_matches([':', '=']).trim();
            let copied = placeholders
                .get(&token[1])
                .is_some_and(|p| *p == token[2].trim().to_lowercase());
            if copied && !value.is_empty() && !value.contains(']') {
                read.push_str(&format!("@{}[{value}]", &token[1]));
                // What ended the value stays: the line's end, or a space before the next token.
                if after[..until].ends_with('\n') {
                    read.push('\n');
                } else if until < after.len() {
                    read.push(' ');
                }
                rest = &after[until..];
            } else {
                read.push_str(whole.as_str());
                rest = after;
            }
        }
        read.push_str(rest);
    }
    read
}

/// Whether a printed value is a computed result under `rules`: not NaN or the like.
pub fn is_computed(value: &str, rules: &Rules) -> bool {
    !(rules.on("no_result") && is_no_result(value))
}

/// Whether a printed value is no result at all: not a number, infinite, or empty ("nan",
/// "None", "null", "inf").
pub fn is_no_result(value: &str) -> bool {
    let value = value
        .trim()
        .trim_start_matches(['-', '+'])
        .to_ascii_lowercase();
    [
        "nan", "none", "null", "inf", "infinity", "n/a", "<na>", "nat",
    ]
    .contains(&value.as_str())
}

/// Whether an answer value comes from `text`: it appears there, or it is a number that one of
/// the numbers printed there rounds to (15.2 from 15.191933, 3 from 2.96 but not from 2.4).
pub fn grounded_in(value: &str, text: &str) -> bool {
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?").expect("valid regex"));
    let Ok(wanted) = value.trim().parse::<f64>() else {
        return text.contains(value);
    };
    let decimals = value
        .trim()
        .split_once('.')
        .map_or(0, |(_, frac)| frac.len())
        .min(12);
    let scale = 10f64.powi(decimals as i32);
    NUMBER.find_iter(text).any(|found| {
        let token = found.as_str();
        token.parse::<f64>().is_ok_and(|printed| {
            let printed_decimals = token.split_once('.').map_or(0, |(_, f)| f.len());
            let rounds = printed_decimals >= decimals
                && ((printed * scale).round() - wanted * scale).abs() < 0.5;
            token == value.trim() || rounds
        })
    })
}

/// The decimal places a piece of a goal asks for: every "to N decimal(s)" it names, N in
/// digits.
fn decimal_places(text: &str) -> BTreeSet<usize> {
    static ASKED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\bto\s+(\w+)\s+decimal").expect("valid regex"));
    ASKED
        .captures_iter(text)
        .filter_map(|c| c[1].parse::<usize>().ok())
        .collect()
}

/// The answer with its `@name[number]` values rounded as the goal asks ("rounded to 2
/// decimal places"), only values with more decimals than asked. A value's precision is the one
/// the text after its `@name[...]` names, up to the next `@name[...]` (`@mean[m] rounded to 2
/// decimal places, @r[r] rounded to 3`); failing that, the goal's, when it names only one.
/// Anything else is left as printed.
pub fn round_as_asked(goal: &str, answer: &str, rules: &Rules) -> String {
    static DECIMAL_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"@([A-Za-z_][A-Za-z0-9_]*)\[(-?\d+\.\d+)\]").expect("valid regex")
    });
    // Every "to N decimal(s)" counts, "rounded" or not: "rounded to 1 decimal and the
    // correlation to 3 decimals" names two precisions.
    if !rules.on("rounding") || !goal.to_lowercase().contains("round") {
        return answer.to_string();
    }
    let one = |places: BTreeSet<usize>| match places.into_iter().collect::<Vec<_>>()[..] {
        [places] => Some(places),
        _ => None,
    };
    let overall = one(decimal_places(goal));
    let marks: Vec<(usize, String)> = ANSWER_NAME
        .captures_iter(goal)
        .map(|c| (c.get(0).map_or(0, |m| m.start()), c[1].to_string()))
        .collect();
    let mut own: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, (start, name)) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(goal.len(), |(next, _)| *next);
        own.entry(name.clone())
            .or_default()
            .extend(decimal_places(&goal[*start..end]));
    }
    DECIMAL_TOKEN
        .replace_all(answer, |c: &regex::Captures| {
            let places = match own.get(&c[1]) {
                Some(places) if !places.is_empty() => one(places.clone()),
                _ => overall,
            };
            let value = &c[2];
            let decimals = value.split_once('.').map_or(0, |(_, f)| f.len());
            match (value.parse::<f64>(), places) {
                (Ok(number), Some(places)) if decimals > places => {
                    format!("@{}[{number:.places$}]", &c[1])
                }
                _ => c[0].to_string(),
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn round(goal: &str, answer: &str) -> String {
        round_as_asked(goal, answer, &Rules::default())
    }

    #[test]
    fn answers_are_rounded_as_the_goal_asks() {
        let answer = "Skew is small. @skew[0.1405] @n[4440] @kurt[-0.25] @name[x1.234]";
        assert_eq!(
            round("All values should be rounded to 2 decimal places.", answer),
            "Skew is small. @skew[0.14] @n[4440] @kurt[-0.25] @name[x1.234]"
        );
        assert_eq!(
            round("Report it rounded off to 3 decimals.", "@m[0.25789]"),
            "@m[0.258]"
        );
        assert_eq!(
            round(
                "The mean should be calculated rounding up to 2 decimal places.",
                "@m[0.8796]"
            ),
            "@m[0.88]"
        );
        // No precision, or two different ones: left as printed.
        assert_eq!(round("What is the mean?", "@m[0.25789]"), "@m[0.25789]");
        assert_eq!(
            round(
                "r rounded to 2 decimal places, p rounded to 4 decimal places.",
                "@r[0.12345]"
            ),
            "@r[0.12345]"
        );
        assert_eq!(
            round(
                "growth rounded to 1 decimal and the correlation to 3 decimals.",
                "@c[-0.2551]"
            ),
            "@c[-0.2551]"
        );
        // Each value with the precision its own description names.
        let format = "1. @count[n] an integer. 2. @mean[m] rounded to 2 decimal places. 3. @acc[a] a percentage rounded to 3 decimal places.";
        assert_eq!(
            round(format, "@count[0] @mean[-89.04421682] @acc[97.123456]"),
            "@count[0] @mean[-89.04] @acc[97.123]"
        );
        assert_eq!(
            round(
                "Answer @a[x] and @b[y], all rounded to 2 decimal places.",
                "@a[1.2345] @b[2.3456]"
            ),
            "@a[1.23] @b[2.35]",
            "a name without a precision of its own takes the goal's only one"
        );
        assert_eq!(
            round("Give it to 2 decimals.", "@m[0.25789]"),
            "@m[0.25789]"
        );
        // A precision spelled out is left to the script: it made no difference on the dev
        // questions, whose final steps round as the goal says.
        assert_eq!(
            round("Round it to two decimal places.", "@m[0.25789]"),
            "@m[0.25789]"
        );
    }

    #[test]
    fn a_rounded_printed_number_grounds_an_answer_value() {
        let printed = "growth_pct: 15.191933\ncount 2.96\nregion south";
        assert!(grounded_in("south", printed));
        assert!(grounded_in("15.2", printed));
        assert!(grounded_in("15.19", printed));
        assert!(grounded_in("3", printed));
        assert!(!grounded_in("15.3", printed));
        assert!(!grounded_in("2.4", printed));
        assert!(!grounded_in("north", printed));
        // A value more precise than anything printed was not read from the output.
        assert!(!grounded_in("15.1919331", printed));
        assert!(!grounded_in("2.960", printed));
        // Numbers match whole printed numbers, not parts of them.
        assert!(!grounded_in("5.19", printed));
        assert!(!grounded_in("91", printed));
    }

    #[test]
    fn a_value_printed_after_its_placeholder_is_the_value() {
        let goal = "Which region? Answer as @top_region[name] @revenue_2023[value].";
        assert_eq!(
            values_after_placeholders(
                goal,
                "@top_region[name] south\n@revenue_2023[value]: 37525.5\nsouth leads\n"
            ),
            "@top_region[south]\n@revenue_2023[37525.5]\nsouth leads\n"
        );
        assert_eq!(
            values_after_placeholders(goal, "@top_region[Name] south @revenue_2023[value] 12"),
            "@top_region[south] @revenue_2023[12]"
        );
        // A placeholder alone can be the answer itself; a real value is left as printed.
        for kept in [
            "@top_region[name]\n",
            "@top_region[south] north\n",
            "@top_region[name] @revenue_2023[value]\n",
            "@other[name] south\n",
        ] {
            assert_eq!(values_after_placeholders(goal, kept), kept);
        }
        assert_eq!(
            values_after_placeholders("What is the mean?", "@mean[value] 3\n"),
            "@mean[value] 3\n"
        );
        let choice = "Answer @answer[yes] if it holds, otherwise @answer[no].";
        assert_eq!(
            values_after_placeholders(choice, "@answer[no] (p=0.21)\n"),
            "@answer[no] (p=0.21)\n",
            "a name with several placeholders lists its values"
        );
    }

    #[test]
    fn nan_and_the_like_are_no_result() {
        for none in ["nan", "NaN", " -inf ", "None", "null", "NaT"] {
            assert!(is_no_result(none), "{none}");
        }
        for value in ["0", "nanometre", "Nancy", "0.14"] {
            assert!(!is_no_result(value), "{value}");
        }
    }

    #[test]
    fn answer_names_and_values_follow_the_at_format() {
        assert_eq!(
            answer_names("Report @mean_age[value] and @count[n]."),
            vec!["mean_age", "count"]
        );
        assert_eq!(
            answer_values("x\n@mean_age[29.70]\n@count[891]\n@mean_age[29.7]\n"),
            vec![
                ("count".to_string(), "891".to_string()),
                ("mean_age".to_string(), "29.7".to_string())
            ]
        );
    }
}
