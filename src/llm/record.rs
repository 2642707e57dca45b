//! Record and replay: `--record DIR` writes every exchange as `NNNN.json` (request and reply,
//! no headers, secrets redacted); `--replay DIR` serves them back in order and fails loudly on
//! a request that differs from the recording, so a recorded session becomes a CI test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

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

/// Wraps a model and writes each exchange to a folder.
#[derive(Debug)]
pub struct Recorder<L> {
    inner: L,
    dir: PathBuf,
    next: AtomicUsize,
    secrets: Vec<String>,
}

impl<L: Llm> Recorder<L> {
    /// Record `inner`'s exchanges into `dir` (created if missing); every string in `secrets`
    /// is replaced by `<redacted>` before anything is written.
    pub fn new(inner: L, dir: &Path, secrets: Vec<String>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let secrets = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        Ok(Recorder {
            inner,
            dir: dir.to_path_buf(),
            next: AtomicUsize::new(1),
            secrets,
        })
    }
}

impl<L: Llm> Llm for Recorder<L> {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let reply = self.inner.complete(request).await?;
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let exchange = Exchange {
            request: request.clone(),
            reply: reply.clone(),
        };
        let mut text = serde_json::to_string_pretty(&exchange).expect("exchanges serialize");
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        let path = self.dir.join(format!("{n:04}.json"));
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
        Ok(reply)
    }
}

/// Serves a recording back, in order.
#[derive(Debug)]
pub struct Replay {
    exchanges: Vec<Exchange>,
    next: AtomicUsize,
    dir: PathBuf,
}

impl Replay {
    /// Load every `NNNN.json` in `dir`, in name order.
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir)
            .map_err(|err| Error::Replay(format!("cannot read {}: {err}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::Replay(format!(
                "{} holds no recorded exchanges (NNNN.json)",
                dir.display()
            )));
        }
        let exchanges = paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    Error::Replay(format!("cannot read {}: {err}", path.display()))
                })?;
                serde_json::from_str(&text).map_err(|err| {
                    Error::Replay(format!("{} is not an exchange: {err}", path.display()))
                })
            })
            .collect::<Result<Vec<Exchange>>>()?;
        Ok(Replay {
            exchanges,
            next: AtomicUsize::new(0),
            dir: dir.to_path_buf(),
        })
    }

    /// How many exchanges were served so far.
    pub fn served(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }
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
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let Some(exchange) = self.exchanges.get(n) else {
            return Err(Error::Replay(format!(
                "{} holds {} exchanges and request {} was asked: record the session again",
                self.dir.display(),
                self.exchanges.len(),
                n + 1
            )));
        };
        let want = serde_json::to_value(&exchange.request).expect("requests serialize");
        let got = serde_json::to_value(request).expect("requests serialize");
        if let Some(difference) = first_difference("$", &want, &got) {
            return Err(Error::Replay(format!(
                "request {} differs from {}/{:04}.json at {difference}",
                n + 1,
                self.dir.display(),
                n + 1
            )));
        }
        Ok(exchange.reply.clone())
    }
}
