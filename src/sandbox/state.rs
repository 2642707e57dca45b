//! Variables steps share: what a script left for the steps after it, as the runner inside the
//! container described it. The host reads only that JSON description, under size, depth and
//! text limits; the pickle beside it is moved and mounted, never opened.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The folder, inside the output folder, where the runner leaves the state.
pub const STATE_DIR: &str = ".planbox-state";
/// The pickle stream of the saved variables.
pub const STATE_FILE: &str = "state.pkl";
/// The runner's description of them.
pub const DESCRIPTION_FILE: &str = "state.json";
/// Where dependencies' states are mounted, read-only, one file each.
pub const STATE_MOUNT_DIR: &str = "/state";

/// Largest description accepted.
const MAX_DESCRIPTION_BYTES: u64 = 256 * 1024;
/// Deepest JSON nesting accepted in a description.
const MAX_DEPTH: usize = 8;
/// Most variables (saved or skipped) accepted.
const MAX_VARIABLES: usize = 200;
/// Longest text field kept; longer ones are cut.
const MAX_TEXT: usize = 600;

/// What a script's state should do in its container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateIo {
    /// Dependencies' state files to load before the script, in plan order: (host path of
    /// the pickle, step id).
    pub load: Vec<(PathBuf, String)>,
    /// Save the variables the script leaves when it exits 0; `None` saves nothing.
    pub save: Option<Save>,
}

/// Where a step's variables go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Save {
    /// The step's id, recorded as the setter of what it changed.
    pub step: String,
    /// Host folder that receives `state.pkl` and `state.json` (created).
    pub dir: PathBuf,
    /// Most bytes of pickled variables kept.
    pub cap: u64,
    /// Whether later steps wait for these variables: past the cap, the script then fails
    /// with [`super::Status::StateTooLarge`]; otherwise the state is only dropped.
    pub required: bool,
}

impl StateIo {
    /// The header line the runner reads before the script, when there is state to load or
    /// save: one JSON object after `#planbox `.
    pub fn header(&self) -> Option<String> {
        if self.load.is_empty() && self.save.is_none() {
            return None;
        }
        let load: Vec<serde_json::Value> = self
            .load
            .iter()
            .enumerate()
            .map(|(i, (_, step))| {
                serde_json::json!({"file": format!("{STATE_MOUNT_DIR}/{}", mount_name(i, step)), "step": step})
            })
            .collect();
        let header = serde_json::json!({
            "load": load,
            "save": self.save.is_some(),
            "step": self.save.as_ref().map(|s| s.step.as_str()).unwrap_or_default(),
            "cap": self.save.as_ref().map_or(0, |s| s.cap),
        });
        Some(format!("#planbox {header}\n"))
    }

    /// The (host path, container path) of each state to mount.
    pub fn mounts(&self) -> Vec<(PathBuf, String)> {
        self.load
            .iter()
            .enumerate()
            .map(|(i, (path, step))| {
                (
                    path.clone(),
                    format!("{STATE_MOUNT_DIR}/{}", mount_name(i, step)),
                )
            })
            .collect()
    }
}

/// A dependency's state file in the container: its place in the load order, then its step.
fn mount_name(index: usize, step: &str) -> String {
    format!("{:02}-{step}.pkl", index + 1)
}

/// What a harvest leaves once the state is taken out of the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The status, made worse when the state broke a rule.
    pub status: super::Status,
    /// The artifacts, without the state folder.
    pub artifacts: Vec<super::Artifact>,
    /// The saved variables, described.
    pub state: Option<Description>,
}

/// Take the runner's state folder out of a harvested output folder: move it to the step's
/// state folder when its variables are to be kept (the script exited 0), check its size and
/// description, and drop it otherwise (a script cannot plant a state it was not asked for).
pub fn settle(
    out_dir: &Path,
    artifacts: Vec<super::Artifact>,
    status: super::Status,
    io: &StateIo,
) -> std::io::Result<Settled> {
    let prefix = format!("{STATE_DIR}/");
    let (state_files, artifacts): (Vec<_>, Vec<_>) = artifacts
        .into_iter()
        .partition(|a| a.path == STATE_DIR || a.path.starts_with(&prefix));
    let harvested = out_dir.join(STATE_DIR);
    let keep = match (&io.save, &status) {
        (Some(save), super::Status::Exited(0)) if !state_files.is_empty() => Some(save),
        _ => None,
    };
    let Some(save) = keep else {
        if harvested.exists() {
            remove(&harvested)?;
        }
        return Ok(Settled {
            status,
            artifacts,
            state: None,
        });
    };
    if save.dir.exists() {
        std::fs::remove_dir_all(&save.dir)?;
    }
    if let Some(parent) = save.dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&harvested, &save.dir)?;
    let rejected = |why: String| -> std::io::Result<Settled> {
        // Nothing of a refused state stays to be loaded by a later step.
        remove(&save.dir)?;
        Ok(Settled {
            status: super::Status::ArtifactRejected(why),
            artifacts: artifacts.clone(),
            state: None,
        })
    };
    let description = match read(&save.dir) {
        None => return rejected("the runner left no state description".into()),
        Some(Err(why)) => return rejected(why),
        Some(Ok(description)) => description,
    };
    let pickled = std::fs::metadata(save.dir.join(STATE_FILE)).map_or(0, |m| m.len());
    // The size on disk decides, whatever the description claims.
    let over = description
        .too_large
        .as_ref()
        .map(|t| t.bytes)
        .or((pickled > save.cap).then_some(pickled));
    if let Some(bytes) = over {
        remove(&save.dir)?;
        let status = if save.required {
            super::Status::StateTooLarge {
                bytes,
                cap: save.cap,
            }
        } else {
            status
        };
        return Ok(Settled {
            status,
            artifacts,
            state: None,
        });
    }
    Ok(Settled {
        status,
        artifacts,
        state: Some(description),
    })
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// One saved variable, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Its type, e.g. `pandas.DataFrame`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The step that set this value (a dependency's, when it was passed through unchanged).
    #[serde(default)]
    pub set_by: String,
    /// Pickled size in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Shape, for tables and arrays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<u64>>,
    /// Columns and their dtypes, for DataFrames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<(String, String)>,
    /// dtype, for Series and arrays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// The index, when it is not a plain row number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// A few rows or values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    /// Its value, short (numbers, strings, small collections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Length, for collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
}

/// A top-level name that was not saved, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Why it was not saved.
    pub why: String,
}

/// A name the script imported (a module, or a function or class of an installed module),
/// which the runner imports again, by name, in the steps that load this state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// The script's name for it.
    pub name: String,
    /// What it is: `module` or `module:qualname`.
    pub of: String,
}

impl Import {
    /// Whether it is a whole module (`pd` for pandas), not a function or class of one.
    pub fn is_module(&self) -> bool {
        !self.of.contains(':')
    }
}

/// The state past the step's cap: nothing was saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TooLarge {
    /// Bytes pickled when the cap was passed.
    pub bytes: u64,
    /// The cap.
    pub cap: u64,
    /// The variable that passed it.
    #[serde(default)]
    pub largest: String,
}

/// What a step left: its variables, described.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Bytes of all saved variables.
    #[serde(default)]
    pub bytes: u64,
    /// The saved variables.
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// The names not saved.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The names imported again in the steps after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    /// Set when the variables were over the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub too_large: Option<TooLarge>,
}

/// Why a description was refused.
pub type Rejection = String;

/// Parse a description as the untrusted artifact it is: at most [`MAX_DESCRIPTION_BYTES`],
/// UTF-8, nested at most [`MAX_DEPTH`] deep, every name a plain identifier; texts are cut to
/// [`MAX_TEXT`] and stripped of control characters and terminal escapes.
pub fn parse(bytes: &[u8]) -> Result<Description, Rejection> {
    if bytes.len() as u64 > MAX_DESCRIPTION_BYTES {
        return Err(format!(
            "the state description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are read",
            bytes.len()
        ));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the state description is not UTF-8".to_string())?;
    if depth(text) > MAX_DEPTH {
        return Err(format!(
            "the state description is nested deeper than {MAX_DEPTH} levels"
        ));
    }
    let mut description: Description = serde_json::from_str(text)
        .map_err(|err| format!("the state description is not valid: {err}"))?;
    if description.variables.len() + description.skipped.len() + description.imports.len()
        > MAX_VARIABLES
    {
        return Err(format!(
            "the state description lists more than {MAX_VARIABLES} variables"
        ));
    }
    for variable in &mut description.variables {
        if !identifier(&variable.name) {
            return Err(format!(
                "the state description names a variable {:?} that is not a Python identifier",
                clean(&variable.name)
            ));
        }
        for text in [&mut variable.kind, &mut variable.set_by]
            .into_iter()
            .chain(variable.dtype.as_mut())
            .chain(variable.index.as_mut())
            .chain(variable.sample.as_mut())
            .chain(variable.value.as_mut())
        {
            *text = clean(text);
        }
        variable.columns.truncate(60);
        for (name, dtype) in &mut variable.columns {
            *name = clean(name);
            *dtype = clean(dtype);
        }
    }
    // What was not kept, or is imported again, is only a listing: an odd name there is left
    // out, not fatal.
    description.skipped.retain(|s| identifier(&s.name));
    description
        .imports
        .retain(|i| identifier(&i.name) && import_path(&i.of));
    for skipped in &mut description.skipped {
        skipped.kind = clean(&skipped.kind);
        skipped.why = clean(&skipped.why);
    }
    Ok(description)
}

/// Read and parse the description in `dir` (a state folder), if there is one.
pub fn read(dir: &Path) -> Option<Result<Description, Rejection>> {
    let path = dir.join(DESCRIPTION_FILE);
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() > MAX_DESCRIPTION_BYTES {
        return Some(Err(format!(
            "the state description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are read",
            meta.len()
        )));
    }
    Some(
        std::fs::read(&path)
            .map_err(|err| format!("the state description cannot be read: {err}"))
            .and_then(|bytes| parse(&bytes)),
    )
}

/// Deepest nesting of `[` and `{` outside strings.
fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 80
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A text cut to [`MAX_TEXT`], without terminal escapes or control characters but newlines.
/// `module` or `module:qualname`, dotted identifiers, at most 200 characters.
fn import_path(path: &str) -> bool {
    let dotted = |s: &str| s.split('.').all(identifier);
    path.len() <= 200
        && match path.split_once(':') {
            Some((module, qualname)) => dotted(module) && dotted(qualname),
            None => dotted(path),
        }
}

fn clean(text: &str) -> String {
    let stripped = crate::text::strip_escapes(text);
    let kept: String = stripped
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    crate::text::truncate_middle(&kept, MAX_TEXT)
}

#[cfg(test)]
mod tests;
