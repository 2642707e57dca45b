//! The HTTP exchange shared by the providers: the settings a client connects with, then POST
//! a JSON body, classify the answer (success, transient, final), retry the transient ones,
//! and word every final error with its fix.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::retry::{Attempt, RetryPolicy, retry_after};
use crate::error::{Error, Result};

/// Settings shared by both providers' constructors.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL (for OpenAI-compatible servers, ending in `/v1`).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key, if any.
    pub api_key: Option<String>,
    /// Name of the variable the key comes from, for error messages.
    pub key_var: &'static str,
    /// Sampling temperature.
    pub temperature: f32,
    /// Reply token limit.
    pub max_tokens: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

/// Who we are talking to, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Full URL of the endpoint.
    pub url: String,
    /// The model asked for.
    pub model: String,
    /// The environment variable that holds the key, named in 401/403 messages.
    pub key_var: &'static str,
    /// Whether a key was configured.
    pub has_key: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What every provider's client holds: the HTTP client, the endpoint, the key (never shown)
/// and the request defaults.
pub(crate) struct Connection {
    http: reqwest::Client,
    pub endpoint: Endpoint,
    pub api_key: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.endpoint.url)
            .field("model", &self.endpoint.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection to the endpoint at `url` with these settings.
    pub fn new(settings: ClientSettings, url: String) -> Result<Self> {
        Ok(Connection {
            http: client()?,
            endpoint: Endpoint {
                url,
                model: settings.model,
                key_var: settings.key_var,
                has_key: settings.api_key.is_some(),
                timeout: settings.timeout,
            },
            api_key: settings.api_key,
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            retry: settings.retry,
        })
    }

    /// POST `body` with `headers`, retrying transient failures.
    pub async fn post(&self, headers: reqwest::header::HeaderMap, body: &Value) -> Result<Answer> {
        post(&self.http, &self.endpoint, headers, body, &self.retry).await
    }
}

/// The outcome of a POST that did not fail outright.
pub(crate) enum Answer {
    /// 2xx with a JSON body.
    Json(Value),
    /// 400 with the server's message: the caller may adapt the request.
    BadRequest(String),
}

/// Build the shared HTTP client (TLS through rustls with the ring provider).
pub(crate) fn client() -> Result<reqwest::Client> {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("planbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Error::HttpClient)
}

/// The server's error message out of an error body (OpenAI and Anthropic shapes), cut short.
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
        })
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    crate::text::truncate_middle(&message, 300)
}

pub(crate) async fn post(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    headers: reqwest::header::HeaderMap,
    body: &Value,
    retry: &RetryPolicy,
) -> Result<Answer> {
    let url = &endpoint.url;
    retry
        .run(|| async {
            let sent = http
                .post(url)
                .headers(headers.clone())
                .timeout(endpoint.timeout)
                .json(body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) if err.is_timeout() => {
                    return Attempt::Retry {
                        after: None,
                        error: Error::LlmUnreachable {
                            url: url.clone(),
                            reason: format!("no reply within {:?}; raise the timeout or check the server", endpoint.timeout),
                        },
                    };
                }
                Err(err) => {
                    let mut reason = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(cause) = source {
                        reason = format!("{reason}: {cause}");
                        source = cause.source();
                    }
                    return Attempt::Retry {
                        after: None,
                        error: Error::LlmUnreachable {
                            url: url.clone(),
                            reason: format!(
                                "{reason}; start the server (make local-llm for the offline model) or set the base URL"
                            ),
                        },
                    };
                }
            };
            let status = response.status();
            let after = retry_after(response.headers());
            let text = match response.text().await {
                Ok(text) => text,
                Err(err) => {
                    return Attempt::Retry {
                        after: None,
                        error: Error::LlmUnreachable { url: url.clone(), reason: format!("reply cut off: {err}") },
                    };
                }
            };
            classify(endpoint, status, after, &text)
        })
        .await
}

fn classify(
    endpoint: &Endpoint,
    status: StatusCode,
    after: Option<Duration>,
    text: &str,
) -> Attempt<Answer> {
    let url = &endpoint.url;
    if status.is_success() {
        return Attempt::Done(match serde_json::from_str(text) {
            Ok(value) => Ok(Answer::Json(value)),
            Err(_) => Err(Error::LlmRefused(format!(
                "the server at {url} answered {status} with a body that is not JSON ({:?}): is the base URL an OpenAI-compatible API?",
                crate::text::truncate_middle(text.trim(), 120)
            ))),
        });
    }
    let message = server_message(text);
    match status.as_u16() {
        429 | 500 | 502 | 503 | 504 | 529 => Attempt::Retry {
            after,
            error: Error::LlmRefused(format!(
                "the server at {url} kept failing ({status}): {message}"
            )),
        },
        400 => Attempt::Done(Ok(Answer::BadRequest(message))),
        401 | 403 => Attempt::Done(Err(Error::LlmRefused(if endpoint.has_key {
            format!(
                "the server at {url} refused the API key ({status}): check {}",
                endpoint.key_var
            )
        } else {
            format!(
                "the server at {url} wants an API key ({status}): set {}",
                endpoint.key_var
            )
        }))),
        404 => Attempt::Done(Err(Error::LlmRefused(format!(
            "model {:?} or the endpoint was not found at {url} (404: {message}): check PLANBOX_MODEL and the base URL",
            endpoint.model
        )))),
        _ => Attempt::Done(Err(Error::LlmRefused(format!(
            "the server at {url} answered {status}: {message}"
        )))),
    }
}
