//! The library's one error type: the machinery broke (engine gone, bad input, IO failure).
//! A script that fails is not an error; it is an [`crate::sandbox::Output`].

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong outside the script itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Docker engine refused or failed a request.
    #[error("docker request failed")]
    Docker(#[from] bollard::errors::Error),
    /// The Docker engine could not be reached at all.
    #[error("cannot reach the Docker engine at {host}: {kind}")]
    EngineUnreachable {
        /// Where we looked (DOCKER_HOST or the default socket).
        host: String,
        /// What went wrong, which decides the fix.
        kind: UnreachableKind,
        /// The engine client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine reported something that cannot be true.
    #[error("the engine contradicts itself: {0}")]
    EngineContradiction(String),
    /// The harvest target already holds files; a harvest never overwrites a user's files.
    #[error("invalid setting: output folder {} is not empty: name a new or empty folder", .0.display())]
    OutputFolderNotEmpty(PathBuf),
    /// A setting is out of its range.
    #[error("invalid setting: {name} {reason}, got {value}")]
    InvalidSetting {
        /// The setting, as a person names it.
        name: &'static str,
        /// The value given.
        value: String,
        /// The range it must be in.
        reason: &'static str,
    },
    /// A setting names none of the values it accepts.
    #[error("invalid setting: {name}={value:?}: use {expected}")]
    UnknownValue {
        /// The setting (a variable name).
        name: &'static str,
        /// The value given.
        value: String,
        /// The values it accepts.
        expected: &'static str,
    },
    /// The model's provider needs a key and its variable is not set.
    #[error(
        "invalid setting: {var} is not set: export it, point the base URL at a local server, or use the offline model (make local-llm, --provider local)"
    )]
    MissingKey {
        /// The variable the key comes from.
        var: &'static str,
    },
    /// The configuration file does not parse.
    #[error("invalid setting: {}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// The HTTP client for the model server could not be built (TLS setup).
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The sandbox image is not present in the engine.
    #[error("sandbox image {0} is missing: run `make image` (or `planbox image build`)")]
    ImageMissing(String),
    /// Every engine of the pool stopped answering, or too many scripts had to be moved.
    #[error("engines: {0}")]
    EnginesDown(String),
    /// The engine does not offer the OCI runtime the policy asks for.
    #[error("the Docker engine offers no runtime {name:?} (it offers: {})", offered.join(", "))]
    RuntimeMissing {
        /// The runtime asked for.
        name: String,
        /// The runtimes the engine lists.
        offered: Vec<String>,
    },
    /// Building the sandbox image failed.
    #[error("image build failed: {0}")]
    ImageBuild(String),
    /// An input path is unusable.
    #[error("input {path}: {reason}")]
    Input {
        /// The path as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A script file is unusable.
    #[error("script {path}: {reason}")]
    Script {
        /// The path as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of a run folder does not parse: it was edited by hand or cut off mid-write.
    #[error("{} is damaged", path.display())]
    RunFolderDamaged {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// No run folder answers to the name given.
    #[error(
        "no run {run:?}: give a run folder (with run.json) or a run id under {}",
        runs_dir.display()
    )]
    NoSuchRun {
        /// The folder or id as given.
        run: String,
        /// Where run ids are looked up.
        runs_dir: PathBuf,
    },
    /// A step's dependency has not finished, so there are no outputs to mount.
    #[error("{dependency} is not done, yet {step} depends on it")]
    DependencyNotDone {
        /// The step about to run.
        step: String,
        /// The step it depends on.
        dependency: String,
    },
    /// A step named by the caller is not in the plan.
    #[error("no step {0} in the plan")]
    NoSuchStep(String),
    /// The goal says nothing.
    #[error("the goal is empty: say what to find out")]
    GoalEmpty,
    /// The goal is longer than a planning prompt may quote.
    #[error(
        "the goal is {length} characters; at most {max}: put data in an input file and describe the question"
    )]
    GoalTooLong {
        /// Characters in the goal.
        length: usize,
        /// The most allowed.
        max: usize,
    },
    /// A structured request came without a schema: the caller's mistake, not the model's.
    #[error("complete_json needs a request with a schema")]
    SchemaMissing,
    /// The model server could not be reached, even after retries.
    #[error("cannot reach the model server at {url}: {kind}")]
    LlmUnreachable {
        /// The endpoint.
        url: String,
        /// What went wrong, which decides the fix.
        kind: LlmUnreachableKind,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The model server refused the API key, or wants one and none is set.
    #[error("the server at {url} {}", key_refusal(.has_key, .key_var, .status))]
    LlmKeyRefused {
        /// The endpoint.
        url: String,
        /// 401 or 403.
        status: reqwest::StatusCode,
        /// The variable the key comes from.
        key_var: &'static str,
        /// Whether a key was sent.
        has_key: bool,
    },
    /// The server has no such model, or no such endpoint (404).
    #[error("model {model:?} or the endpoint was not found at {url} (404: {message})")]
    LlmNotFound {
        /// The endpoint.
        url: String,
        /// The model asked for.
        model: String,
        /// The server's message.
        message: String,
    },
    /// The server kept answering with a transient error (rate limit, overload) through
    /// every retry.
    #[error("the server at {url} kept failing ({status}): {message}")]
    LlmFailing {
        /// The endpoint.
        url: String,
        /// The last status.
        status: reqwest::StatusCode,
        /// The server's last message.
        message: String,
    },
    /// A success whose body is not JSON: the URL names something other than a model API.
    #[error("the server at {url} answered {status} with a body that is not JSON ({body:?})")]
    LlmNotJson {
        /// The endpoint.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// The start and end of the body.
        body: String,
    },
    /// The model server answered with an error that retrying will not fix and that has no
    /// better name.
    #[error("the server at {url} refused the request ({status}): {message}")]
    LlmRefused {
        /// The endpoint.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// The server's message.
        message: String,
    },
    /// The model's replies stayed unusable after the allowed re-asks.
    #[error("unusable model reply: {0}")]
    LlmReply(String),
    /// The run's token budget is spent.
    #[error("token budget spent: {used} of {limit} tokens used")]
    BudgetExhausted {
        /// Tokens used so far.
        used: u64,
        /// The budget.
        limit: u64,
    },
    /// The run's money budget is spent.
    #[error("cost budget spent: {cost:.4} of {max:.4} spent")]
    CostExhausted {
        /// Estimated cost so far, in the price table's currency.
        cost: f64,
        /// The budget.
        max: f64,
    },
    /// The run's wall time ran out during a model call.
    #[error("wall time budget spent ({left:?} left)")]
    WallTimeSpent {
        /// Time that was left (none).
        left: std::time::Duration,
    },
    /// A replayed session does not match what is asked now.
    #[error("replay: {0}")]
    Replay(String),
}

impl Error {
    /// Whether the error ends a run at once: the setup is wrong (a refused key, a missing
    /// model, an unreachable engine or model server, a replay that does not match), so no
    /// repair or replan can help and each would only fail the same way.
    pub fn ends_run(&self) -> bool {
        match self {
            Error::EngineUnreachable { .. }
            | Error::ImageMissing(_)
            | Error::RuntimeMissing { .. }
            | Error::EnginesDown(_)
            | Error::LlmUnreachable { .. }
            | Error::LlmKeyRefused { .. }
            | Error::LlmNotFound { .. }
            | Error::LlmNotJson { .. }
            | Error::Replay(_) => true,
            Error::Docker(_)
            | Error::EngineContradiction(_)
            | Error::OutputFolderNotEmpty(_)
            | Error::InvalidSetting { .. }
            | Error::UnknownValue { .. }
            | Error::MissingKey { .. }
            | Error::ConfigFile { .. }
            | Error::HttpClient(_)
            | Error::ImageBuild(_)
            | Error::Input { .. }
            | Error::Script { .. }
            | Error::Io { .. }
            | Error::RunFolderDamaged { .. }
            | Error::NoSuchRun { .. }
            | Error::DependencyNotDone { .. }
            | Error::NoSuchStep(_)
            | Error::GoalEmpty
            | Error::GoalTooLong { .. }
            | Error::SchemaMissing
            | Error::LlmFailing { .. }
            | Error::LlmRefused { .. }
            | Error::LlmReply(_)
            | Error::BudgetExhausted { .. }
            | Error::CostExhausted { .. }
            | Error::WallTimeSpent { .. } => false,
        }
    }

    /// Wrap an IO error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The end of [`Error::LlmKeyRefused`]'s message: a key was refused, or none was sent.
fn key_refusal(has_key: &bool, key_var: &str, status: &reqwest::StatusCode) -> String {
    if *has_key {
        format!("refused the API key in {key_var} ({status})")
    } else {
        format!("wants an API key ({status}) and {key_var} is not set")
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the Docker engine could not be reached; each kind has its own fix
/// (`UnreachableKind::fix`, in [`crate::sandbox::engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableKind {
    /// Nothing exists at the socket's path.
    NoSocket,
    /// The socket exists but this user may not open it.
    PermissionDenied,
    /// Nothing listens at the address (a stale socket, a stopped engine, a closed port).
    Refused,
    /// The engine answered but does not accept the API version asked for.
    ApiVersion,
    /// The engine did not answer in time.
    Timeout,
    /// The address is not one the engine client can use (scheme, syntax).
    BadAddress,
    /// Anything else the client reported.
    Other,
}

impl std::fmt::Display for UnreachableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnreachableKind::NoSocket => "no socket at that path",
            UnreachableKind::PermissionDenied => "permission denied on the socket",
            UnreachableKind::Refused => "connection refused",
            UnreachableKind::ApiVersion => "the engine does not accept the API version asked for",
            UnreachableKind::Timeout => "no answer in time",
            UnreachableKind::BadAddress => "not a usable engine address",
            UnreachableKind::Other => "the request failed",
        })
    }
}

/// Why the model server could not be reached; each kind has its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmUnreachableKind {
    /// Nothing listens at the address.
    Refused,
    /// No reply within the request timeout.
    TimedOut(Duration),
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (an https:// URL for a plain-HTTP server, an untrusted
    /// certificate).
    Tls,
    /// The reply stopped before its end.
    CutOff,
    /// Anything else the HTTP client reported.
    Other,
}

impl std::fmt::Display for LlmUnreachableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmUnreachableKind::Refused => f.write_str("connection refused"),
            LlmUnreachableKind::TimedOut(after) => write!(f, "no reply within {after:?}"),
            LlmUnreachableKind::Dns => f.write_str("the host name does not resolve"),
            LlmUnreachableKind::Tls => f.write_str("the TLS handshake failed"),
            LlmUnreachableKind::CutOff => f.write_str("the reply was cut off"),
            LlmUnreachableKind::Other => f.write_str("the request failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn messages_name_what_to_give_and_leave_the_cause_to_the_chain() {
        let damaged = Error::RunFolderDamaged {
            path: "runs/r1/state.json".into(),
            source: serde_json::from_str::<u32>("x").unwrap_err(),
        };
        let cause = std::error::Error::source(&damaged).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("expected value at line 1 column 1"));
        let messages: Vec<String> = [
            damaged,
            Error::NoSuchRun {
                run: "r9".into(),
                runs_dir: "runs".into(),
            },
            Error::DependencyNotDone {
                step: "chart".into(),
                dependency: "load".into(),
            },
            Error::NoSuchStep("chart".into()),
            Error::GoalEmpty,
            Error::GoalTooLong {
                length: 5000,
                max: 4000,
            },
            Error::SchemaMissing,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            messages,
            [
                "runs/r1/state.json is damaged",
                "no run \"r9\": give a run folder (with run.json) or a run id under runs",
                "load is not done, yet chart depends on it",
                "no step chart in the plan",
                "the goal is empty: say what to find out",
                "the goal is 5000 characters; at most 4000: put data in an input file and describe the question",
                "complete_json needs a request with a schema",
            ]
        );
    }
}
