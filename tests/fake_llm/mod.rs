//! A local fake model server speaking the OpenAI and Anthropic wire formats, scripted per
//! test: each request takes the next scripted answer and is recorded for assertions.

#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn json(body: Value) -> Self {
        Answer {
            status: 200,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16, body: &str) -> Self {
        Answer {
            status,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// An OpenAI chat completion carrying `content`.
pub fn chat(content: &str) -> Answer {
    Answer::json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }))
}

/// An Anthropic message with the given content blocks.
pub fn message(blocks: Value) -> Answer {
    Answer::json(json!({
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": blocks,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 21, "output_tokens": 5},
    }))
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

/// A running fake server.
pub struct FakeServer {
    pub base: String,
    script: Arc<Mutex<Script>>,
}

impl FakeServer {
    pub async fn start(answers: Vec<Answer>) -> FakeServer {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into(),
            seen: vec![],
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/messages", post(handle))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeServer { base, script }
    }

    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub fn left(&self) -> usize {
        self.script.lock().unwrap().answers.len()
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut script = script.lock().unwrap();
        script.seen.push(Seen {
            path: uri.path().to_string(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        script.answers.pop_front()
    };
    let Some(answer) = answer else {
        return (StatusCode::IM_A_TEAPOT, "the test scripted no more answers").into_response();
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The future a [`RuleServer`] rule returns.
pub type Reply = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

/// A fake server whose answer to each request a function computes from the request body:
/// for concurrent clients (a batch of goals), where a queue's order is not fixed. The rule is
/// async so a test can hold answers back, e.g. until several clients are waiting at once.
pub struct RuleServer {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Rule = Arc<dyn Fn(Value) -> Reply + Send + Sync>;

impl RuleServer {
    pub async fn start(rule: impl Fn(Value) -> Reply + Send + Sync + 'static) -> RuleServer {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let state: (Rule, Arc<Mutex<Vec<Seen>>>) = (Arc::new(rule), seen.clone());
        let app = Router::new()
            .route("/v1/chat/completions", post(handle_rule))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RuleServer { base, seen }
    }

    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle_rule(
    State((rule, seen)): State<(Rule, Arc<Mutex<Vec<Seen>>>)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        headers,
        body: body.clone(),
    });
    let answer = rule(body).await;
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
