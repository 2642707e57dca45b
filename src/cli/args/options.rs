//! The options of the commands that run goals (`run`, `resume`, `ask`, `batch`): the bounds,
//! where scripts run, what they give the agent and the sandbox, and what a continued run
//! keeps of the options it was started with.

use std::path::PathBuf;
use std::time::Duration;

use planbox::sandbox::Policy;

use super::{PlanMode, parse_bytes};

/// Bounds and sandbox settings for running goals.
#[derive(Debug, Clone, clap::Args)]
pub(in crate::cli) struct RunOptions {
    /// How to plan.
    #[arg(long = "plan", value_enum, default_value = "dag")]
    pub(in crate::cli) mode: PlanMode,
    /// Rounds in which the model critiques and improves the plan before it runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(in crate::cli) reflect: usize,
    /// Steps run at once [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    pub(in crate::cli) parallel: Option<usize>,
    /// Rewrites of a failing step before its branch of the plan is replanned. A rewrite that
    /// returns a script which already failed is not run, and the first two per step are free.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(in crate::cli) max_repairs: usize,
    /// Replans allowed in one run.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(in crate::cli) max_replans: usize,
    /// Most steps in a plan (1 to 50).
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub(in crate::cli) max_steps: usize,
    /// Time budget for the whole run, in seconds; the run stops cleanly when it is spent.
    #[arg(long, value_name = "SECS")]
    pub(in crate::cli) wall_time: Option<f64>,
    /// Most scripts (one container each) the run may start.
    #[arg(long, value_name = "N")]
    pub(in crate::cli) max_containers: Option<usize>,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(in crate::cli) runs_dir: PathBuf,
    /// Wall-clock limit per script, in seconds (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(in crate::cli) timeout: f64,
    /// Memory limit per script, e.g. 512m or 2g.
    #[arg(long, value_name = "SIZE", default_value = "2g", value_parser = parse_bytes)]
    pub(in crate::cli) memory: i64,
    /// Keep chains of steps as the model planned them: by default a step whose only
    /// dependent depends on it alone is fused with it into one script.
    #[arg(long)]
    pub(in crate::cli) no_fuse: bool,
    /// Do not write the goal's one-script draft while a local model plans (by default, with
    /// `--provider local`, a plan of one step takes that draft instead of asking again).
    #[arg(long)]
    pub(in crate::cli) no_speculate: bool,
    /// Ask the model for a plan even for a goal that asks only for values and has no parts
    /// of its own (by default such a goal is one step, planned without a model call).
    #[arg(long)]
    pub(in crate::cli) always_plan: bool,
    /// Most variables one step may leave for the steps after it (pickled size), e.g. 64m.
    #[arg(long, value_name = "SIZE", default_value = "256m", value_parser = parse_bytes)]
    pub(in crate::cli) max_state: i64,
    #[command(flatten)]
    pub(in crate::cli) sandbox: SandboxArgs,
    /// Print the event stream as JSONL on stdout instead of progress lines.
    #[arg(long)]
    pub(in crate::cli) json: bool,
    /// Switch a failure hint or answer rule off, by id (repeatable): for measuring what each
    /// rule is worth. `--rule-off list` names them.
    #[arg(long, value_name = "ID", hide = true)]
    pub(in crate::cli) rule_off: Vec<String>,
}

/// Where scripts run, for every command that runs them.
#[derive(Debug, Clone, clap::Args)]
pub(in crate::cli) struct SandboxArgs {
    /// OCI runtime for the script containers, e.g. runsc for gVisor (`sudo make runsc`
    /// registers it) [default: runtime in planbox.toml's [sandbox], else the engine's].
    #[arg(long, value_name = "NAME")]
    pub(in crate::cli) runtime: Option<String>,
    /// Copy inputs into the containers through the engine's API instead of bind-mounting
    /// them (the default for an engine that is not on this machine's socket).
    #[arg(long)]
    pub(in crate::cli) no_bind: bool,
    /// An engine to place scripts on, as HOST or HOST,parallel=N (repeatable: a pool)
    /// [default: engines in planbox.toml's [sandbox], else DOCKER_HOST or the local socket].
    #[arg(long = "engine", value_name = "HOST")]
    pub(in crate::cli) engines: Vec<String>,
}

impl SandboxArgs {
    /// The engines: the flags over planbox.toml's list over `DOCKER_HOST` (or the local
    /// socket), each checked.
    pub(in crate::cli) fn engines(
        &self,
        config: &std::path::Path,
    ) -> anyhow::Result<Vec<planbox::sandbox::EngineSpec>> {
        let listed = if self.engines.is_empty() {
            planbox::llm::config::FileConfig::load(config)?
                .sandbox
                .engines
        } else {
            self.engines.clone()
        };
        if listed.is_empty() {
            return Ok(vec![planbox::sandbox::EngineSpec {
                host: planbox::sandbox::engine::host(),
                parallel: None,
            }]);
        }
        listed
            .iter()
            .map(|text| {
                planbox::sandbox::EngineSpec::parse(text)
                    .map_err(|why| anyhow::anyhow!("--engine: {why}"))
            })
            .collect()
    }

    /// How inputs reach the engine at `host`.
    pub(in crate::cli) fn delivery(&self, host: &str) -> planbox::sandbox::Delivery {
        planbox::sandbox::Delivery::for_host(host, self.no_bind)
    }

    /// The runtime: the flag over `runtime` in `config`'s `[sandbox]` table.
    pub(in crate::cli) fn runtime(
        &self,
        config: &std::path::Path,
    ) -> anyhow::Result<Option<String>> {
        if let Some(name) = &self.runtime {
            return Ok(Some(checked_runtime(name)?));
        }
        let file = planbox::llm::config::FileConfig::load(config)?;
        file.sandbox
            .runtime
            .as_deref()
            .map(checked_runtime)
            .transpose()
    }
}

/// A runtime name as the engine spells them: letters, digits, `.`, `-`, `_`.
fn checked_runtime(name: &str) -> anyhow::Result<String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !fine {
        anyhow::bail!("runtime {name:?}: a runtime name is letters, digits, '.', '-' and '_'");
    }
    Ok(name.to_string())
}

/// What [`RunOptions`] give the agent and the sandbox.
pub(in crate::cli) struct Settings {
    /// The agent's bounds.
    pub(in crate::cli) agent: planbox::agent::Options,
    /// The sandbox's limits per script.
    pub(in crate::cli) policy: Policy,
}

impl RunOptions {
    /// The settings these options give, each option checked; `config` is planbox.toml.
    pub(in crate::cli) fn settings(&self, config: &std::path::Path) -> anyhow::Result<Settings> {
        let policy = Policy {
            memory: self.memory,
            timeout: script_timeout(self.timeout)?,
            runtime: self.sandbox.runtime(config)?,
            ..Policy::default()
        };
        let agent = planbox::agent::Options {
            mode: self.mode.into(),
            reflect: self.reflect,
            parallel: self
                .parallel
                .unwrap_or_else(|| planbox::agent::Options::default().parallel)
                .max(1),
            max_repairs: self.max_repairs,
            max_replans: self.max_replans,
            max_steps: max_steps(self.max_steps)?,
            wall: self.wall_time.map(wall_time).transpose()?,
            max_containers: self.max_containers,
            max_state: self.max_state.max(0) as u64,
            fuse_chains: !self.no_fuse,
            speculate: !self.no_speculate,
            always_plan: self.always_plan,
            rules: rules(&self.rule_off)?,
        };
        Ok(Settings { agent, policy })
    }
}

impl Settings {
    /// The settings a run was started with (`stored`, its run.json options), with the
    /// options in `given` (argument ids given on the command line) taken from `fresh`
    /// instead; what was overridden, as `(option, value)` pairs. A run stored before its
    /// options were kept gets `fresh` whole.
    pub(in crate::cli) fn resumed(
        stored: &serde_json::Value,
        fresh: Settings,
        given: &[String],
    ) -> (Settings, Vec<(String, serde_json::Value)>) {
        let Ok(mut agent) =
            serde_json::from_value::<planbox::agent::Options>(stored["agent"].clone())
        else {
            return (fresh, Vec::new());
        };
        let recorded: crate::cli::verify::RecordedSandbox =
            serde_json::from_value(stored["sandbox"].clone()).unwrap_or_default();
        let mut policy = recorded.policy(None);
        // The option takes the value given now, which is what is recorded.
        macro_rules! given_now {
            ($slot:expr, $fresh:expr) => {{
                $slot = $fresh;
                serde_json::json!($fresh)
            }};
        }
        let mut overrides = Vec::new();
        for id in given {
            let value = match id.as_str() {
                "mode" => given_now!(agent.mode, fresh.agent.mode),
                "reflect" => given_now!(agent.reflect, fresh.agent.reflect),
                "parallel" => given_now!(agent.parallel, fresh.agent.parallel),
                "max_repairs" => given_now!(agent.max_repairs, fresh.agent.max_repairs),
                "max_replans" => given_now!(agent.max_replans, fresh.agent.max_replans),
                "max_steps" => given_now!(agent.max_steps, fresh.agent.max_steps),
                "max_containers" => given_now!(agent.max_containers, fresh.agent.max_containers),
                "no_fuse" => given_now!(agent.fuse_chains, fresh.agent.fuse_chains),
                "always_plan" => given_now!(agent.always_plan, fresh.agent.always_plan),
                "no_speculate" => given_now!(agent.speculate, fresh.agent.speculate),
                "max_state" => given_now!(agent.max_state, fresh.agent.max_state),
                "rule_off" => given_now!(agent.rules, fresh.agent.rules.clone()),
                "memory" => given_now!(policy.memory, fresh.policy.memory),
                "runtime" => given_now!(policy.runtime, fresh.policy.runtime.clone()),
                "wall_time" => {
                    agent.wall = fresh.agent.wall;
                    serde_json::json!(fresh.agent.wall.map(|w| w.as_secs_f64()))
                }
                "timeout" => {
                    policy.timeout = fresh.policy.timeout;
                    serde_json::json!(fresh.policy.timeout.as_secs_f64())
                }
                _ => continue,
            };
            let name = match id.as_str() {
                "no_fuse" => "fuse_chains",
                "no_speculate" => "speculate",
                id => id,
            };
            overrides.push((name.to_string(), value));
        }
        (Settings { agent, policy }, overrides)
    }
}

/// `--timeout` of a script, checked: seconds in (0, 600].
pub(in crate::cli) fn script_timeout(secs: f64) -> anyhow::Result<Duration> {
    if !(secs > 0.0 && secs <= 600.0) {
        anyhow::bail!("--timeout must be in (0, 600] seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--wall-time`, checked: a finite number of seconds, not negative.
fn wall_time(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("--wall-time must be a number of seconds, 0 or more"))
}

/// `--rule-off`, checked against the rules there are.
fn rules(off: &[String]) -> anyhow::Result<planbox::rules::Rules> {
    let known = planbox::agent::rule_ids();
    planbox::rules::Rules::without(off.iter().map(String::as_str), &known)
        .map_err(|why| anyhow::anyhow!("--rule-off: {why}"))
}

/// `--max-steps`, checked: 1 to 50.
pub(in crate::cli) fn max_steps(steps: usize) -> anyhow::Result<usize> {
    if !(1..=50).contains(&steps) {
        anyhow::bail!("--max-steps must be between 1 and 50");
    }
    Ok(steps)
}
