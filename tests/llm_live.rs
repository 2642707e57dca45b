//! Smoke tests against the real offline model (`make local-llm`, then `make test-llm`).
//! Ignored in the ordinary test run: they need the model server, which CI does not start.

use planbox::llm::config::{FileConfig, Overrides, Provider};
use planbox::llm::{Llm, LlmConfig, Message, Request, Schema, StructuredMode, complete_json};
use serde_json::json;

fn local() -> planbox::llm::Client {
    let overrides = Overrides {
        provider: Some(Provider::Local),
        ..Overrides::default()
    };
    LlmConfig::resolve(
        &overrides,
        |name| std::env::var(name).ok(),
        &FileConfig::default(),
    )
    .unwrap()
    .client()
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the local model server: make local-llm, then make test-llm"]
async fn the_local_model_answers() {
    let request = Request {
        max_tokens: Some(8),
        temperature: Some(0.0),
        ..Request::new(vec![
            Message::system("You are a terse assistant."),
            Message::user("Reply with the single word: pong"),
        ])
    };
    let reply = local().complete(&request).await.unwrap();
    assert!(reply.text.to_lowercase().contains("pong"), "{}", reply.text);
    assert!(reply.usage.completion_tokens > 0 && !reply.usage.estimated);
}

#[tokio::test]
#[ignore = "needs the local model server: make local-llm, then make test-llm"]
async fn the_local_model_follows_a_json_schema() {
    let schema = Schema {
        name: "sum".into(),
        schema: json!({
            "type": "object",
            "required": ["total", "unit"],
            "additionalProperties": false,
            "properties": {"total": {"type": "integer"}, "unit": {"type": "string", "enum": ["apples", "pears"]}}
        }),
    };
    let request = Request {
        schema: Some(schema),
        temperature: Some(0.0),
        ..Request::new(vec![
            Message::system("You answer arithmetic questions as JSON."),
            Message::user("I have 3 apples and buy 4 more apples. How many apples do I have?"),
        ])
    };
    let (value, reply) = complete_json(&local(), &request, 2).await.unwrap();
    assert_eq!(value, json!({"total": 7, "unit": "apples"}));
    assert_eq!(
        reply.mode,
        Some(StructuredMode::JsonSchema),
        "llama-server takes json_schema"
    );
}
