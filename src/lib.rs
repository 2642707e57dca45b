//! planbox turns a data-analysis goal into Python scripts that really run, each in a fresh,
//! locked-down Docker container.
//!
//! # Layout
//! - [`sandbox`]: run one untrusted script in a disposable container (policy, capture,
//!   harvest, image build, warm start, leftover reaping).
//! - [`text`]: escape-sequence stripping for output shown to people and models.
//! - [`llm`]: the `Llm` trait, OpenAI-compatible and Anthropic clients, structured output,
//!   retries, usage and budget, record/replay, configuration.
//! - [`prompt`]: pure text functions: JSON and code extraction, truncation.
//! - [`fsutil`]: crash-safe writes.
//! - [`error`]: the library's one error enum.

pub mod agent;
pub mod error;
pub mod event;
pub mod fsutil;
pub mod llm;
pub mod plan;
pub mod planner;
pub mod profile;
pub mod prompt;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod text;

pub use error::{Error, Result};
