//! The live view in headless Chromium while a run with the scripted model progresses: the page
//! follows the run's events without a reload (a mark set in the page survives), shows the plan,
//! each step's state, the script and the answer, keeps the run's text as text, and loads
//! nothing from elsewhere. Chromium is driven over its DevTools protocol.

mod common;
mod fakes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fakes::{FakeSandbox, Run, ScriptedModel};
use futures_util::{SinkExt, StreamExt};
use planbox::agent::{Agent, Options};
use planbox::event::Silent;
use planbox::llm::{Llm, Meter, Reply, Request};
use planbox::run::RunFolder;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const INSTALL: &str = "headless Chromium is needed for the live view test: install it (Debian: apt-get install -y chromium)";
const GOAL: &str =
    "What is the total amount? <img src=x onerror=alert(1)> Answer as @total[value].";

/// The scripted model, its first script held back until the test lets it go.
struct Gated {
    model: ScriptedModel,
    gate: Arc<Semaphore>,
}

impl Llm for Gated {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        if !request
            .messages
            .last()
            .unwrap()
            .content
            .contains("Reply with {\"steps\"")
        {
            self.gate.acquire().await.unwrap().forget();
        }
        self.model.complete(request).await
    }
}

/// A plain-HTTP client (the crate's TLS needs its crypto provider chosen first).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn chromium() -> PathBuf {
    common::chromium(INSTALL)
}

/// One page in headless Chromium, evaluated over the DevTools protocol.
struct Browser {
    _chromium: tokio::process::Child,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Browser {
    async fn open(url: &str, profile: &Path) -> Browser {
        let chromium = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("{INSTALL} ({err})"));
        let port_file = profile.join("DevToolsActivePort");
        let port = eventually(Duration::from_secs(60), || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok())
        })
        .await
        .expect("chromium never opened its DevTools port");
        let list = format!("http://127.0.0.1:{port}/json/list");
        let mut target = None;
        let started = Instant::now();
        while target.is_none() && started.elapsed() < Duration::from_secs(30) {
            if let Ok(answer) = client().get(&list).send().await
                && let Ok(pages) = answer.json::<Vec<Value>>().await
            {
                target = pages
                    .into_iter()
                    .find(|p| p["type"] == "page" && p["url"].as_str() == Some(url))
                    .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(String::from));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let target = target.expect("the page is not among chromium's targets");
        let (socket, _) = tokio_tungstenite::connect_async(target).await.unwrap();
        Browser {
            _chromium: chromium,
            socket,
            next: 1,
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next;
        self.next += 1;
        let call = json!({"id": id, "method": "Runtime.evaluate",
                          "params": {"expression": expression, "returnByValue": true}});
        self.socket
            .send(Message::Text(call.to_string().into()))
            .await
            .unwrap();
        while let Some(message) = self.socket.next().await {
            let Message::Text(text) = message.unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == json!(id) {
                return answer["result"]["result"]["value"].clone();
            }
        }
        panic!("the DevTools connection closed");
    }

    /// Wait until `expression` gives `want`; what it last gave otherwise.
    async fn until(&mut self, expression: &str, want: Value) {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < Duration::from_secs(60) {
            last = self.eval(expression).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{expression} stayed {last}, not {want}");
    }
}

async fn eventually<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(value) = probe() {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn state_of(step: &str) -> String {
    format!("document.querySelector('[data-step=\"{step}\"]')?.dataset.state ?? null")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_follows_a_run_step_by_step_without_a_reload() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\nsouth,32\n").unwrap();
    let (folder, _) = RunFolder::create(
        &work.path().join("runs"),
        GOAL,
        &[input],
        "planbox-sandbox:test",
        json!({}),
    )
    .unwrap();
    let step = |id: &str, deps: &[&str]| {
        json!({"id": id, "title": format!("do {id}"), "instruction": format!("Do {id}."),
               "kind": "action", "depends_on": deps, "reads": ["sales.csv"], "writes": []})
    };
    let plan = json!({"steps": [step("north", &[]), step("total", &["north"])]}).to_string();
    let gate = Arc::new(Semaphore::new(0));
    let model = Gated {
        model: ScriptedModel::new([
            plan,
            "```python\nprint('north is 10')\n```".to_string(),
            "```python\nprint('@total[42]')\n```".to_string(),
        ]),
        gate: gate.clone(),
    };
    let sandbox = FakeSandbox::new([Run::prints("north is 10\n"), Run::prints("@total[42]\n")]);

    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let view = planbox::watch::serve(folder.dir(), listen).await.unwrap();
    assert!(view.addr.ip().is_loopback());
    let profile = work.path().join("profile");
    let mut page = Browser::open(&view.url(), &profile).await;

    let options = Options {
        fuse_chains: false,
        parallel: 1,
        always_plan: true,
        ..Options::default()
    };
    let run = tokio::spawn({
        let folder = RunFolder::open_dir(folder.dir()).unwrap();
        async move {
            Agent::new(&model, &sandbox, options, Arc::new(Meter::new(None, None)))
                .run(&folder, &Silent)
                .await
                .unwrap()
        }
    });

    // The plan arrives and the first step is being written, held there by the model.
    page.until(&state_of("north"), json!("writing")).await;
    page.until(&state_of("total"), json!("waiting")).await;
    assert_eq!(
        page.eval("document.getElementById('goal').textContent")
            .await,
        json!(GOAL)
    );
    assert_eq!(
        page.eval("document.images.length").await,
        json!(0),
        "the goal's markup stays text"
    );
    page.until(
        "document.getElementById('progress').textContent",
        json!("step 1 of 2 · 0% · estimating time left"),
    )
    .await;
    // A mark in the page: a reload would lose it.
    page.eval("window.planboxMark = 7").await;

    gate.add_permits(1);
    page.until(&state_of("north"), json!("done")).await;
    page.until(&state_of("total"), json!("writing")).await;
    page.until(
        "document.getElementById('current-script').textContent",
        json!("print('north is 10')"),
    )
    .await;
    gate.add_permits(1);
    let finished = run.await.unwrap();
    assert!(finished.achieved, "{finished:?}");
    page.until(&state_of("total"), json!("done")).await;
    page.until(
        "document.getElementById('answer').textContent",
        json!(finished.answer),
    )
    .await;
    page.until(
        "document.getElementById('status').dataset.state",
        json!("achieved"),
    )
    .await;
    assert_eq!(
        page.eval("window.planboxMark").await,
        json!(7),
        "the page changed without a reload"
    );
    assert_eq!(
        page.eval("performance.getEntriesByType('resource').every(r => r.name.startsWith(location.origin))")
            .await,
        json!(true),
        "nothing is fetched from elsewhere"
    );
}

#[tokio::test]
async fn the_server_answers_only_for_the_run_s_own_files() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("run");
    std::fs::create_dir_all(dir.join("steps/a/attempt-1")).unwrap();
    std::fs::write(dir.join("steps/a/attempt-1/script.py"), "print(1)\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "no").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("steps/a/attempt-1/stdout"))
        .unwrap();
    std::fs::write(
        dir.join("events.jsonl"),
        "{\"event\":\"profiled\",\"inputs\":[]}\nnot json\n",
    )
    .unwrap();
    let view = planbox::watch::serve(&dir, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let get = |path: &str| {
        let url = format!("http://{}{path}", view.addr);
        async move {
            let answer = client().get(url).send().await.unwrap();
            let status = answer.status().as_u16();
            let policy = answer
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_string());
            (status, policy, answer.text().await.unwrap_or_default())
        }
    };
    let (status, policy, page) = get("/").await;
    assert_eq!(status, 200);
    assert!(policy.unwrap().starts_with("default-src 'none'"));
    assert!(page.contains("page.js"), "{page}");
    assert_eq!(get("/attempt/a/1/script.py").await.2, "print(1)\n");
    for refused in [
        "/attempt/a/1/stdout",
        "/attempt/a/1/result.json",
        "/attempt/..%2F..%2Fsecret.txt/1/script.py",
        "/attempt/.a/1/script.py",
        "/report",
    ] {
        assert_eq!(get(refused).await.0, 404, "{refused}");
    }
    // The event stream sends the valid lines, each with its line number as its id.
    let answer = client()
        .get(format!("http://{}/events", view.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut answer = answer;
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = answer
            .chunk()
            .await
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with("id: 1\ndata: {\"event\":\"profiled\",\"inputs\":[]}\n\n"),
        "{seen:?}"
    );
    assert!(!seen.contains("not json"), "{seen:?}");
}
