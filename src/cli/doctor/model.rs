//! The model checks: the configured model answers, and it follows a JSON schema.

use std::time::Duration;

use planbox::llm::{
    Client, Llm, LlmConfig, LlmUnreachableKind, Message, Provider, Request, Schema, StructuredMode,
};
use serde_json::json;

use super::{Check, MODEL, STRUCTURED, Status, root_cause, within};
use crate::cli::ModelArgs;

pub(super) async fn model_checks(args: &ModelArgs, deadline: Duration) -> (Check, Check) {
    let mut config = match args.resolve(planbox::llm::config::Overrides::default()) {
        Ok(config) => config,
        Err(err) => {
            return (
                Check::fail(MODEL, format!("{err:#}"), config_fix(&err)),
                Check::skip(STRUCTURED, "needs a configured model"),
            );
        }
    };
    // One try each, bounded by the deadline: doctor reports, it does not wait out retries.
    config.timeout = deadline;
    config.retry.attempts = 1;
    let client = match config.client() {
        Ok(client) => client,
        Err(err) => {
            return (
                Check::fail(MODEL, format!("{err:#}"), config_fix(&err)),
                Check::skip(STRUCTURED, "needs a configured model"),
            );
        }
    };
    let model = ping(&client, &config, deadline).await;
    if model.status == Status::Fail {
        return (model, Check::skip(STRUCTURED, "needs a model that answers"));
    }
    let structured = structured_check(&client, &config, deadline).await;
    (model, structured)
}

fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Local => "local",
    }
}

/// The fix for a configuration error: a missing key names its variable.
fn config_fix(err: &planbox::Error) -> String {
    if let planbox::Error::MissingKey { var } = err {
        return format!(
            "export {var}=<your key>   (or use the offline model: make local-llm, --provider local)"
        );
    }
    "correct the setting named above (a flag, a PLANBOX_* variable or planbox.toml)".to_string()
}

/// Advice when a model server answered too slowly for doctor's deadline.
const LONGER: &str = "planbox doctor --timeout 60   (a slow server may need longer)";

/// The fix for a model request that failed, chosen by variant: doctor knows the provider, so
/// a server that does not answer gets that provider's fix; the rest is the error line's.
fn request_fix(config: &LlmConfig, err: &planbox::Error) -> String {
    if let planbox::Error::LlmUnreachable { kind, .. } = err {
        match kind {
            LlmUnreachableKind::Refused
            | LlmUnreachableKind::CutOff
            | LlmUnreachableKind::Other => {
                return unreachable_fix(config);
            }
            LlmUnreachableKind::TimedOut(_) => return LONGER.to_string(),
            LlmUnreachableKind::Dns | LlmUnreachableKind::Tls => {}
        }
    }
    crate::cli::error_fix(err).unwrap_or_else(|| {
        "RUST_LOG=debug planbox llm ping   (shows the exchange with the server)".to_string()
    })
}

/// The fix for a server that does not answer, by provider.
fn unreachable_fix(config: &LlmConfig) -> String {
    match config.provider {
        Provider::Local => "make local-llm".to_string(),
        Provider::OpenAi => format!(
            "start the server at {}, or point planbox at one: --base-url URL (or export OPENAI_BASE_URL=URL)",
            config.base_url
        ),
        Provider::Anthropic => format!(
            "check the network path to {} (or export ANTHROPIC_BASE_URL=URL)",
            config.base_url
        ),
    }
}

async fn ping(client: &Client, config: &LlmConfig, deadline: Duration) -> Check {
    let request = Request::ping();
    let whom = format!(
        "{} model {:?} at {}",
        provider_name(config.provider),
        config.model,
        config.base_url
    );
    match within(deadline + Duration::from_secs(1), client.complete(&request)).await {
        Some(Ok(reply)) => Check::ok(
            MODEL,
            format!(
                "{whom} answered in {:.2} s (as {:?})",
                reply.latency.as_secs_f64(),
                reply.model
            ),
        ),
        Some(Err(err)) => {
            let detail = if let planbox::Error::LlmUnreachable { kind, source, .. } = &err {
                // The fix gives the advice; the detail names what failed, down to the cause
                // the operating system reported (refused, no such host).
                let why = match kind {
                    LlmUnreachableKind::TimedOut(_) => kind.to_string(),
                    LlmUnreachableKind::Refused
                    | LlmUnreachableKind::Dns
                    | LlmUnreachableKind::Tls
                    | LlmUnreachableKind::CutOff
                    | LlmUnreachableKind::Other => root_cause(source),
                };
                format!("{whom} is unreachable: {why}")
            } else {
                format!("{whom}: {err:#}")
            };
            Check::fail(MODEL, detail, request_fix(config, &err))
        }
        None => Check::fail(
            MODEL,
            format!("{whom} did not answer within {deadline:?}"),
            match config.provider {
                Provider::Local => "make local-llm-stop && make local-llm   (restart it)",
                Provider::OpenAi | Provider::Anthropic => LONGER,
            },
        ),
    }
}

/// A tiny `json_schema` request whose reply is checked against the schema: the planner and
/// every structured step depend on it.
async fn structured_check(client: &Client, config: &LlmConfig, deadline: Duration) -> Check {
    let schema = json!({
        "type": "object",
        "properties": {"sum": {"type": "integer"}},
        "required": ["sum"],
        "additionalProperties": false,
    });
    let request = Request {
        schema: Some(Schema {
            decode: None,
            name: "doctor_sum".into(),
            schema: schema.clone(),
        }),
        max_tokens: Some(32),
        temperature: Some(0.0),
        ..Request::new(vec![
            Message::system("You are a terse assistant."),
            Message::user("What is 2 + 3? Answer as JSON with one integer field, sum."),
        ])
    };
    let reply = match within(deadline + Duration::from_secs(1), client.complete(&request)).await {
        Some(Ok(reply)) => reply,
        Some(Err(err)) => {
            let fix = request_fix(config, &err);
            return Check::fail(
                STRUCTURED,
                format!("a json_schema request failed: {err:#}"),
                fix,
            );
        }
        None => {
            return Check::fail(
                STRUCTURED,
                format!("no answer to a json_schema request within {deadline:?}"),
                LONGER,
            );
        }
    };
    let better_server = "use a server that enforces response_format json_schema (llama-server, vLLM, Ollama 0.5+): --base-url URL";
    let fallback = match reply.mode {
        Some(StructuredMode::JsonSchema) | None => None,
        Some(StructuredMode::JsonObject) => Some("json_object"),
        Some(StructuredMode::Prompt) => Some("a prompt instruction"),
    };
    if let Some(fallback) = fallback {
        return Check::warn(
            STRUCTURED,
            format!(
                "the server refused response_format json_schema; planbox falls back to {fallback}, which models follow less reliably"
            ),
            better_server,
        );
    }
    let shown = planbox::text::truncate_middle(reply.text.trim(), 120);
    match serde_json::from_str(reply.text.trim()) {
        Err(_) => Check::warn(
            STRUCTURED,
            format!("json_schema was accepted but the reply is not JSON: {shown:?}"),
            better_server,
        ),
        Ok(value) => match planbox::llm::schema::validate(&schema, &value) {
            Ok(()) => Check::ok(
                STRUCTURED,
                format!("json_schema accepted and the reply matched the schema: {shown}"),
            ),
            Err(errors) => Check::warn(
                STRUCTURED,
                format!(
                    "json_schema was accepted but the reply does not match it ({}): {shown}",
                    errors.join("; ")
                ),
                better_server,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planbox::llm::config::{FileConfig, Overrides};
    use pretty_assertions::assert_eq;

    fn config(provider: Provider) -> LlmConfig {
        let overrides = Overrides {
            provider: Some(provider),
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            ..Overrides::default()
        };
        let key = |name: &str| (name == "ANTHROPIC_API_KEY").then(|| "ak".to_string());
        LlmConfig::resolve(&overrides, key, &FileConfig::default()).unwrap()
    }

    fn unreachable(kind: LlmUnreachableKind) -> planbox::Error {
        let _ = rustls::crypto::ring::default_provider().install_default();
        planbox::Error::LlmUnreachable {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            kind,
            source: reqwest::Client::new().get("no url").build().unwrap_err(),
        }
    }

    #[test]
    fn a_server_that_does_not_answer_gets_its_providers_fix() {
        let refused = unreachable(LlmUnreachableKind::Refused);
        assert_eq!(
            request_fix(&config(Provider::Local), &refused),
            "make local-llm"
        );
        assert_eq!(
            request_fix(&config(Provider::OpenAi), &refused),
            "start the server at http://127.0.0.1:8080/v1, or point planbox at one: --base-url URL (or export OPENAI_BASE_URL=URL)"
        );
        assert_eq!(
            request_fix(&config(Provider::Anthropic), &refused),
            "check the network path to http://127.0.0.1:8080/v1 (or export ANTHROPIC_BASE_URL=URL)"
        );
    }

    #[test]
    fn a_slow_server_gets_a_longer_deadline_and_a_bad_address_the_error_lines_fix() {
        let local = config(Provider::Local);
        let slow = unreachable(LlmUnreachableKind::TimedOut(Duration::from_secs(10)));
        assert_eq!(request_fix(&local, &slow), LONGER);
        assert_eq!(
            request_fix(&local, &unreachable(LlmUnreachableKind::Dns)),
            "check the host name in the base URL: --base-url URL"
        );
    }

    #[test]
    fn a_refused_key_and_a_missing_model_are_told_apart() {
        let local = config(Provider::Local);
        let key = planbox::Error::LlmKeyRefused {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            status: reqwest::StatusCode::FORBIDDEN,
            key_var: "PLANBOX_LOCAL_API_KEY",
            has_key: true,
        };
        assert_eq!(
            request_fix(&local, &key),
            "export PLANBOX_LOCAL_API_KEY=<your key>"
        );
        let model = planbox::Error::LlmNotFound {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            model: "qwen".into(),
            message: "not found".into(),
        };
        assert!(request_fix(&local, &model).contains("PLANBOX_MODEL"));
        let teapot = planbox::Error::LlmRefused {
            url: "http://127.0.0.1:8080/v1/chat/completions".into(),
            status: reqwest::StatusCode::IM_A_TEAPOT,
            message: "no".into(),
        };
        assert_eq!(
            request_fix(&local, &teapot),
            "RUST_LOG=debug planbox llm ping   (shows the exchange with the server)"
        );
    }

    #[test]
    fn a_missing_key_names_its_variable() {
        assert_eq!(
            config_fix(&planbox::Error::MissingKey {
                var: "ANTHROPIC_API_KEY"
            }),
            "export ANTHROPIC_API_KEY=<your key>   (or use the offline model: make local-llm, --provider local)"
        );
        let hot = planbox::Error::InvalidSetting {
            name: "temperature",
            value: "3".into(),
            reason: "must be in [0, 2]",
        };
        assert!(config_fix(&hot).contains("planbox.toml"));
    }
}
