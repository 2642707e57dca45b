//! A finished run as something a person runs again by hand: an nbformat-4 notebook (the goal
//! and plan as markdown, then each done step's final, passing script as a code cell) or the
//! same as one Python file. Cells come in dependency order; in one kernel each script finds
//! the variables its dependencies left, just as the sandbox loaded them.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::plan::{Plan, Step};
use crate::run::RunFolder;

/// One exported step: its markdown and its final script, paths made local.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The step.
    pub step: String,
    /// Title and instruction, as markdown.
    pub markdown: String,
    /// The script that passed.
    pub code: String,
}

/// What an export holds: the run's header and one cell per done step.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The goal and the plan, as markdown.
    pub header: String,
    /// The done steps, dependencies first.
    pub cells: Vec<Cell>,
}

/// Where inputs are read from in the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    /// Where the run read them on this host (`run.json`).
    Recorded,
    /// In this folder, by name (the user copied them there).
    In(PathBuf),
}

/// Gather the final scripts of `plan`'s done steps. An input's sandbox path `/data/<name>`
/// becomes its local path; a file an earlier step wrote becomes a plain name, as that
/// step's cell writes it into the working folder.
pub fn gather(folder: &RunFolder, plan: &Plan, inputs: &Inputs) -> Result<Export> {
    let info = folder.info()?;
    let state = folder.state();
    let mut header = format!("# {}\n\nPlan:\n\n", one_line(&info.goal));
    for step in plan.topological_order() {
        let deps = if step.depends_on.is_empty() {
            String::new()
        } else {
            format!(" (after {})", step.depends_on.join(", "))
        };
        header.push_str(&format!(
            "1. **{}**: {}{deps}\n",
            step.id,
            one_line(&step.title)
        ));
    }
    header.push_str(&format!(
        "\nExported from planbox run `{}`: only each step's final, passing script.\n",
        info.id
    ));
    let local: Vec<(String, String)> = info
        .inputs
        .iter()
        .map(|input| {
            let path = match inputs {
                Inputs::Recorded => input.path.clone(),
                Inputs::In(dir) => dir.join(&input.name),
            };
            (input.name.clone(), path.to_string_lossy().into_owned())
        })
        .collect();
    let mut cells = Vec::new();
    for step in plan.topological_order() {
        let Some(done) = state.done.get(&step.id) else {
            continue;
        };
        let path = folder
            .attempt_dir(&step.id, done.attempt)?
            .join("script.py");
        let script = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        cells.push(Cell {
            step: step.id.clone(),
            markdown: step_markdown(step),
            code: localise(&script, &local),
        });
    }
    Ok(Export { header, cells })
}

fn step_markdown(step: &Step) -> String {
    let mut text = format!(
        "## {} (`{}`)\n\n{}",
        one_line(&step.title),
        step.id,
        step.instruction
    );
    if !step.uses.is_empty() {
        text.push_str(&format!("\n\nUses: {}", step.uses.join(", ")));
    }
    if !step.produces.is_empty() {
        text.push_str(&format!("\n\nLeaves: {}", step.produces.join(", ")));
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `/data/<name>` as the export reads it: an input's local path, else the plain name (a
/// file an earlier cell wrote into the working folder).
fn localise(script: &str, inputs: &[(String, String)]) -> String {
    static DATA: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| Regex::new(r#"(['"])/data/([^'"\s\\)]+)"#).expect("valid"));
    DATA.replace_all(script, |found: &regex::Captures<'_>| {
        let (quote, name) = (&found[1], &found[2]);
        let path = inputs
            .iter()
            .find(|(input, _)| input == name)
            .map_or_else(|| name.to_string(), |(_, path)| path.clone());
        format!("{quote}{path}")
    })
    .into_owned()
}

impl Export {
    /// The notebook, nbformat 4.5.
    pub fn notebook(&self) -> Value {
        let mut cells = vec![markdown_cell("header", &self.header)];
        for cell in &self.cells {
            cells.push(markdown_cell(&format!("{}-md", cell.step), &cell.markdown));
            cells.push(json!({
                "cell_type": "code",
                "id": cell_id(&format!("{}-code", cell.step)),
                "metadata": {},
                "execution_count": null,
                "outputs": [],
                "source": source_lines(&cell.code),
            }));
        }
        json!({
            "cells": cells,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        })
    }

    /// The same as one Python file: markdown as comments, each script in dependency order.
    pub fn script(&self) -> String {
        let mut text = comment(&self.header);
        for cell in &self.cells {
            text.push('\n');
            text.push_str(&comment(&cell.markdown));
            text.push_str(cell.code.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Write `export` as a notebook to `path`.
pub fn write_notebook(export: &Export, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&export.notebook()).expect("serializable");
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// Write `export` as one Python file to `path`.
pub fn write_script(export: &Export, path: &Path) -> Result<()> {
    crate::fsutil::write_atomic(path, export.script().as_bytes())
}

fn markdown_cell(id: &str, text: &str) -> Value {
    json!({
        "cell_type": "markdown",
        "id": cell_id(id),
        "metadata": {},
        "source": source_lines(text),
    })
}

/// nbformat 4.5 cell ids: 1 to 64 of letters, digits, `-` and `_`.
fn cell_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// A cell's source as nbformat stores it: lines, each but the last with its newline.
fn source_lines(text: &str) -> Vec<String> {
    let text = text.trim_end();
    text.split_inclusive('\n').map(str::to_string).collect()
}

fn comment(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                "#\n".to_string()
            } else {
                format!("# {l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn inputs_become_local_paths_and_earlier_files_plain_names() {
        let script = "df = pd.read_csv('/data/sales.csv')\nx = open(\"/data/north.txt\").read()";
        let local = vec![("sales.csv".to_string(), "/home/me/sales.csv".to_string())];
        assert_eq!(
            localise(script, &local),
            "df = pd.read_csv('/home/me/sales.csv')\nx = open(\"north.txt\").read()"
        );
    }

    #[test]
    fn a_notebook_is_nbformat_4_with_ids_and_line_sources() {
        let export = Export {
            header: "# goal\n".into(),
            cells: vec![Cell {
                step: "load data".into(),
                markdown: "## load".into(),
                code: "a = 1\nprint(a)\n".into(),
            }],
        };
        let notebook = export.notebook();
        assert_eq!(notebook["nbformat"], 4);
        assert_eq!(notebook["cells"].as_array().unwrap().len(), 3);
        let code = &notebook["cells"][2];
        assert_eq!(code["cell_type"], "code");
        assert_eq!(code["id"], "load_data-code");
        assert_eq!(code["source"], json!(["a = 1\n", "print(a)"]));
        assert_eq!(code["outputs"], json!([]));
        assert_eq!(export.script(), "# # goal\n\n# ## load\na = 1\nprint(a)\n");
    }
}
