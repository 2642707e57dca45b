//! The HTTP exchange shared by the providers: the settings a client connects with, then POST
//! a JSON body, classify the answer (success, transient, final), retry the transient ones,
//! and name every final error by what went wrong.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::retry::{Attempt, RetryPolicy, retry_after};
use crate::error::{Error, LlmUnreachableKind, Result};

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

/// POST `body` to the endpoint, retrying what may pass (no connection, 429, 5xx) under
/// `retry`.
pub(crate) async fn post(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    headers: reqwest::header::HeaderMap,
    body: &Value,
    retry: &RetryPolicy,
) -> Result<Answer> {
    let url = &endpoint.url;
    let unreachable = |kind: LlmUnreachableKind, source: reqwest::Error| Attempt::Retry {
        after: None,
        error: Error::LlmUnreachable {
            url: url.clone(),
            kind,
            source,
        },
    };
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
                Err(err) => return unreachable(unreachable_kind(&err, endpoint.timeout), err),
            };
            let status = response.status();
            let after = retry_after(response.headers());
            match response.text().await {
                Ok(text) => classify(endpoint, status, after, &text),
                Err(err) if err.is_timeout() => {
                    unreachable(LlmUnreachableKind::TimedOut(endpoint.timeout), err)
                }
                Err(err) => unreachable(LlmUnreachableKind::CutOff, err),
            }
        })
        .await
}

/// Why a request got no answer, from the HTTP client's error and the causes under it.
fn unreachable_kind(err: &reqwest::Error, timeout: Duration) -> LlmUnreachableKind {
    if err.is_timeout() {
        return LlmUnreachableKind::TimedOut(timeout);
    }
    if err.is_dns() {
        return LlmUnreachableKind::Dns;
    }
    let causes = std::iter::successors(std::error::Error::source(err), |cause| cause.source());
    for cause in causes.flat_map(wrapped) {
        if cause.is::<rustls::Error>() {
            return LlmUnreachableKind::Tls;
        }
        let io = cause.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return LlmUnreachableKind::Refused;
        }
    }
    LlmUnreachableKind::Other
}

/// `cause` and the errors inside it when it is an io::Error, whose `source` skips what it
/// wraps: a TLS failure arrives as a rustls error inside an io::Error inside another.
fn wrapped<'a>(
    cause: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(cause), |cause| {
        let io = cause.downcast_ref::<std::io::Error>()?;
        io.get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static))
    })
}

/// What an answer comes to: JSON, a 400 the caller may adapt to, a transient failure to
/// retry, or a final error.
fn classify(
    endpoint: &Endpoint,
    status: StatusCode,
    after: Option<Duration>,
    text: &str,
) -> Attempt<Answer> {
    let url = endpoint.url.clone();
    if status.is_success() {
        return Attempt::Done(match serde_json::from_str(text) {
            Ok(value) => Ok(Answer::Json(value)),
            Err(_) => Err(Error::LlmNotJson {
                url,
                status,
                body: crate::text::truncate_middle(text.trim(), 120),
            }),
        });
    }
    let message = server_message(text);
    match status.as_u16() {
        429 | 500 | 502 | 503 | 504 | 529 => Attempt::Retry {
            after,
            error: Error::LlmFailing {
                url,
                status,
                message,
            },
        },
        400 => Attempt::Done(Ok(Answer::BadRequest(message))),
        401 | 403 => Attempt::Done(Err(Error::LlmKeyRefused {
            url,
            status,
            key_var: endpoint.key_var,
            has_key: endpoint.has_key,
        })),
        404 => Attempt::Done(Err(Error::LlmNotFound {
            url,
            model: endpoint.model.clone(),
            message,
        })),
        _ => Attempt::Done(Err(Error::LlmRefused {
            url,
            status,
            message,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;
    use tokio::io::AsyncWriteExt;

    fn endpoint(url: &str, has_key: bool) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            model: "fake-model".into(),
            key_var: "OPENAI_API_KEY",
            has_key,
            timeout: Duration::from_secs(5),
        }
    }

    /// How an answer with `status` ends, in words: retried, handed back, or final with its
    /// message.
    fn outcome(status: u16, has_key: bool) -> String {
        let status = StatusCode::from_u16(status).unwrap();
        let body = r#"{"error": {"message": "nope"}}"#;
        match classify(&endpoint("http://model/v1", has_key), status, None, body) {
            Attempt::Done(Ok(Answer::Json(value))) => format!("json {value}"),
            Attempt::Done(Ok(Answer::BadRequest(message))) => format!("bad request: {message}"),
            Attempt::Done(Err(err)) => format!("final: {err}"),
            Attempt::Retry { error, .. } => format!("retried: {error}"),
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried_and_key_and_model_errors_are_final() {
        let outcomes: Vec<String> = [200, 400, 401, 403, 404, 429, 500, 503, 418]
            .into_iter()
            .map(|status| outcome(status, true))
            .collect();
        assert_eq!(
            outcomes,
            [
                r#"json {"error":{"message":"nope"}}"#,
                "bad request: nope",
                "final: the server at http://model/v1 refused the API key in OPENAI_API_KEY (401 Unauthorized)",
                "final: the server at http://model/v1 refused the API key in OPENAI_API_KEY (403 Forbidden)",
                "final: model \"fake-model\" or the endpoint was not found at http://model/v1 (404: nope)",
                "retried: the server at http://model/v1 kept failing (429 Too Many Requests): nope",
                "retried: the server at http://model/v1 kept failing (500 Internal Server Error): nope",
                "retried: the server at http://model/v1 kept failing (503 Service Unavailable): nope",
                "final: the server at http://model/v1 refused the request (418 I'm a teapot): nope",
            ]
        );
    }

    #[test]
    fn a_missing_key_is_told_apart_from_a_refused_one() {
        assert_eq!(
            outcome(401, false),
            "final: the server at http://model/v1 wants an API key (401 Unauthorized) and OPENAI_API_KEY is not set"
        );
    }

    /// The kind of the error a POST to `url` ends in, after one try.
    async fn unreachable_kind_at(url: &str, timeout: Duration) -> LlmUnreachableKind {
        let retry = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        let endpoint = Endpoint {
            timeout,
            ..endpoint(url, false)
        };
        let headers = reqwest::header::HeaderMap::new();
        match post(&client().unwrap(), &endpoint, headers, &json!({}), &retry).await {
            Err(Error::LlmUnreachable { kind, .. }) => kind,
            Err(err) => panic!("not unreachable: {err:#}"),
            Ok(_) => panic!("answered"),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_refused_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(
            unreachable_kind_at(&format!("http://{address}/v1"), Duration::from_secs(5)).await,
            LlmUnreachableKind::Refused
        );
    }

    #[tokio::test]
    async fn https_to_a_server_that_speaks_no_tls_is_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        assert_eq!(
            unreachable_kind_at(&format!("https://{address}/v1"), Duration::from_secs(5)).await,
            LlmUnreachableKind::Tls
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_replies_times_out_after_the_request_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accept and hold the connection, so only the timeout can end the request.
        tokio::spawn(async move {
            let _held = listener.accept().await;
            std::future::pending::<()>().await;
        });
        assert_eq!(
            unreachable_kind_at(&format!("http://{address}/v1"), Duration::from_secs(3)).await,
            LlmUnreachableKind::TimedOut(Duration::from_secs(3))
        );
    }
}
