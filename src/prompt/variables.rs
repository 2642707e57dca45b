//! How a step's prompt shows the variables its dependencies left: name, type, shape, columns
//! and a few rows, so the script uses `monthly` as the DataFrame it is.

use std::fmt::Write as _;

use crate::sandbox::state::{Import, Variable};

/// One dependency's state as a step sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inherited {
    /// The variables the step gets from this dependency.
    pub variables: Vec<Variable>,
    /// Variables of this dependency that another dependency's value replaces: (name, the
    /// step whose value wins).
    pub replaced: Vec<(String, String)>,
    /// Names the dependency left that could not be kept, with why.
    pub skipped: Vec<(String, String)>,
    /// What the dependency imported that no earlier dependency did, imported again before
    /// the script runs.
    pub imports: Vec<Import>,
}

/// Columns listed per DataFrame, at most.
const COLUMNS_SHOWN: usize = 30;

/// The block for one dependency's variables (empty when it left none, imported none and
/// skipped none).
pub fn render(from: &str, inherited: &Inherited) -> String {
    let mut text = String::new();
    if !inherited.variables.is_empty() {
        text.push_str("  its variables, already defined in your script:\n");
        for variable in &inherited.variables {
            text.push_str(&render_variable(variable));
        }
    }
    if !inherited.imports.is_empty() {
        // Modules with what they are (`pd = pandas`), functions and classes by name.
        let names: Vec<String> = inherited
            .imports
            .iter()
            .map(|i| {
                if i.is_module() && i.name != i.of {
                    format!("{} (import {} as {})", i.name, i.of, i.name)
                } else {
                    i.name.clone()
                }
            })
            .collect();
        let _ = writeln!(
            text,
            "  its imports, already done in your script: {}",
            names.join(", ")
        );
    }
    for (name, winner) in &inherited.replaced {
        let _ = writeln!(
            text,
            "  its {name} is replaced by the {name} of step {winner}, which is loaded after it"
        );
    }
    // Imports are in every script and all say the same: one short line.
    let (modules, others): (Vec<_>, Vec<_>) = inherited
        .skipped
        .iter()
        .partition(|(_, why)| why.starts_with("a module"));
    if !modules.is_empty() {
        let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(text, "  its imports are not kept: {}", names.join(", "));
    }
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, why) in others {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, names)) => names.push(name),
            None => reasons.push((why, vec![name])),
        }
    }
    for (why, names) in reasons {
        let _ = writeln!(
            text,
            "  not kept from step {from} (not defined in your script): {}: {why}",
            names.join(", ")
        );
    }
    text
}

fn render_variable(variable: &Variable) -> String {
    let mut line = format!("    {}: {}", variable.name, variable.kind);
    if let Some(shape) = &variable.shape {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        let _ = write!(line, ", shape ({})", dims.join(", "));
    }
    if let Some(dtype) = &variable.dtype {
        let _ = write!(line, ", dtype {dtype}");
    }
    if let Some(len) = variable.len {
        let _ = write!(line, ", {len} items");
    }
    if let Some(value) = &variable.value {
        let _ = write!(line, " = {value}");
    }
    line.push('\n');
    if !variable.columns.is_empty() {
        let columns: Vec<String> = variable
            .columns
            .iter()
            .take(COLUMNS_SHOWN)
            .map(|(name, dtype)| format!("{name} ({dtype})"))
            .collect();
        let more = variable.columns.len().saturating_sub(COLUMNS_SHOWN);
        let _ = writeln!(
            line,
            "      columns: {}{}",
            columns.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if let Some(index) = &variable.index {
        let _ = writeln!(line, "      index: {index}");
    }
    if let Some(sample) = &variable.sample {
        line.push_str("      first rows:\n");
        for row in sample.lines().take(8) {
            let _ = writeln!(line, "        {row}");
        }
    }
    line
}
