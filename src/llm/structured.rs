//! Structured replies: ask for JSON matching a schema, check what comes back, and re-ask
//! with the exact problems until it matches or the re-asks run out.

use serde_json::Value;

use super::{Llm, Message, Reply, Request, schema};
use crate::error::{Error, Result};

/// Ask for JSON matching `request.schema` and return it parsed and checked. A reply that
/// does not parse or does not match goes back to the model with the exact errors, up to
/// `reasks` times; then a clear error.
pub async fn complete_json<L: Llm>(
    llm: &L,
    request: &Request,
    reasks: usize,
) -> Result<(Value, Reply)> {
    let schema = request.schema.as_ref().ok_or(Error::SchemaMissing)?;
    let mut request = request.clone();
    let mut last_problem = String::new();
    for _ in 0..=reasks {
        let reply = llm.complete(&request).await?;
        let problem = match crate::text::extract_json(&reply.text) {
            None => {
                "the reply is not valid JSON (it may be cut off); reply with the complete JSON only"
                    .to_string()
            }
            Some(value) => match schema::validate(
                &schema.schema,
                &schema::drop_optional_nulls(&schema.schema, &value),
            ) {
                Ok(()) => return Ok((schema::drop_optional_nulls(&schema.schema, &value), reply)),
                Err(errors) => format!(
                    "the JSON does not match the schema:\n- {}\nReply with corrected JSON only.",
                    errors.join("\n- ")
                ),
            },
        };
        request
            .messages
            .push(Message::assistant(crate::text::truncate_middle(
                &reply.text,
                4000,
            )));
        request.messages.push(Message::user(problem.clone()));
        last_problem = problem;
    }
    Err(Error::LlmReply(format!(
        "no valid JSON after {} re-asks; last problem: {}",
        reasks,
        last_problem.lines().next().unwrap_or_default()
    )))
}
