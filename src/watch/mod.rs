//! A live view of one run in the browser: a page served on a loopback address that follows the
//! run's `events.jsonl` as server-sent events, and shows the plan with each step's state, the
//! step being written or run with its script and output tail, repairs and replans, then the
//! answer and the report.
//!
//! It keeps the report's rules: every text from the run is set as text (never markup), the page
//! loads nothing from elsewhere (a Content-Security-Policy says so to the browser), and the
//! server reads only the run folder's event stream, its attempts' script and output files by
//! validated names, and its HTML report.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{Error, Result};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// What the page may load: its own script, style, event stream and files; nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'none'";
/// The report is one self-contained file: its inline style and embedded charts only.
const REPORT_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";
/// How much of a script or an output the page is sent: its tail.
const TAIL: u64 = 64 * 1024;
/// How often the event stream is read for new lines.
const POLL: Duration = Duration::from_millis(200);

/// A running live view.
pub struct Watch {
    /// Where it listens.
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serve the live view of the run in `dir` on `listen` (port 0: a free one).
pub async fn serve(dir: &Path, listen: SocketAddr) -> Result<Watch> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(Error::io(format!(
            "listening on {listen} for the live view"
        )))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("reading the live view's address"))?;
    let app = Router::new()
        .route("/", get(page))
        .route(
            "/page.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/page.css", get(|| async { asset("text/css", STYLE) }))
        .route("/events", get(events))
        .route("/attempt/{step}/{attempt}/{name}", get(attempt_file))
        .route("/report", get(report))
        .with_state(Arc::new(dir.to_path_buf()));
    let server = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!(%err, "the live view stopped");
        }
    });
    Ok(Watch { addr, server })
}

/// Headers every answer carries.
fn guarded(mut response: Response, policy: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(policy).expect("a valid policy"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn asset(mime: &'static str, body: &'static str) -> Response {
    guarded(
        ([(header::CONTENT_TYPE, mime)], body).into_response(),
        PAGE_POLICY,
    )
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

fn not_found(what: &str) -> Response {
    guarded(
        (StatusCode::NOT_FOUND, format!("{what}\n")).into_response(),
        PAGE_POLICY,
    )
}

/// The event stream from its first line (or after the `Last-Event-ID` a reconnecting browser
/// sends), then each line as it is appended. Each message's id is its line number.
async fn events(
    State(dir): State<Arc<PathBuf>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let seen: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tail = Tail {
        path: dir.join("events.jsonl"),
        offset: 0,
        partial: Vec::new(),
        lines: std::collections::VecDeque::new(),
        number: 0,
        skip: seen,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some((number, line)) = tail.lines.pop_front() {
                let event = Event::default().id(number.to_string()).data(line);
                return Some((Ok(event), tail));
            }
            if !tail.read().await {
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Where a reader of `events.jsonl` is.
struct Tail {
    path: PathBuf,
    offset: u64,
    /// A line not yet ended by a newline.
    partial: Vec<u8>,
    lines: std::collections::VecDeque<(u64, String)>,
    /// Lines read so far.
    number: u64,
    /// Lines the browser already has.
    skip: u64,
}

impl Tail {
    /// Read what was appended; whether there was anything.
    async fn read(&mut self) -> bool {
        let Ok(mut file) = tokio::fs::File::open(&self.path).await else {
            return false;
        };
        if file
            .seek(std::io::SeekFrom::Start(self.offset))
            .await
            .is_err()
        {
            return false;
        }
        let mut fresh = Vec::new();
        let Ok(read) = file.read_to_end(&mut fresh).await else {
            return false;
        };
        if read == 0 {
            return false;
        }
        self.offset += read as u64;
        self.partial.extend_from_slice(&fresh);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.number += 1;
            if self.number <= self.skip {
                continue;
            }
            // One message per JSON line: the stream writes them compact, so a line holds no
            // newline; a damaged line is passed over rather than sent.
            let line = String::from_utf8_lossy(&line[..end]).trim_end().to_string();
            if serde_json::from_str::<serde_json::Value>(&line).is_ok() {
                self.lines.push_back((self.number, line));
            }
        }
        true
    }
}

/// A step id as plans spell them: letters, digits, `_`, `-` and `.`, not leading with `.`.
fn plain_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The tail of one attempt's script or output, as plain text.
async fn attempt_file(
    State(dir): State<Arc<PathBuf>>,
    UrlPath((step, attempt, name)): UrlPath<(String, usize, String)>,
) -> Response {
    if !plain_name(&step) || !matches!(name.as_str(), "script.py" | "stdout" | "stderr") {
        return not_found("no such file");
    }
    let path = dir
        .join("steps")
        .join(&step)
        .join(format!("attempt-{attempt}"))
        .join(&name);
    match read_tail(&path).await {
        Some(text) => guarded(
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
            PAGE_POLICY,
        ),
        None => not_found("not written yet"),
    }
}

/// The last [`TAIL`] bytes of a regular file (not a link), cut at a character boundary.
async fn read_tail(path: &Path) -> Option<String> {
    let meta = tokio::fs::symlink_metadata(path).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let start = meta.len().saturating_sub(TAIL);
    file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await.ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Some(if start > 0 {
        // The first, possibly cut, line goes.
        text.split_once('\n')
            .map_or(text.clone(), |(_, rest)| rest.to_string())
    } else {
        text
    })
}

async fn report(State(dir): State<Arc<PathBuf>>) -> Response {
    match tokio::fs::read_to_string(dir.join("report.html")).await {
        Ok(html) => guarded(
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            REPORT_POLICY,
        ),
        Err(_) => not_found("no report yet: it is written when the run ends"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_step_names_reach_the_disk() {
        assert!(plain_name("load_data-2"));
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "é", &"x".repeat(65)] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
