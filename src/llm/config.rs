//! Which model to use and how: command-line flags, then environment variables, then
//! `planbox.toml`, then defaults. With nothing configured, the offline local model.
//! Keys come only from the environment and never appear in logs, events or errors.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Client;
use super::anthropic::Anthropic;
use super::openai::{ClientSettings, OpenAi};
use super::retry::RetryPolicy;
use crate::error::{Error, Result};

/// The model provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenAI-compatible server.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// The offline model that `make local-llm` serves (OpenAI-compatible, no key).
    Local,
}

/// Where the offline model is served.
pub const LOCAL_URL: &str = "http://127.0.0.1:8411/v1";
/// The offline model's name.
pub const LOCAL_MODEL: &str = "qwen2.5-coder-1.5b-instruct";

/// Price of a model per million tokens, for the cost estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_mtok: f64,
    /// Per million completion tokens.
    pub output_per_mtok: f64,
}

/// Settings given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Provider.
    pub provider: Option<Provider>,
    /// Base URL.
    pub base_url: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Reply token limit.
    pub max_tokens: Option<u32>,
    /// Request timeout in seconds.
    pub timeout_secs: Option<f64>,
    /// Token budget for a run.
    pub token_budget: Option<u64>,
    /// Money budget for a run, in the price table's currency.
    pub max_cost: Option<f64>,
}

/// The `[llm]`, `[prices]` and `[sandbox]` tables of `planbox.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Model settings.
    #[serde(default)]
    pub llm: FileLlm,
    /// Prices by model name.
    #[serde(default)]
    pub prices: HashMap<String, Price>,
    /// Where scripts run.
    #[serde(default)]
    pub sandbox: FileSandbox,
}

/// The `[sandbox]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSandbox {
    /// OCI runtime for every script container, e.g. `runsc` for gVisor.
    pub runtime: Option<String>,
    /// Engines to place scripts on, each `HOST` or `HOST,parallel=N`.
    #[serde(default)]
    pub engines: Vec<String>,
}

/// The `[llm]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLlm {
    /// Provider.
    pub provider: Option<Provider>,
    /// Base URL.
    pub base_url: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Reply token limit.
    pub max_tokens: Option<u32>,
    /// Request timeout in seconds.
    pub timeout_secs: Option<f64>,
    /// Tries per request, the first included.
    pub retries: Option<u32>,
    /// Token budget for a run.
    pub token_budget: Option<u64>,
    /// Money budget for a run, in the price table's currency.
    pub max_cost: Option<f64>,
}

impl FileConfig {
    /// Read `planbox.toml`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|source| Error::ConfigFile {
                path: path.to_path_buf(),
                source,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(err) => Err(Error::Io {
                context: format!("reading {}", path.display()),
                source: err,
            }),
        }
    }
}

/// The resolved model settings.
#[derive(Clone)]
pub struct LlmConfig {
    /// Provider.
    pub provider: Provider,
    /// Base URL.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// The key, from the environment only.
    pub api_key: Option<String>,
    /// The variable the key comes from.
    pub key_var: &'static str,
    /// Temperature.
    pub temperature: f32,
    /// Reply token limit.
    pub max_tokens: u32,
    /// Request timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Token budget for a run.
    pub token_budget: Option<u64>,
    /// Money budget for a run, in the price table's currency.
    pub max_cost: Option<f64>,
    /// The model's price, if the table has it.
    pub price: Option<Price>,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("token_budget", &self.token_budget)
            .finish_non_exhaustive()
    }
}

impl LlmConfig {
    /// Resolve flags over environment (`env` looks a variable up) over the file.
    pub fn resolve(
        flags: &Overrides,
        env: impl Fn(&str) -> Option<String>,
        file: &FileConfig,
    ) -> Result<Self> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let parse_env = |name: &'static str| -> Result<Option<Provider>> {
            match env(name).as_deref() {
                None => Ok(None),
                Some("openai") => Ok(Some(Provider::OpenAi)),
                Some("anthropic") => Ok(Some(Provider::Anthropic)),
                Some("local") => Ok(Some(Provider::Local)),
                Some(other) => Err(Error::UnknownValue {
                    name,
                    value: other.to_string(),
                    expected: "openai, anthropic or local",
                }),
            }
        };
        let provider = match flags
            .provider
            .or(parse_env("PLANBOX_PROVIDER")?)
            .or(file.llm.provider)
        {
            Some(provider) => provider,
            None if env("OPENAI_API_KEY").is_some() || env("OPENAI_BASE_URL").is_some() => {
                Provider::OpenAi
            }
            None if env("ANTHROPIC_API_KEY").is_some() => Provider::Anthropic,
            None => Provider::Local,
        };
        let (url_var, key_var, default_url, default_model) = match provider {
            Provider::OpenAi => (
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY",
                "https://api.openai.com/v1",
                "gpt-4o-mini",
            ),
            Provider::Anthropic => (
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                "https://api.anthropic.com",
                "claude-sonnet-4-5",
            ),
            Provider::Local => (
                "PLANBOX_LOCAL_URL",
                "PLANBOX_LOCAL_API_KEY",
                LOCAL_URL,
                LOCAL_MODEL,
            ),
        };
        let base_url = flags
            .base_url
            .clone()
            .or_else(|| env(url_var))
            .or_else(|| file.llm.base_url.clone())
            .unwrap_or_else(|| default_url.to_string());
        let model = flags
            .model
            .clone()
            .or_else(|| env("PLANBOX_MODEL"))
            .or_else(|| file.llm.model.clone())
            .unwrap_or_else(|| default_model.to_string());
        let api_key = env(key_var);
        let needs_key = matches!(provider, Provider::Anthropic)
            || (provider == Provider::OpenAi && base_url.contains("api.openai.com"));
        if needs_key && api_key.is_none() {
            return Err(Error::MissingKey { var: key_var });
        }
        let timeout_secs = flags
            .timeout_secs
            .or(file.llm.timeout_secs)
            .unwrap_or(300.0);
        if !(timeout_secs > 0.0 && timeout_secs <= 3600.0) {
            return Err(Error::InvalidSetting {
                name: "timeout",
                value: timeout_secs.to_string(),
                reason: "must be in (0, 3600] seconds",
            });
        }
        let temperature = flags.temperature.or(file.llm.temperature).unwrap_or(0.2);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Error::InvalidSetting {
                name: "temperature",
                value: temperature.to_string(),
                reason: "must be in [0, 2]",
            });
        }
        let retry = RetryPolicy {
            attempts: file.llm.retries.unwrap_or(5).max(1),
            ..RetryPolicy::default()
        };
        let price = file.prices.get(&model).copied();
        let max_cost = flags.max_cost.or(file.llm.max_cost);
        if let Some(max) = max_cost {
            if !(max.is_finite() && max > 0.0) {
                return Err(Error::InvalidSetting {
                    name: "max_cost",
                    value: max.to_string(),
                    reason: "must be a positive amount",
                });
            }
            if price.is_none() {
                return Err(Error::InvalidSetting {
                    name: "max_cost",
                    value: max.to_string(),
                    reason: "needs the model's price: add it under [prices] in planbox.toml",
                });
            }
        }
        Ok(LlmConfig {
            provider,
            base_url,
            model,
            api_key,
            key_var,
            temperature,
            max_tokens: flags.max_tokens.or(file.llm.max_tokens).unwrap_or(2048),
            timeout: Duration::from_secs_f64(timeout_secs),
            retry,
            token_budget: flags.token_budget.or(file.llm.token_budget),
            max_cost,
            price,
        })
    }

    /// The client these settings describe.
    pub fn client(&self) -> Result<Client> {
        let settings = ClientSettings {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key: self.api_key.clone(),
            key_var: self.key_var,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout: self.timeout,
            retry: self.retry,
        };
        Ok(match self.provider {
            Provider::OpenAi => Client::OpenAi(OpenAi::new(settings)?),
            // llama-server turns the schema into a grammar: its limits help a small model.
            Provider::Local => Client::OpenAi(OpenAi::new(settings)?.with_schemas_as_given()),
            Provider::Anthropic => Client::Anthropic(Anthropic::new(settings)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn with_nothing_configured_the_local_model_is_the_default() {
        let config =
            LlmConfig::resolve(&Overrides::default(), env_of(&[]), &FileConfig::default()).unwrap();
        assert_eq!(
            (
                config.provider,
                config.base_url.as_str(),
                config.model.as_str()
            ),
            (Provider::Local, LOCAL_URL, LOCAL_MODEL)
        );
        assert_eq!(config.api_key, None);
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file: FileConfig = toml::from_str(
            "[llm]\nprovider = \"openai\"\nbase_url = \"http://file/v1\"\nmodel = \"file-model\"\n[prices.env-model]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
        )
        .unwrap();
        let env = env_of(&[
            ("PLANBOX_MODEL", "env-model"),
            ("OPENAI_BASE_URL", "http://env/v1"),
        ]);
        let config = LlmConfig::resolve(&Overrides::default(), &env, &file).unwrap();
        assert_eq!(
            (config.base_url.as_str(), config.model.as_str()),
            ("http://env/v1", "env-model")
        );
        assert_eq!(
            config.price,
            Some(Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0
            })
        );
        let flags = Overrides {
            model: Some("flag-model".into()),
            ..Overrides::default()
        };
        let config = LlmConfig::resolve(&flags, &env, &file).unwrap();
        assert_eq!(config.model, "flag-model");
    }

    #[test]
    fn a_hosted_provider_without_a_key_names_the_variable() {
        let flags = Overrides {
            provider: Some(Provider::Anthropic),
            ..Overrides::default()
        };
        let err = LlmConfig::resolve(&flags, env_of(&[]), &FileConfig::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingKey {
                    var: "ANTHROPIC_API_KEY"
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid setting: ANTHROPIC_API_KEY is not set"),
            "{err}"
        );
    }

    #[test]
    fn settings_out_of_range_say_which_and_what_was_given() {
        let resolve = |flags: Overrides, env: &[(&str, &str)]| {
            LlmConfig::resolve(&flags, env_of(env), &FileConfig::default())
                .unwrap_err()
                .to_string()
        };
        let hot = Overrides {
            temperature: Some(3.0),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(hot, &[]),
            "invalid setting: temperature must be in [0, 2], got 3"
        );
        assert_eq!(
            resolve(Overrides::default(), &[("PLANBOX_PROVIDER", "azure")]),
            "invalid setting: PLANBOX_PROVIDER=\"azure\": use openai, anthropic or local"
        );
    }

    #[test]
    fn a_config_file_that_does_not_parse_names_the_file_and_keeps_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planbox.toml");
        std::fs::write(&path, "[llm]\nmodle = \"x\"\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err();
        assert!(
            matches!(&err, Error::ConfigFile { path: p, .. } if *p == path),
            "{err}"
        );
        let source = std::error::Error::source(&err).expect("the parser's error is kept");
        assert!(source.to_string().contains("modle"), "{source}");
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let env = env_of(&[("OPENAI_API_KEY", "sk-very-secret")]);
        let config =
            LlmConfig::resolve(&Overrides::default(), env, &FileConfig::default()).unwrap();
        assert_eq!(config.provider, Provider::OpenAi);
        let shown = format!("{config:?} {:?}", config.client().unwrap());
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let file: FileConfig = toml::from_str(include_str!("../../planbox.toml.example")).unwrap();
        assert_eq!(file.llm.provider, Some(Provider::Local));
        assert!(file.prices.contains_key("gpt-4o-mini"));
    }

    #[test]
    fn unknown_settings_in_the_file_are_errors() {
        assert!(toml::from_str::<FileConfig>("[llm]\nmodle = \"x\"\n").is_err());
    }
}
