//! Talking to models: the [`Llm`] trait and the requests and replies it speaks. Around it:
//! the OpenAI-compatible and Anthropic clients, structured (schema-checked) replies,
//! retries, usage accounting with a budget, and record/replay of exchanges.

pub mod anthropic;
mod client;
pub mod config;
mod http;
mod meter;
pub mod openai;
pub mod record;
pub mod retry;
pub mod schema;
mod structured;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::error::LlmUnreachableKind;
pub use client::Client;
pub use config::{LlmConfig, Provider};
pub use meter::{Meter, Metered, Totals};
pub use structured::complete_json;

use crate::error::Result;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions; kept first and identical across calls so servers can reuse the prefix.
    System,
    /// The user's (planbox's) turn.
    User,
    /// The model's earlier turn.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A JSON Schema the reply must satisfy, with a name for the providers that want one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Short identifier (letters, digits, `_`, `-`).
    pub name: String,
    /// The schema itself.
    pub schema: Value,
    /// A narrower schema a local server's grammar holds the decoding to, when it is sent
    /// schemas as given (a preference such as a plan's step budget, which ends a long reply
    /// where the grammar closes it). The reply is still checked against `schema` only, so a
    /// server that ignores this one is not re-asked for a reply `schema` accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<Value>,
}

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The conversation, system message first.
    pub messages: Vec<Message>,
    /// When set, the reply must be JSON matching this schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
    /// Overrides the configured temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Overrides the configured reply limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Request {
    /// The smallest useful request: asks for one word, `pong` (`llm ping`, `doctor`).
    pub fn ping() -> Self {
        Request {
            max_tokens: Some(8),
            temperature: Some(0.0),
            ..Request::new(vec![
                Message::system("You are a terse assistant."),
                Message::user("Reply with the single word: pong"),
            ])
        }
    }

    /// A request of these messages, no schema.
    pub fn new(messages: Vec<Message>) -> Self {
        Request {
            messages,
            schema: None,
            temperature: None,
            max_tokens: None,
        }
    }
}

/// Tokens one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the reply.
    pub completion_tokens: u64,
    /// True when the server did not report usage and these are estimates.
    #[serde(default)]
    pub estimated: bool,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// A rough count (4 bytes a token) for servers that report none.
    pub fn estimate(request: &Request, reply: &str) -> Usage {
        let prompt: usize = request.messages.iter().map(|m| m.content.len() + 4).sum();
        Usage {
            prompt_tokens: prompt.div_ceil(4) as u64,
            completion_tokens: reply.len().div_ceil(4) as u64,
            estimated: true,
        }
    }
}

/// How a structured request was asked for: the best the server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredMode {
    /// `response_format: json_schema` (strict), or a forced tool call on Anthropic.
    JsonSchema,
    /// `response_format: json_object`, with the schema in the prompt.
    JsonObject,
    /// Only a prompt instruction; the JSON is extracted from the text.
    Prompt,
}

/// A model's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The reply text (for a structured request, the JSON text).
    pub text: String,
    /// Tokens used.
    pub usage: Usage,
    /// The model that answered, as the server names it.
    pub model: String,
    /// How structured output was requested, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<StructuredMode>,
    /// Wall time of the call, retries included.
    #[serde(with = "millis")]
    pub latency: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A chat model.
pub trait Llm: Send + Sync {
    /// Send one request; retries on transient failures happen inside.
    fn complete(&self, request: &Request) -> impl Future<Output = Result<Reply>> + Send;
}

impl<L: Llm> Llm for &L {
    fn complete(&self, request: &Request) -> impl Future<Output = Result<Reply>> + Send {
        (**self).complete(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn usage_estimates_four_bytes_a_token() {
        let request = Request::new(vec![Message::user("12345678")]);
        assert_eq!(
            Usage::estimate(&request, "abcd"),
            Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
                estimated: true
            }
        );
    }
}
