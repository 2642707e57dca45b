//! A client for any server speaking OpenAI's `/v1/chat/completions`: OpenAI, Ollama, vLLM,
//! LM Studio, llama.cpp's llama-server. Structured output degrades from `json_schema` to
//! `json_object` to a prompt instruction, remembering what the server accepts.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

pub use super::http::ClientSettings;
use super::http::{Answer, Connection};
use super::{Llm, Message, Reply, Request, Role, StructuredMode, Usage};
use crate::error::{Error, Result};

/// An OpenAI-compatible chat client.
#[derive(Debug)]
pub struct OpenAi {
    conn: Connection,
    mode: AtomicU8,
    strict: bool,
}

pub(crate) fn schema_instruction(schema: &Value) -> String {
    format!(
        "Reply with one JSON value only, no prose and no code fences, matching this JSON Schema:\n{schema}"
    )
}

/// The messages with the schema instruction appended to the last user message, so the
/// system message stays first and identical across calls.
pub(crate) fn with_instruction(messages: &[Message], schema: &Value) -> Vec<Message> {
    let mut messages = messages.to_vec();
    let instruction = schema_instruction(schema);
    match messages.iter_mut().rev().find(|m| m.role == Role::User) {
        Some(last) => last.content = format!("{}\n\n{instruction}", last.content),
        None => messages.push(Message::user(instruction)),
    }
    messages
}

fn mode_from(n: u8) -> StructuredMode {
    match n {
        0 => StructuredMode::JsonSchema,
        1 => StructuredMode::JsonObject,
        _ => StructuredMode::Prompt,
    }
}

impl OpenAi {
    /// A client for the server at `settings.base_url`.
    pub fn new(settings: ClientSettings) -> Result<Self> {
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        Ok(OpenAi {
            conn: Connection::new(settings, url)?,
            mode: AtomicU8::new(0),
            strict: true,
        })
    }

    /// The same client sending `json_schema` schemas as given, not in the form OpenAI's
    /// strict mode requires (every property required, optional ones nullable, no length
    /// keywords): for a local server whose grammar uses the schema's limits and optional
    /// fields as they are.
    pub fn with_schemas_as_given(mut self) -> Self {
        self.strict = false;
        self
    }

    /// The structured-output mode this server is currently asked with.
    pub fn mode(&self) -> StructuredMode {
        mode_from(self.mode.load(Ordering::Relaxed))
    }

    fn body(&self, request: &Request, mode: StructuredMode) -> Value {
        let messages = match (&request.schema, mode) {
            (Some(schema), StructuredMode::JsonObject | StructuredMode::Prompt) => {
                with_instruction(&request.messages, &schema.schema)
            }
            (Some(_), StructuredMode::JsonSchema) | (None, _) => request.messages.clone(),
        };
        let mut body = json!({
            "model": self.conn.endpoint.model,
            "messages": messages,
            "temperature": request.temperature.unwrap_or(self.conn.temperature),
            "max_tokens": request.max_tokens.unwrap_or(self.conn.max_tokens),
        });
        if let Some(schema) = &request.schema {
            match mode {
                StructuredMode::JsonSchema => {
                    body["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": {
                            "name": schema.name,
                            "schema": match (self.strict, &schema.decode) {
                                (true, _) => super::schema::strict(&schema.schema),
                                (false, Some(decode)) => decode.clone(),
                                (false, None) => schema.schema.clone(),
                            },
                            "strict": true,
                        },
                    });
                }
                StructuredMode::JsonObject => {
                    body["response_format"] = json!({"type": "json_object"})
                }
                StructuredMode::Prompt => {}
            }
        }
        body
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.conn.api_key
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}"))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }
}

/// True when a 400 says the server does not take this kind of `response_format`.
fn rejects_format(message: &str) -> bool {
    let message = message.to_lowercase();
    [
        "response_format",
        "json_schema",
        "json_object",
        "structured",
        "grammar",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

impl Llm for OpenAi {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let started = Instant::now();
        loop {
            let mode = self.mode();
            let body = self.body(request, mode);
            match self.conn.post(self.headers(), &body).await? {
                Answer::Json(value) => {
                    let text = value
                        .pointer("/choices/0/message/content")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::LlmReply(format!(
                                "the server at {} returned no message content",
                                self.conn.endpoint.url
                            ))
                        })?
                        .to_string();
                    let usage = match (
                        value
                            .pointer("/usage/prompt_tokens")
                            .and_then(Value::as_u64),
                        value
                            .pointer("/usage/completion_tokens")
                            .and_then(Value::as_u64),
                    ) {
                        (Some(prompt_tokens), Some(completion_tokens)) => Usage {
                            prompt_tokens,
                            completion_tokens,
                            estimated: false,
                        },
                        _ => Usage::estimate(request, &text),
                    };
                    let model = value
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or(&self.conn.endpoint.model);
                    return Ok(Reply {
                        text,
                        usage,
                        model: model.to_string(),
                        mode: request.schema.as_ref().map(|_| mode),
                        latency: started.elapsed(),
                    });
                }
                Answer::BadRequest(message) => {
                    let next = match mode {
                        StructuredMode::JsonSchema => Some(1),
                        StructuredMode::JsonObject => Some(2),
                        StructuredMode::Prompt => None,
                    };
                    match next {
                        Some(next) if request.schema.is_some() && rejects_format(&message) => {
                            tracing::info!(%message, "server refused this response_format; falling back");
                            self.mode.store(next, Ordering::Relaxed);
                        }
                        _ => {
                            return Err(Error::LlmRefused {
                                url: self.conn.endpoint.url.clone(),
                                status: reqwest::StatusCode::BAD_REQUEST,
                                message,
                            });
                        }
                    }
                }
            }
        }
    }
}
