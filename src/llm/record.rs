//! Record and replay by content: `--record DIR` writes every exchange as `<key>-<n>.json`
//! (request and reply, no headers, secrets redacted), where the key is a hash of the
//! normalised request (its messages, schema, temperature and reply limit; a request carries no
//! time or id) and `n` counts the requests with that key. `--replay DIR` serves, for each
//! request, the reply recorded for its key, so steps in parallel and goals of a batch draw
//! their own replies whatever order they ask in. A request with no recording fails loudly,
//! naming the step and showing where it differs from the nearest recording, which turns a
//! recorded session into a CI test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Llm, Reply, Request};
use crate::error::{Error, Result};

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// What was asked.
    pub request: Request,
    /// What came back.
    pub reply: Reply,
}

/// The key of a request: the first 16 hex digits of the sha256 of its JSON (fields in a
/// fixed order, so equal requests give equal keys).
pub fn request_key(request: &Request) -> String {
    let text = serde_json::to_string(request).expect("requests serialize");
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Wraps a model and writes each exchange to a folder.
#[derive(Debug)]
pub struct Recorder<L> {
    inner: L,
    dir: PathBuf,
    seen: Mutex<HashMap<String, usize>>,
    secrets: Vec<String>,
}

impl<L: Llm> Recorder<L> {
    /// Record `inner`'s exchanges into `dir` (created if missing); every string in `secrets`
    /// is replaced by `<redacted>` before anything is written. Exchanges already in `dir`
    /// are kept, and counted: a second session with the same requests adds occurrences.
    pub fn new(inner: L, dir: &Path, secrets: Vec<String>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let secrets = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (key, n) in recorded_names(dir)? {
            let count = seen.entry(key).or_default();
            *count = (*count).max(n);
        }
        Ok(Recorder {
            inner,
            dir: dir.to_path_buf(),
            seen: Mutex::new(seen),
            secrets,
        })
    }
}

impl<L: Llm> Llm for Recorder<L> {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let key = request_key(request);
        let reply = self.inner.complete(request).await?;
        let n = {
            let mut seen = self.seen.lock().expect("recorder poisoned");
            let count = seen.entry(key.clone()).or_default();
            *count += 1;
            *count
        };
        let exchange = Exchange {
            request: request.clone(),
            reply: reply.clone(),
        };
        let mut text = serde_json::to_string_pretty(&exchange).expect("exchanges serialize");
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        let path = self.dir.join(format!("{key}-{n}.json"));
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
        Ok(reply)
    }
}

/// The (key, occurrence) of every `<key>-<n>.json` in `dir`.
fn recorded_names(dir: &Path) -> Result<Vec<(String, usize)>> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    Ok(entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (key, n) = name.strip_suffix(".json")?.rsplit_once('-')?;
            Some((key.to_string(), n.parse().ok()?))
        })
        .collect())
}

/// Serves a recording back by content.
#[derive(Debug)]
pub struct Replay {
    /// The exchanges of each key, in the order they were recorded.
    by_key: HashMap<String, Vec<Exchange>>,
    /// Every exchange, for the nearest match when a request has no recording.
    all: Vec<Exchange>,
    /// Replies served so far, by key.
    served: Mutex<HashMap<String, usize>>,
    dir: PathBuf,
}

impl Replay {
    /// Load every `*.json` exchange in `dir`: `<key>-<n>.json` files, and `NNNN.json`
    /// files of older recordings, each keyed by its request.
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir)
            .map_err(|err| Error::Replay(format!("cannot read {}: {err}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        if paths.is_empty() {
            return Err(Error::Replay(format!(
                "{} holds no recorded exchanges (*.json)",
                dir.display()
            )));
        }
        // Occurrences of one key in order: by the number after the key, else by name.
        let order = |path: &PathBuf| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let n = stem
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(0);
            (n, stem.to_string())
        };
        paths.sort_by_key(order);
        let mut by_key: HashMap<String, Vec<Exchange>> = HashMap::new();
        let mut all = Vec::new();
        for path in &paths {
            let text = std::fs::read_to_string(path)
                .map_err(|err| Error::Replay(format!("cannot read {}: {err}", path.display())))?;
            let exchange: Exchange = serde_json::from_str(&text).map_err(|err| {
                Error::Replay(format!("{} is not an exchange: {err}", path.display()))
            })?;
            by_key
                .entry(request_key(&exchange.request))
                .or_default()
                .push(exchange.clone());
            all.push(exchange);
        }
        Ok(Replay {
            by_key,
            all,
            served: Mutex::default(),
            dir: dir.to_path_buf(),
        })
    }

    /// How many exchanges were served so far.
    pub fn served(&self) -> usize {
        self.served.lock().expect("replay poisoned").values().sum()
    }

    /// Why `request` has no recording: the step it is for, and where it differs from the
    /// recorded request nearest to it.
    fn unrecorded(&self, request: &Request) -> Error {
        let got = serde_json::to_value(request).expect("requests serialize");
        let nearest = self
            .all
            .iter()
            .map(|exchange| {
                let want = serde_json::to_value(&exchange.request).expect("requests serialize");
                (shared_prefix(&want.to_string(), &got.to_string()), want)
            })
            .max_by_key(|(shared, _)| *shared);
        let difference = nearest
            .and_then(|(_, want)| first_difference("$", &want, &got))
            .unwrap_or_else(|| "no recorded request is like it".into());
        Error::Replay(format!(
            "{} has no recording of this request{}; nearest recorded request differs at {difference}: record the session again",
            self.dir.display(),
            step_of(request).map_or_else(String::new, |step| format!(" (step: {step})")),
        ))
    }
}

/// Bytes two texts share from their start.
fn shared_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// The step a request is for, from its prompt: the step's title, or planning.
fn step_of(request: &Request) -> Option<String> {
    let last = request.messages.last()?;
    if let Some(title) = last
        .content
        .lines()
        .find_map(|line| line.strip_prefix("This step: "))
    {
        return Some(crate::text::truncate_middle(title, 80));
    }
    last.content
        .contains("Reply with {\"steps\"")
        .then(|| "planning".to_string())
}

/// The first place two JSON values differ, as a path and both sides (cut short).
fn first_difference(
    path: &str,
    want: &serde_json::Value,
    got: &serde_json::Value,
) -> Option<String> {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y)),
        _ if want == got => None,
        _ => Some(format!(
            "{path}: recorded {}, asked {}",
            crate::text::truncate_middle(&want.to_string(), 160),
            crate::text::truncate_middle(&got.to_string(), 160)
        )),
    }
}

impl Llm for Replay {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let key = request_key(request);
        let Some(recorded) = self.by_key.get(&key) else {
            return Err(self.unrecorded(request));
        };
        let n = {
            let mut served = self.served.lock().expect("replay poisoned");
            let count = served.entry(key).or_default();
            *count += 1;
            *count
        };
        match recorded.get(n - 1) {
            Some(exchange) => Ok(exchange.reply.clone()),
            None => Err(Error::Replay(format!(
                "{} holds {} recording{} of this request{} and it was asked {n} times: record the session again",
                self.dir.display(),
                recorded.len(),
                if recorded.len() == 1 { "" } else { "s" },
                step_of(request).map_or_else(String::new, |step| format!(" (step: {step})")),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, Usage};

    /// A model that answers each request with its last message, reversed.
    struct Echo;

    impl Llm for Echo {
        async fn complete(&self, request: &Request) -> Result<Reply> {
            let text: String = request
                .messages
                .last()
                .unwrap()
                .content
                .chars()
                .rev()
                .collect();
            Ok(Reply {
                text,
                usage: Usage::default(),
                model: "echo".into(),
                mode: None,
                latency: std::time::Duration::ZERO,
            })
        }
    }

    fn ask(text: &str) -> Request {
        Request::new(vec![Message::system("sys"), Message::user(text)])
    }

    #[tokio::test]
    async fn replies_follow_the_request_whatever_order_it_comes_in() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::new(Echo, dir.path(), vec![]).unwrap();
        for text in [
            "This step: load\nabc",
            "This step: chart\nxyz",
            "again",
            "again",
        ] {
            recorder.complete(&ask(text)).await.unwrap();
        }
        let replay = Replay::open(dir.path()).unwrap();
        // Asked in another order, as parallel steps would.
        assert_eq!(replay.complete(&ask("again")).await.unwrap().text, "niaga");
        assert_eq!(
            replay
                .complete(&ask("This step: chart\nxyz"))
                .await
                .unwrap()
                .text,
            "zyx\ntrahc :pets sihT"
        );
        assert_eq!(
            replay
                .complete(&ask("This step: load\nabc"))
                .await
                .unwrap()
                .text,
            "cba\ndaol :pets sihT"
        );
        assert_eq!(replay.complete(&ask("again")).await.unwrap().text, "niaga");
        assert_eq!(replay.served(), 4);
        let third = replay
            .complete(&ask("again"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            third.contains("holds 2 recordings of this request and it was asked 3 times"),
            "{third}"
        );
    }

    #[tokio::test]
    async fn an_unrecorded_request_names_its_step_and_the_nearest_difference() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::new(Echo, dir.path(), vec![]).unwrap();
        recorder
            .complete(&ask("This step: load\nread sales.csv"))
            .await
            .unwrap();
        recorder
            .complete(&ask("something else entirely"))
            .await
            .unwrap();
        let replay = Replay::open(dir.path()).unwrap();
        let err = replay
            .complete(&ask("This step: load\nread sales.xlsx"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no recording of this request (step: load)"),
            "{err}"
        );
        assert!(err.contains("$.messages[1].content: recorded"), "{err}");
        assert!(
            err.contains("sales.csv") && err.contains("sales.xlsx"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_second_recording_into_the_same_folder_adds_occurrences() {
        let dir = tempfile::tempdir().unwrap();
        Recorder::new(Echo, dir.path(), vec![])
            .unwrap()
            .complete(&ask("same"))
            .await
            .unwrap();
        Recorder::new(Echo, dir.path(), vec![])
            .unwrap()
            .complete(&ask("same"))
            .await
            .unwrap();
        let key = request_key(&ask("same"));
        assert!(dir.path().join(format!("{key}-1.json")).is_file());
        assert!(dir.path().join(format!("{key}-2.json")).is_file());
    }

    #[test]
    fn equal_requests_have_equal_keys_and_any_field_changes_it() {
        let base = ask("x");
        assert_eq!(request_key(&base), request_key(&ask("x")));
        let warmer = Request {
            temperature: Some(0.7),
            ..ask("x")
        };
        assert_ne!(request_key(&base), request_key(&warmer));
        assert_eq!(request_key(&base).len(), 16);
    }
}
