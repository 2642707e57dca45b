//! The model clients against a local fake server speaking each provider's wire format:
//! replies, structured output and its fallbacks, faults and retries, errors, record/replay.

mod fake_llm;

use std::sync::Arc;
use std::time::Duration;

use fake_llm::{Answer, FakeServer, chat, message};
use planbox::Error;
use planbox::llm::anthropic::Anthropic;
use planbox::llm::openai::{ClientSettings, OpenAi};
use planbox::llm::record::{Recorder, Replay};
use planbox::llm::retry::RetryPolicy;
use planbox::llm::{
    Llm, LlmUnreachableKind, Message, Meter, Metered, Request, Schema, StructuredMode,
    complete_json,
};
use pretty_assertions::assert_eq;
use serde_json::json;

fn settings(base_url: &str, key: Option<&str>) -> ClientSettings {
    ClientSettings {
        base_url: base_url.to_string(),
        model: "fake-model".into(),
        api_key: key.map(str::to_string),
        key_var: "OPENAI_API_KEY",
        temperature: 0.2,
        max_tokens: 256,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
    }
}

fn ask() -> Request {
    Request::new(vec![
        Message::system("You are planbox."),
        Message::user("Say hi."),
    ])
}

fn answer_schema() -> Schema {
    Schema {
        decode: None,
        name: "answer".into(),
        schema: json!({
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "integer"}},
            "additionalProperties": false
        }),
    }
}

fn with_schema() -> Request {
    Request {
        schema: Some(answer_schema()),
        ..ask()
    }
}

#[tokio::test]
async fn openai_plain_reply_and_request_body() {
    let server = FakeServer::start(vec![chat("hi there")]).await;
    let client = OpenAi::new(settings(&server.openai_url(), Some("sk-test"))).unwrap();
    let reply = client.complete(&ask()).await.unwrap();
    assert_eq!(reply.text, "hi there");
    assert_eq!(
        (
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
            reply.usage.estimated
        ),
        (11, 7, false)
    );
    assert_eq!(reply.model, "fake-model");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(
        seen[0].body,
        json!({
            "model": "fake-model",
            "messages": [
                {"role": "system", "content": "You are planbox."},
                {"role": "user", "content": "Say hi."}
            ],
            "temperature": 0.2f32,
            "max_tokens": 256
        })
    );
}

#[tokio::test]
async fn openai_schema_requests_use_strict_json_schema() {
    let server = FakeServer::start(vec![chat("{\"value\": 42}")]).await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let (value, reply) = complete_json(&client, &with_schema(), 2).await.unwrap();
    assert_eq!(value, json!({"value": 42}));
    assert_eq!(reply.mode, Some(StructuredMode::JsonSchema));
    let body = &server.seen()[0].body;
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": answer_schema().schema, "strict": true}})
    );
    assert!(server.seen()[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_local_grammar_gets_the_narrower_schema_and_a_longer_reply_is_still_taken() {
    let narrow = json!({
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "integer", "maximum": 3}},
        "additionalProperties": false
    });
    let request = Request {
        schema: Some(Schema {
            decode: Some(narrow.clone()),
            ..answer_schema()
        }),
        ..ask()
    };
    // A server that ignored the grammar replied past it: the reply matches the schema the
    // client checks, so it is taken without a re-ask.
    let server = FakeServer::start(vec![chat("{\"value\": 42}")]).await;
    let local = OpenAi::new(settings(&server.openai_url(), None))
        .unwrap()
        .with_schemas_as_given();
    let (value, _) = complete_json(&local, &request, 2).await.unwrap();
    assert_eq!(value, json!({"value": 42}));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        server.seen()[0].body["response_format"]["json_schema"]["schema"],
        narrow
    );
    // A strict (hosted) server gets the checked schema in its strict form, never the bound.
    let server = FakeServer::start(vec![chat("{\"value\": 42}")]).await;
    let hosted = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    complete_json(&hosted, &request, 2).await.unwrap();
    assert_eq!(
        server.seen()[0].body["response_format"]["json_schema"]["schema"],
        answer_schema().schema
    );
}

#[tokio::test]
async fn fenced_json_is_extracted() {
    let server = FakeServer::start(vec![chat("Here you go:\n```json\n{\"value\": 7}\n```")]).await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let (value, _) = complete_json(&client, &with_schema(), 0).await.unwrap();
    assert_eq!(value, json!({"value": 7}));
}

#[tokio::test]
async fn truncated_or_wrong_json_is_sent_back_with_the_errors() {
    let server = FakeServer::start(vec![
        chat("{\"value\": 4"),
        chat("{\"value\": \"four\"}"),
        chat("{\"value\": 4}"),
    ])
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let (value, _) = complete_json(&client, &with_schema(), 2).await.unwrap();
    assert_eq!(value, json!({"value": 4}));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let messages = seen[2].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": "{\"value\": 4"})
    );
    assert!(
        messages[3]["content"]
            .as_str()
            .unwrap()
            .starts_with("the reply is not valid JSON")
    );
    assert_eq!(
        messages[5]["content"],
        "the JSON does not match the schema:\n- at $.value: expected integer, got string\nReply with corrected JSON only."
    );
}

#[tokio::test]
async fn json_that_never_becomes_valid_is_a_clear_error() {
    let server = FakeServer::start(vec![chat("nope"), chat("still nope")]).await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let err = complete_json(&client, &with_schema(), 1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unusable model reply: no valid JSON after 1 re-asks; last problem: the reply is not valid JSON (it may be cut off); reply with the complete JSON only"
    );
}

#[tokio::test]
async fn servers_without_json_schema_fall_back_to_json_object_then_prompt() {
    let server = FakeServer::start(vec![
        Answer::status(
            400,
            r#"{"error": {"message": "response_format json_schema is not supported"}}"#,
        ),
        Answer::status(
            400,
            r#"{"error": {"message": "unknown field response_format"}}"#,
        ),
        chat("{\"value\": 1}"),
        chat("{\"value\": 2}"),
    ])
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let (value, reply) = complete_json(&client, &with_schema(), 0).await.unwrap();
    assert_eq!(
        (value, reply.mode),
        (json!({"value": 1}), Some(StructuredMode::Prompt))
    );
    let seen = server.seen();
    assert_eq!(seen[0].body["response_format"]["type"], "json_schema");
    assert_eq!(
        seen[1].body["response_format"],
        json!({"type": "json_object"})
    );
    assert_eq!(seen[2].body.get("response_format"), None);
    let last_user = seen[2].body["messages"][1]["content"].as_str().unwrap();
    assert!(
        last_user.starts_with("Say hi.\n\nReply with one JSON value only"),
        "{last_user}"
    );
    // The system message stays first and unchanged, so a server can reuse the prefix.
    assert_eq!(seen[2].body["messages"][0]["content"], "You are planbox.");
    // The fallback is remembered: the next request goes straight to the prompt mode.
    complete_json(&client, &with_schema(), 0).await.unwrap();
    assert_eq!(server.seen()[3].body.get("response_format"), None);
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_servers_delay() {
    let server = FakeServer::start(vec![
        Answer::status(429, r#"{"error": {"message": "slow down"}}"#).header("retry-after", "0"),
        chat("ok"),
    ])
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    assert_eq!(client.complete(&ask()).await.unwrap().text, "ok");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let server = FakeServer::start(vec![Answer::status(500, "{}"); 5]).await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(
        matches!(err, Error::LlmFailing { status, .. } if status == 500),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("kept failing (500 Internal Server Error)"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 3, "three attempts, then give up");
}

#[tokio::test]
async fn a_slow_reply_past_the_timeout_is_an_error_naming_it() {
    let server = FakeServer::start(vec![chat("late").delayed(Duration::from_secs(30)); 3]).await;
    let client = OpenAi::new(ClientSettings {
        timeout: Duration::from_millis(200),
        ..settings(&server.openai_url(), None)
    })
    .unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LlmUnreachable {
                kind: LlmUnreachableKind::TimedOut(after),
                ..
            } if after == Duration::from_millis(200)
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(": no reply within 200ms"),
        "{err}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_not_retried() {
    let server = FakeServer::start(vec![Answer::status(200, "<html>proxy login</html>")]).await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(matches!(err, Error::LlmNotJson { .. }), "{err:?}");
    assert!(err.to_string().contains("body that is not JSON"), "{err}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn unauthorized_names_the_key_variable_and_is_not_retried() {
    let server = FakeServer::start(vec![Answer::status(
        401,
        r#"{"error": {"message": "bad key"}}"#,
    )])
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), Some("sk-wrong"))).unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LlmKeyRefused {
                key_var: "OPENAI_API_KEY",
                has_key: true,
                ..
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.ends_with("refused the API key in OPENAI_API_KEY (401 Unauthorized)"),
        "{err}"
    );
    assert!(!err.contains("sk-wrong"));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_unknown_model_is_named_with_the_url_and_not_retried() {
    let server = FakeServer::start(vec![Answer::status(
        404,
        r#"{"error": {"message": "model not found"}}"#,
    )])
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(
        matches!(&err, Error::LlmNotFound { model, .. } if model == "fake-model"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "model \"fake-model\" or the endpoint was not found at {}/chat/completions (404: model not found)",
            server.openai_url()
        )
    );
    assert_eq!(server.seen().len(), 1, "a missing model is not retried");
}

#[tokio::test]
async fn an_unreachable_server_is_a_refused_connection_at_its_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let client = OpenAi::new(settings(&url, None)).unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LlmUnreachable {
                kind: LlmUnreachableKind::Refused,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("cannot reach the model server at {url}/chat/completions: connection refused")
    );
    // The HTTP client's own words stay in the chain, for `{err:#}` and RUST_LOG.
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        source.to_string().contains("error sending request"),
        "{source}"
    );
}

fn anthropic_settings(server: &FakeServer) -> ClientSettings {
    ClientSettings {
        key_var: "ANTHROPIC_API_KEY",
        ..settings(&server.base, Some("ak-test"))
    }
}

#[tokio::test]
async fn anthropic_text_reply_and_request() {
    let server = FakeServer::start(vec![message(json!([{"type": "text", "text": "hello"}]))]).await;
    let client = Anthropic::new(anthropic_settings(&server)).unwrap();
    let reply = client.complete(&ask()).await.unwrap();
    assert_eq!(
        (
            reply.text.as_str(),
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens
        ),
        ("hello", 21, 5)
    );
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "ak-test");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        seen.body,
        json!({
            "model": "fake-model",
            "max_tokens": 256,
            "temperature": 0.2f32,
            "system": "You are planbox.",
            "messages": [{"role": "user", "content": "Say hi."}]
        })
    );
}

#[tokio::test]
async fn anthropic_structured_output_is_a_forced_tool_call() {
    let server = FakeServer::start(vec![
        Answer::status(
            529,
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ),
        message(json!([{"type": "tool_use", "id": "t1", "name": "answer", "input": {"value": 9}}])),
    ])
    .await;
    let client = Anthropic::new(anthropic_settings(&server)).unwrap();
    let (value, _) = complete_json(&client, &with_schema(), 0).await.unwrap();
    assert_eq!(value, json!({"value": 9}));
    let body = &server.seen()[1].body;
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert_eq!(body["tools"][0]["input_schema"], answer_schema().schema);
}

#[tokio::test]
async fn a_recorded_session_replays_and_a_changed_request_fails_loudly() {
    let server = FakeServer::start(vec![chat("first"), chat("second")]).await;
    let dir = tempfile::tempdir().unwrap();
    let client = OpenAi::new(settings(&server.openai_url(), None)).unwrap();
    let recorder = Recorder::new(client, dir.path(), vec![]).unwrap();
    let second = Request::new(vec![Message::user("again")]);
    assert_eq!(recorder.complete(&ask()).await.unwrap().text, "first");
    assert_eq!(recorder.complete(&second).await.unwrap().text, "second");

    let replay = Replay::open(dir.path()).unwrap();
    // By content: the second request first, as a parallel step might ask it.
    assert_eq!(replay.complete(&second).await.unwrap().text, "second");
    assert_eq!(replay.complete(&ask()).await.unwrap().text, "first");
    let err = replay.complete(&ask()).await.unwrap_err().to_string();
    assert!(
        err.contains("holds 1 recording of this request and it was asked 2 times"),
        "{err}"
    );
    let other = Request::new(vec![Message::user("something new")]);
    let err = replay.complete(&other).await.unwrap_err().to_string();
    assert!(
        err.contains("has no recording of this request") && err.contains("$.messages"),
        "{err}"
    );
}

#[tokio::test]
async fn recordings_redact_secrets() {
    let server = FakeServer::start(vec![chat("the key is sk-secret-1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let client = OpenAi::new(settings(&server.openai_url(), Some("sk-secret-1"))).unwrap();
    let recorder = Recorder::new(client, dir.path(), vec!["sk-secret-1".into()]).unwrap();
    recorder.complete(&ask()).await.unwrap();
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let written = std::fs::read_to_string(file).unwrap();
    assert!(!written.contains("sk-secret-1"), "{written}");
    assert!(written.contains("the key is <redacted>"), "{written}");
}

#[tokio::test]
async fn a_spent_budget_stops_the_next_call() {
    let server = FakeServer::start(vec![chat("one"), chat("two")]).await;
    let meter = Arc::new(Meter::new(Some(18), None));
    let client = Metered::new(
        OpenAi::new(settings(&server.openai_url(), None)).unwrap(),
        meter.clone(),
    );
    client.complete(&ask()).await.unwrap();
    let err = client.complete(&ask()).await.unwrap_err();
    assert_eq!(err.to_string(), "token budget spent: 18 of 18 tokens used");
    assert_eq!(
        server.seen().len(),
        1,
        "the refused call never reached the server"
    );
    assert_eq!(meter.totals().calls, 1);
}

#[test]
fn the_shipped_recording_replays() {
    // Recorded from the offline model (make local-llm) with `planbox llm ping --record`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llm/ping");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(["llm", "ping", "--replay", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("model qwen2.5-coder-1.5b-instruct at ") && stdout.contains("\"pong\""),
        "{stdout}"
    );
}

/// What OpenAI's strict mode refuses in a schema, found the way its validator does: every
/// object must list all its properties as required and allow no others, and the string
/// length keywords are not supported.
fn strict_problems(schema: &serde_json::Value, path: &str, problems: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    for keyword in ["minLength", "maxLength"] {
        if map.contains_key(keyword) {
            problems.push(format!("{path}: '{keyword}' is not permitted"));
        }
    }
    if let Some(properties) = map.get("properties").and_then(|p| p.as_object()) {
        let required: Vec<&str> = map
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for name in properties.keys() {
            if !required.contains(&name.as_str()) {
                problems.push(format!("{path}: 'required' is missing '{name}'"));
            }
        }
        if map.get("additionalProperties") != Some(&json!(false)) {
            problems.push(format!("{path}: 'additionalProperties' must be false"));
        }
        for (name, property) in properties {
            strict_problems(property, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = map.get("items") {
        strict_problems(items, &format!("{path}[]"), problems);
    }
}

#[tokio::test]
async fn plan_schemas_pass_a_server_that_enforces_strict_mode_and_its_nulls_are_read_as_absent() {
    let server = fake_llm::RuleServer::start(|body: serde_json::Value| {
        Box::pin(async move {
            let schema = &body["response_format"]["json_schema"]["schema"];
            let mut problems = Vec::new();
            strict_problems(schema, "$", &mut problems);
            if !problems.is_empty() {
                return Answer::status(
                    400,
                    &json!({"error": {"message": format!("Invalid schema for response_format 'plan': {}", problems.join("; "))}}).to_string(),
                );
            }
            chat(
                &json!({"steps": [{"id": "total", "title": "sum", "instruction": "Sum amount.", "kind": "action",
                    "depends_on": [], "reads": ["sales.csv"], "writes": [], "produces": null, "uses": null, "fallback": null}]})
                .to_string(),
            )
        }) as fake_llm::Reply
    })
    .await;
    let client = OpenAi::new(settings(&server.openai_url(), Some("sk-test"))).unwrap();
    let request = Request {
        schema: Some(Schema {
            decode: None,
            name: "plan".into(),
            schema: planbox::plan::schema(&planbox::plan::Limits::default()),
        }),
        ..ask()
    };
    let (value, reply) = complete_json(&client, &request, 0).await.unwrap();
    assert_eq!(
        reply.mode,
        Some(StructuredMode::JsonSchema),
        "no fallback to json_object"
    );
    assert_eq!(client.mode(), StructuredMode::JsonSchema);
    assert!(value["steps"][0].get("fallback").is_none(), "{value}");
    let plan = planbox::plan::Plan::from_model("g", &value).unwrap();
    assert_eq!(plan.steps[0].fallback, None);
    assert_eq!(server.seen().len(), 1);

    // The same schema sent as given would have been refused.
    let mut problems = Vec::new();
    strict_problems(
        &planbox::plan::schema(&planbox::plan::Limits::default()),
        "$",
        &mut problems,
    );
    assert!(!problems.is_empty());
}
