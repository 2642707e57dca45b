//! The command line's arguments, and the one check of each option that clap cannot make:
//! flags in, the library's settings out.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash: planbox completions bash > ~/.local/share/bash-completion/completions/planbox\n  \
    zsh:  planbox completions zsh > ~/.zfunc/_planbox   (with fpath+=~/.zfunc before compinit)\n  \
    fish: planbox completions fish > ~/.config/fish/completions/planbox.fish")]
pub(super) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(super) shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(super) struct ManArgs {
    /// Folder to write planbox.1 and one page per subcommand (planbox-run.1, ...) into,
    /// created if missing; without it, the top page goes to stdout.
    #[arg(long, value_name = "DIR")]
    pub(super) out: Option<PathBuf>,
}

mod options;

pub(super) use options::*;

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// What to find out, in plain words.
    pub(super) goal: String,
    /// An input file, mounted read-only for the scripts (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    pub(super) inputs: Vec<PathBuf>,
    /// A value the answer must give, as NAME=VALUE for @NAME[VALUE] (repeatable). Numbers
    /// match within 1e-6, text ignoring case; a mismatch makes the exit code 1.
    #[arg(long = "expect", value_name = "NAME=VALUE", value_parser = parse_expect)]
    pub(super) expect: Vec<(String, String)>,
    /// Run this plan as given instead of asking the model for one (written by `planbox plan
    /// --out`, or by hand: {"steps": [...]}); checked against the inputs first.
    #[arg(long, value_name = "FILE")]
    pub(super) plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub(super) watch: super::watch::WatchFlags,
    #[command(flatten)]
    pub(super) run: RunOptions,
    #[command(flatten)]
    pub(super) llm: LlmArgs,
}

/// `NAME=VALUE` for `--expect`; the name may carry its `@`.
fn parse_expect(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE (for example region=south)"))?;
    let name = name.trim().trim_start_matches('@');
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{name}' is not an answer name (letters, digits and _)"
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[derive(Debug, clap::Args)]
pub(super) struct ResumeArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    #[command(flatten)]
    pub(super) watch: super::watch::WatchFlags,
    #[command(flatten)]
    pub(super) run: RunOptions,
    #[command(flatten)]
    pub(super) llm: LlmArgs,
    /// The ids of the options given on the command line (filled in after parsing).
    #[arg(skip)]
    pub(super) given: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct AskArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    /// The follow-up question, in plain words (it may name new answers and files).
    pub(super) question: String,
    /// A value the answer must give, as NAME=VALUE (repeatable), as for `run`.
    #[arg(long = "expect", value_name = "NAME=VALUE", value_parser = parse_expect)]
    pub(super) expect: Vec<(String, String)>,
    #[command(flatten)]
    pub(super) watch: super::watch::WatchFlags,
    #[command(flatten)]
    pub(super) run: RunOptions,
    #[command(flatten)]
    pub(super) llm: LlmArgs,
    /// The ids of the options given on the command line (filled in after parsing).
    #[arg(skip)]
    pub(super) given: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct BatchArgs {
    /// The suite: one JSON object per line, {"id", "goal", "inputs": [...], "expect": {"name":
    /// "value"}}; inputs are relative to the suite file.
    #[arg(value_name = "SUITE.jsonl")]
    pub(super) suite: PathBuf,
    /// Also write the results as a JUnit XML report to this file, for CI.
    #[arg(long, value_name = "FILE")]
    pub(super) junit: Option<PathBuf>,
    /// Goals run at once.
    #[arg(long = "goals-parallel", value_name = "N", default_value_t = 1)]
    pub(super) goals_parallel: usize,
    #[command(flatten)]
    pub(super) run: RunOptions,
    #[command(flatten)]
    pub(super) llm: LlmArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct RescoreArgs {
    /// The suite the runs answered.
    #[arg(value_name = "SUITE.jsonl")]
    pub(super) suite: PathBuf,
    /// Folder holding the run folders.
    #[arg(value_name = "RUNS")]
    pub(super) runs: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// What to find out, in plain words.
    pub(super) goal: String,
    /// An input file, mounted read-only for the scripts (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    pub(super) inputs: Vec<PathBuf>,
    /// How to plan.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    pub(super) mode: PlanMode,
    /// Rounds in which the model critiques and improves the plan.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) reflect: usize,
    /// Ask the model for a plan even for a goal that asks only for values and has no parts
    /// of its own (by default such a goal is one step, planned without a model call).
    #[arg(long)]
    pub(super) always_plan: bool,
    /// Most steps in a plan (1 to 50).
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub(super) max_steps: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Also write the plan to this file, for a person to review or edit and for `planbox run
    /// --plan-file` to execute as given.
    #[arg(long, value_name = "FILE")]
    pub(super) out: Option<PathBuf>,
    #[command(flatten)]
    pub(super) llm: LlmArgs,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum LlmCommand {
    /// Send one tiny request and report the model, latency and speed (exit 0 if it answered,
    /// 2 if not).
    Ping(LlmArgs),
}

/// Which model to talk to; each flag overrides the environment and planbox.toml.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ModelArgs {
    /// Provider: openai (any OpenAI-compatible server), anthropic, or local (the offline model
    /// that `make local-llm` serves) [default: local, or the provider whose key is set].
    #[arg(long, value_enum)]
    pub(super) provider: Option<Provider>,
    /// Base URL of the API; OpenAI-compatible ones end in /v1 [env: OPENAI_BASE_URL,
    /// ANTHROPIC_BASE_URL or PLANBOX_LOCAL_URL, by provider].
    #[arg(long, value_name = "URL")]
    pub(super) base_url: Option<String>,
    /// Model name, as the server knows it [env: PLANBOX_MODEL].
    #[arg(long, value_name = "NAME")]
    pub(super) model: Option<String>,
    /// Configuration file with [llm] settings and [prices]; a missing file is fine.
    #[arg(long, value_name = "FILE", default_value = "planbox.toml")]
    pub(super) config: PathBuf,
}

impl ModelArgs {
    /// The configuration file these settings read.
    pub(super) fn config(&self) -> &std::path::Path {
        &self.config
    }

    /// These flags over the environment over the configuration file; `rest` carries the
    /// flags of the other settings.
    pub(super) fn resolve(
        &self,
        rest: planbox::llm::config::Overrides,
    ) -> planbox::Result<planbox::llm::LlmConfig> {
        let file = planbox::llm::config::FileConfig::load(&self.config)?;
        let overrides = planbox::llm::config::Overrides {
            provider: self.provider.map(Into::into),
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            ..rest
        };
        planbox::llm::LlmConfig::resolve(&overrides, |name| std::env::var(name).ok(), &file)
    }
}

/// Model settings; each overrides the environment and planbox.toml.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct LlmArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    /// Sampling temperature, 0 to 2 [default: 0.2].
    #[arg(long)]
    pub(super) temperature: Option<f32>,
    /// Most tokens in one reply [default: 2048].
    #[arg(long, value_name = "N")]
    pub(super) max_tokens: Option<u32>,
    /// Seconds to wait for one model reply [default: 300].
    #[arg(long, value_name = "SECS")]
    pub(super) llm_timeout: Option<f64>,
    /// Stop cleanly once this many tokens (prompt plus reply) are spent.
    #[arg(long, value_name = "N")]
    pub(super) token_budget: Option<u64>,
    /// Stop cleanly once the run's estimated cost reaches this amount, in the currency of the
    /// model's price in planbox.toml's [prices] (which it needs).
    #[arg(long, value_name = "AMOUNT")]
    pub(super) max_cost: Option<f64>,
    /// Write every model exchange to this folder (keys redacted), for --replay later.
    #[arg(long, value_name = "DIR", conflicts_with = "replay")]
    pub(super) record: Option<PathBuf>,
    /// Answer from a folder written by --record instead of a server; a request that differs
    /// from the recording is an error.
    #[arg(long, value_name = "DIR")]
    pub(super) replay: Option<PathBuf>,
}

impl LlmArgs {
    /// The model settings: these flags over the environment over the configuration file.
    pub(super) fn config(&self) -> anyhow::Result<planbox::llm::LlmConfig> {
        Ok(self.model.resolve(planbox::llm::config::Overrides {
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout_secs: self.llm_timeout,
            token_budget: self.token_budget,
            max_cost: self.max_cost,
            ..Default::default()
        })?)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ExecArgs {
    /// The Python script to run (UTF-8).
    #[arg(value_name = "SCRIPT.py")]
    pub(super) script: PathBuf,
    /// A file the script may read, mounted read-only at /data/<file name> (repeatable).
    #[arg(long = "input", short = 'i', value_name = "FILE")]
    pub(super) inputs: Vec<PathBuf>,
    /// Folder that receives the files the script writes to /out (must be new or empty).
    #[arg(long, value_name = "DIR", default_value = "planbox-out")]
    pub(super) out: PathBuf,
    /// Wall-clock limit in seconds (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(super) timeout: f64,
    /// Memory limit, e.g. 512m or 2g (swap is set equal: none).
    #[arg(long, value_name = "SIZE", default_value = "2g", value_parser = parse_bytes)]
    pub(super) memory: i64,
    /// CPUs the script may use (fractions allowed).
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    pub(super) cpus: f64,
    #[command(flatten)]
    pub(super) sandbox: SandboxArgs,
    /// Configuration file whose [sandbox] table may name the runtime; a missing file is fine.
    #[arg(long, value_name = "FILE", default_value = "planbox.toml")]
    pub(super) config: PathBuf,
    /// Print the result (status, output, files) as one JSON object.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum ImageCommand {
    /// Build the sandbox image planbox-sandbox:<hash>; a current one is reused.
    Build {
        /// Base image to build on instead of a Debian rootfs made here (needs a registry),
        /// e.g. python:3.11-slim.
        #[arg(long, value_name = "IMAGE")]
        base: Option<String>,
        /// Rebuild even if the current image exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the tag this planbox needs, planbox-sandbox:<hash of the build files>.
    Tag,
}

fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text} (try 512m or 2g)"))?;
    let unit = match unit.trim_end_matches(['b', 'i']) {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} (use k, m or g)")),
    };
    Ok((number * unit) as i64)
}

/// How to plan (`--plan`): the planner's modes, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PlanMode {
    /// One script for the whole goal: the baseline, and right for trivial goals.
    None,
    /// A chain of steps.
    Linear,
    /// A dependency graph; independent steps run in parallel.
    Dag,
    /// Sub-goals, each decomposed into steps unless it is one step already.
    Hierarchical,
    /// The model decides whether a plan is needed (then `dag`) or not (then `none`).
    Auto,
}

impl From<PlanMode> for planbox::planner::Mode {
    fn from(mode: PlanMode) -> Self {
        match mode {
            PlanMode::None => Self::None,
            PlanMode::Linear => Self::Linear,
            PlanMode::Dag => Self::Dag,
            PlanMode::Hierarchical => Self::Hierarchical,
            PlanMode::Auto => Self::Auto,
        }
    }
}

/// The model provider (`--provider`), as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Provider {
    /// Any OpenAI-compatible server.
    #[value(name = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// The offline model that `make local-llm` serves (OpenAI-compatible, no key).
    Local,
}

impl From<Provider> for planbox::llm::Provider {
    fn from(provider: Provider) -> Self {
        match provider {
            Provider::OpenAi => Self::OpenAi,
            Provider::Anthropic => Self::Anthropic,
            Provider::Local => Self::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2g"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5t").is_err());
    }

    #[test]
    fn expectations_parse_as_name_and_value() {
        assert_eq!(
            parse_expect("@growth_pct = 15.2"),
            Ok(("growth_pct".into(), "15.2".into()))
        );
        assert_eq!(
            parse_expect("region=North West"),
            Ok(("region".into(), "North West".into()))
        );
        assert!(parse_expect("region").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_expect("2x=1").unwrap_err().contains("answer name"));
    }

    #[test]
    fn script_timeouts_are_bounded_by_the_sandbox() {
        assert_eq!(script_timeout(0.5).unwrap(), Duration::from_millis(500));
        assert_eq!(script_timeout(600.0).unwrap(), Duration::from_secs(600));
        for secs in [0.0, -1.0, 600.5, f64::NAN] {
            assert_eq!(
                script_timeout(secs).unwrap_err().to_string(),
                "--timeout must be in (0, 600] seconds"
            );
        }
    }

    #[test]
    fn plans_have_one_to_fifty_steps() {
        assert_eq!(max_steps(1).unwrap(), 1);
        assert_eq!(max_steps(50).unwrap(), 50);
        assert_eq!(
            max_steps(51).unwrap_err().to_string(),
            "--max-steps must be between 1 and 50"
        );
        assert!(max_steps(0).is_err());
    }
}
