//! A client for Anthropic's Messages API. Structured output is a forced tool call whose input
//! schema is the requested schema; the tool input is the reply.

use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::http::{Answer, ClientSettings, Connection};
use super::{Llm, Reply, Request, Role, StructuredMode, Usage};
use crate::error::{Error, Result};

/// The API version header planbox speaks.
pub const API_VERSION: &str = "2023-06-01";

/// An Anthropic Messages client.
#[derive(Debug)]
pub struct Anthropic {
    conn: Connection,
}

impl Anthropic {
    /// A client for the API at `settings.base_url` (without `/v1`).
    pub fn new(settings: ClientSettings) -> Result<Self> {
        let base = settings
            .base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1");
        let url = format!("{base}/v1/messages");
        Ok(Anthropic {
            conn: Connection::new(settings, url)?,
        })
    }

    fn body(&self, request: &Request) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let messages: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.conn.endpoint.model,
            "max_tokens": request.max_tokens.unwrap_or(self.conn.max_tokens),
            "temperature": request.temperature.unwrap_or(self.conn.temperature),
            "messages": messages,
        });
        if !system.is_empty() {
            body["system"] = Value::String(system.join("\n\n"));
        }
        if let Some(schema) = &request.schema {
            body["tools"] = json!([{
                "name": schema.name,
                "description": "Give the answer as this tool's input.",
                "input_schema": schema.schema,
            }]);
            body["tool_choice"] = json!({"type": "tool", "name": schema.name});
        }
        body
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = &self.conn.api_key
            && let Ok(mut value) = HeaderValue::from_str(key)
        {
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        headers
    }
}

impl Llm for Anthropic {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let started = Instant::now();
        let value = match self.conn.post(self.headers(), &self.body(request)).await? {
            Answer::Json(value) => value,
            Answer::BadRequest(message) => {
                return Err(Error::LlmRefused {
                    url: self.conn.endpoint.url.clone(),
                    status: reqwest::StatusCode::BAD_REQUEST,
                    message,
                });
            }
        };
        let blocks = value
            .get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let text = if request.schema.is_some() {
            blocks
                .iter()
                .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .and_then(|b| b.get("input"))
                .map(Value::to_string)
                .or_else(|| text_of(&blocks))
        } else {
            text_of(&blocks)
        }
        .ok_or_else(|| {
            Error::LlmReply(format!(
                "the server at {} returned no content",
                self.conn.endpoint.url
            ))
        })?;
        let usage = match (
            value.pointer("/usage/input_tokens").and_then(Value::as_u64),
            value
                .pointer("/usage/output_tokens")
                .and_then(Value::as_u64),
        ) {
            (Some(prompt_tokens), Some(completion_tokens)) => Usage {
                prompt_tokens,
                completion_tokens,
                estimated: false,
            },
            _ => Usage::estimate(request, &text),
        };
        Ok(Reply {
            text,
            usage,
            model: value
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.conn.endpoint.model)
                .to_string(),
            mode: request.schema.as_ref().map(|_| StructuredMode::JsonSchema),
            latency: started.elapsed(),
        })
    }
}

fn text_of(blocks: &[Value]) -> Option<String> {
    let texts: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    (!texts.is_empty()).then(|| texts.concat())
}
