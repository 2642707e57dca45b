//! Talking to models: the [`Llm`] trait, its OpenAI-compatible and Anthropic clients,
//! structured (schema-checked) replies, retries, usage accounting with a budget, and
//! record/replay of exchanges.

pub mod anthropic;
pub mod config;
mod http;
pub mod openai;
pub mod record;
pub mod retry;
pub mod schema;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use config::{LlmConfig, Provider};

use crate::error::{Error, Result};

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

/// Ask for JSON matching `request.schema` and return it parsed and checked. A reply that
/// does not parse or does not match goes back to the model with the exact errors, up to
/// `reasks` times; then a clear error.
pub async fn complete_json<L: Llm>(
    llm: &L,
    request: &Request,
    reasks: usize,
) -> Result<(Value, Reply)> {
    let schema = request
        .schema
        .as_ref()
        .ok_or_else(|| Error::Config("complete_json needs a request with a schema".into()))?;
    let mut request = request.clone();
    let mut last_problem = String::new();
    for _ in 0..=reasks {
        let reply = llm.complete(&request).await?;
        let problem = match crate::text::extract_json(&reply.text) {
            None => {
                "the reply is not valid JSON (it may be cut off); reply with the complete JSON only"
                    .to_string()
            }
            Some(value) => match schema::validate(&schema.schema, &value) {
                Ok(()) => return Ok((value, reply)),
                Err(errors) => format!(
                    "the JSON does not match the schema:\n- {}\nReply with corrected JSON only.",
                    errors.join("\n- ")
                ),
            },
        };
        request
            .messages
            .push(Message::assistant(crate::text::truncate_middle(
                &reply.text,
                4000,
            )));
        request.messages.push(Message::user(problem.clone()));
        last_problem = problem;
    }
    Err(Error::LlmReply(format!(
        "no valid JSON after {} re-asks; last problem: {}",
        reasks,
        last_problem.lines().next().unwrap_or_default()
    )))
}

/// Token totals of a run, shared by every call in it, with an optional budget and prices.
#[derive(Debug, Default)]
pub struct Meter {
    used: Mutex<MeterState>,
    budget: Option<u64>,
    price: Option<config::Price>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct MeterState {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// Totals at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls made.
    pub calls: u64,
    /// Prompt tokens in all.
    pub prompt_tokens: u64,
    /// Completion tokens in all.
    pub completion_tokens: u64,
    /// Estimated cost in the price table's currency, when the model has a price.
    pub cost: Option<f64>,
}

impl Totals {
    /// Prompt and completion tokens together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl Meter {
    /// A meter with an optional token budget and price.
    pub fn new(budget: Option<u64>, price: Option<config::Price>) -> Self {
        Meter {
            used: Mutex::default(),
            budget,
            price,
        }
    }

    /// Refuse the next call when the budget is spent.
    pub fn check(&self) -> Result<()> {
        let used = *self.used.lock().expect("meter poisoned");
        match self.budget {
            Some(limit) if used.prompt_tokens + used.completion_tokens >= limit => {
                Err(Error::BudgetExhausted {
                    used: used.prompt_tokens + used.completion_tokens,
                    limit,
                })
            }
            _ => Ok(()),
        }
    }

    /// Add one call's usage.
    pub fn add(&self, usage: Usage) {
        let mut used = self.used.lock().expect("meter poisoned");
        used.calls += 1;
        used.prompt_tokens += usage.prompt_tokens;
        used.completion_tokens += usage.completion_tokens;
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        let used = *self.used.lock().expect("meter poisoned");
        Totals {
            calls: used.calls,
            prompt_tokens: used.prompt_tokens,
            completion_tokens: used.completion_tokens,
            cost: self.price.map(|p| {
                (used.prompt_tokens as f64 * p.input_per_mtok
                    + used.completion_tokens as f64 * p.output_per_mtok)
                    / 1e6
            }),
        }
    }
}

/// A model whose calls are counted against a shared [`Meter`].
#[derive(Debug, Clone)]
pub struct Metered<L> {
    inner: L,
    meter: Arc<Meter>,
}

impl<L: Llm> Metered<L> {
    /// Count `inner`'s calls on `meter`.
    pub fn new(inner: L, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }

    /// The shared meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

impl<L: Llm> Llm for Metered<L> {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        self.meter.check()?;
        let reply = self.inner.complete(request).await?;
        self.meter.add(reply.usage);
        Ok(reply)
    }
}

/// Any of the configured providers, chosen at run time.
#[derive(Debug)]
pub enum Client {
    /// An OpenAI-compatible server (OpenAI, Ollama, vLLM, LM Studio, llama.cpp).
    OpenAi(openai::OpenAi),
    /// Anthropic's Messages API.
    Anthropic(anthropic::Anthropic),
    /// A recording played back.
    Replay(record::Replay),
}

impl Llm for Client {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        match self {
            Client::OpenAi(client) => client.complete(request).await,
            Client::Anthropic(client) => client.complete(request).await,
            Client::Replay(client) => client.complete(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_budget_stops_the_call_after_it_is_spent() {
        let meter = Meter::new(
            Some(100),
            Some(config::Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            }),
        );
        assert!(meter.check().is_ok());
        meter.add(Usage {
            prompt_tokens: 60,
            completion_tokens: 50,
            estimated: false,
        });
        let err = meter.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "token budget spent: 110 of 100 tokens used"
        );
        let totals = meter.totals();
        assert_eq!(
            (totals.calls, totals.prompt_tokens, totals.completion_tokens),
            (1, 60, 50)
        );
        assert!((totals.cost.unwrap() - 160e-6).abs() < 1e-12);
    }

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
