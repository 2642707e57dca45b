//! The library's one error type: the machinery broke (engine gone, bad input, IO failure).
//! A script that fails is not an error; it is an [`crate::sandbox::Output`].

use std::path::PathBuf;

/// Everything that can go wrong outside the script itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Docker engine refused or failed a request.
    #[error("docker request failed")]
    Docker(#[from] bollard::errors::Error),
    /// The Docker engine could not be reached at all.
    #[error("cannot reach the Docker engine at {host}: {reason}")]
    DockerUnreachable {
        /// Where we looked (DOCKER_HOST or the default socket).
        host: String,
        /// What went wrong, with the fix.
        reason: String,
    },
    /// The sandbox image is not present in the engine.
    #[error("sandbox image {0} is missing: run `make image` (or `planbox image build`)")]
    ImageMissing(String),
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
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The model server could not be reached, even after retries.
    #[error("cannot reach the model server at {url}: {reason}")]
    LlmUnreachable {
        /// The endpoint.
        url: String,
        /// What went wrong, with the fix.
        reason: String,
    },
    /// The model server answered with an error that retrying will not fix.
    #[error("{0}")]
    LlmRefused(String),
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
    /// A replayed session does not match what is asked now.
    #[error("replay: {0}")]
    Replay(String),
}

impl Error {
    /// Wrap an IO error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
