//! The provider chosen at run time: one [`Llm`] over the configured clients.

use super::anthropic::Anthropic;
use super::openai::OpenAi;
use super::record::Replay;
use super::{Llm, Reply, Request};
use crate::error::Result;

/// Any of the configured providers, chosen at run time.
#[derive(Debug)]
pub enum Client {
    /// An OpenAI-compatible server (OpenAI, Ollama, vLLM, LM Studio, llama.cpp).
    OpenAi(OpenAi),
    /// Anthropic's Messages API.
    Anthropic(Anthropic),
    /// A recording played back.
    Replay(Replay),
}

impl Llm for Client {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        match self {
            Client::OpenAi(client) => client.complete(request).await,
            Client::Anthropic(client) => client.complete(request).await,
            Client::Replay(client) => client.complete(request).await,
        }
    }
}
