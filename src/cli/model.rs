//! The model the flags choose, built in one place: the configured server or a replayed
//! recording, with every exchange recorded when `--record` asks; and `llm ping`.

use std::process::ExitCode;

use planbox::llm::record::{Recorder, Replay};
use planbox::llm::{Client, Llm, LlmConfig, Reply, Request};

use super::args::LlmArgs;
use super::print_stdout;

/// The model of one command (or one goal of a batch).
pub(super) enum Model {
    /// The server, or the recording `--replay` names.
    Direct(Client),
    /// The same, with each exchange written to the `--record` folder.
    Recorded(Recorder<Client>),
}

impl Model {
    /// The model `args` ask for, with `config` resolved from them.
    pub(super) fn open(args: &LlmArgs, config: &LlmConfig) -> anyhow::Result<Model> {
        Model::open_in(args, config, None)
    }

    /// [`Model::open`], with the recording kept in `sub` under the `--record` or
    /// `--replay` folder when given (a batch goal's id).
    pub(super) fn open_in(
        args: &LlmArgs,
        config: &LlmConfig,
        sub: Option<&str>,
    ) -> anyhow::Result<Model> {
        let place = |dir: &std::path::Path| match sub {
            Some(sub) => dir.join(sub),
            None => dir.to_path_buf(),
        };
        let client = match &args.replay {
            Some(dir) => Client::Replay(Replay::open(&place(dir))?),
            None => config.client()?,
        };
        Ok(match &args.record {
            Some(dir) => {
                let secrets = config.api_key.iter().cloned().collect();
                Model::Recorded(Recorder::new(client, &place(dir), secrets)?)
            }
            None => Model::Direct(client),
        })
    }
}

impl Llm for Model {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        match self {
            Model::Direct(client) => client.complete(request).await,
            Model::Recorded(recorder) => recorder.complete(request).await,
        }
    }
}

/// `llm ping`: one tiny request; exit 0 when the model answered, 2 when not.
pub(super) async fn ping(args: LlmArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let reply = match Model::open(&args, &config)?
        .complete(&Request::ping())
        .await
    {
        Ok(reply) => reply,
        Err(err) => {
            let fix =
                super::error_fix(&err).map_or_else(String::new, |fix| format!("; fix: {fix}"));
            eprintln!(
                "planbox: {:?} at {} did not answer: {err:#}{fix}",
                config.model, config.base_url
            );
            return Ok(ExitCode::from(2));
        }
    };
    let secs = reply.latency.as_secs_f64();
    print_stdout(&format!(
        "model {} at {}: {:?} in {secs:.2} s, {} tokens in, {} out{} ({:.1} tokens/s)\n",
        reply.model,
        config.base_url,
        reply.text.trim(),
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        if reply.usage.estimated {
            " (estimated)"
        } else {
            ""
        },
        reply.usage.completion_tokens as f64 / secs.max(1e-3),
    ));
    Ok(ExitCode::SUCCESS)
}
