//! Expected answer values: whether the `@name[value]` values an answer gives are the ones a
//! user (`--expect`) or a suite expected, and what differs when they are not.

use super::answer_values;

/// Whether `got` matches `want`: numbers within 1e-6 (relative past 1), else text ignoring case;
/// comma-separated lists part by part.
pub(crate) fn matches(want: &str, got: &str) -> bool {
    let (want_parts, got_parts): (Vec<&str>, Vec<&str>) =
        (want.split(',').collect(), got.split(',').collect());
    want_parts.len() == got_parts.len()
        && want_parts.iter().zip(&got_parts).all(|(w, g)| {
            match (w.trim().parse::<f64>(), g.trim().parse::<f64>()) {
                (Ok(w), Ok(g)) => (w - g).abs() <= 1e-6 * w.abs().max(1.0),
                _ => w.trim().to_lowercase() == g.trim().to_lowercase(),
            }
        })
}

/// Each expected `(name, value)` the answer lacks or gives otherwise, described; empty when
/// the answer gives every one.
pub fn mismatches(expect: &[(String, String)], answer: &str) -> Vec<String> {
    let values = answer_values(answer);
    expect
        .iter()
        .filter_map(
            |(name, want)| match values.iter().find(|(n, _)| n == name) {
                Some((_, got)) if matches(want, got) => None,
                Some((_, got)) => Some(format!("@{name}: expected {want}, got {got}")),
                None => Some(format!("@{name}: missing (expected {want})")),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn expected_values_match_numbers_within_tolerance_and_text_ignoring_case() {
        assert!(matches("0.5", "0.5000000001"));
        assert!(!matches("0.5", "0.51"));
        assert!(matches("north", " North"));
        assert!(!matches("north", "northeast"));
        assert!(matches("1.5, 2", "1.5,2.0"));
        assert!(!matches("1, 2", "1"));
    }

    #[test]
    fn mismatches_name_wrong_and_missing_values() {
        let expect = [
            ("region".to_string(), "south".to_string()),
            ("growth_pct".to_string(), "15.2".to_string()),
        ];
        assert_eq!(
            mismatches(&expect, "South grew most. @region[South] @growth_pct[15.2]"),
            Vec::<String>::new()
        );
        assert_eq!(
            mismatches(&expect, "@region[west] @growth[15.2]"),
            vec![
                "@region: expected south, got west".to_string(),
                "@growth_pct: missing (expected 15.2)".to_string()
            ]
        );
    }
}
