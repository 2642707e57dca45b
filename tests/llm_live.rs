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
        decode: None,
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

/// The dev questions of the shared data-analysis benchmark, as a batch suite (written to a
/// temporary folder: the questions are not part of the project).
fn dabench_suite(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let root = std::env::var_os("PLANBOX_DABENCH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/dabench-dev")
        });
    let questions = std::fs::read_to_string(root.join("questions.jsonl")).ok()?;
    let labels = std::fs::read_to_string(root.join("labels.jsonl")).ok()?;
    let labels: std::collections::HashMap<i64, serde_json::Value> = labels
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_i64().unwrap(), v["common_answers"].clone()))
        .collect();
    let mut suite = String::new();
    for line in questions.lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = q["id"].as_i64().unwrap();
        let expect: serde_json::Map<String, serde_json::Value> = labels[&id]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].clone()))
            .collect();
        let goal = format!(
            "{} Constraints: {} Answer format: {}",
            q["question"].as_str().unwrap(),
            q["constraints"].as_str().unwrap(),
            q["format"].as_str().unwrap()
        );
        let input = root.join("tables").join(q["file_name"].as_str().unwrap());
        suite.push_str(&format!(
            "{}\n",
            json!({"id": format!("q{id}"), "goal": goal, "inputs": [input], "expect": expect})
        ));
    }
    let path = dir.join("dabench.jsonl");
    std::fs::write(&path, suite).unwrap();
    Some(path)
}

#[test]
#[ignore = "needs the local model server and ../shared/dabench-dev: make local-llm, then make test-llm"]
fn the_local_model_answers_benchmark_questions() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dabench_suite(dir.path())
        .expect("../shared/dabench-dev (or PLANBOX_DABENCH) holds the questions");
    let mode = std::env::var("PLANBOX_DABENCH_PLAN").unwrap_or_else(|_| "dag".into());
    // PLANBOX_DABENCH_RUNS keeps the run folders for reading afterwards.
    let runs = std::env::var_os("PLANBOX_DABENCH_RUNS")
        .map_or_else(|| dir.path().join("runs"), std::path::PathBuf::from);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args([
            "batch",
            suite.to_str().unwrap(),
            "--json",
            "--provider",
            "local",
            "--plan",
            &mode,
        ])
        .args([
            "--runs-dir",
            runs.to_str().unwrap(),
            "--goals-parallel",
            "1",
            "--parallel",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let right = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["expect_ok"] == json!(true))
        .count();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    eprintln!(
        "dabench-dev ({mode}): {right} of {} right",
        stdout.lines().count()
    );
    assert!(right >= 3, "only {right} right:\n{stdout}");
}
