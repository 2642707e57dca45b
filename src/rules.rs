//! Which rules for the model a run applies: every failure hint and answer rule has an id and
//! is on unless the run switches it off, so a measured run can say what each one is worth.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The rules a run switched off, by id; every other rule is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rules {
    off: BTreeSet<String>,
}

impl Rules {
    /// Every rule on but those named; an id that is not in `known` is refused with the list of
    /// known ids.
    pub fn without<'a>(
        off: impl IntoIterator<Item = &'a str>,
        known: &[&str],
    ) -> Result<Rules, String> {
        let mut rules = Rules::default();
        for id in off {
            if !known.contains(&id) {
                return Err(format!(
                    "no rule {id:?}; the rules are: {}",
                    known.join(", ")
                ));
            }
            rules.off.insert(id.to_string());
        }
        Ok(rules)
    }

    /// Whether the rule `id` applies.
    pub fn on(&self, id: &str) -> bool {
        !self.off.contains(id)
    }

    /// The ids switched off, in order.
    pub fn off(&self) -> impl Iterator<Item = &str> {
        self.off.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn only_known_rules_can_be_switched_off() {
        let rules = Rules::without(["b"], &["a", "b"]).unwrap();
        assert!(rules.on("a"));
        assert!(!rules.on("b"));
        assert_eq!(
            Rules::without(["c"], &["a", "b"]),
            Err("no rule \"c\"; the rules are: a, b".to_string())
        );
    }
}
