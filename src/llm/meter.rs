//! Usage accounting: token totals shared by every call of a run, a budget that stops the
//! next call once spent, and a cost estimate from the price table.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::config::Price;
use super::{Llm, Reply, Request, Usage};
use crate::error::{Error, Result};

/// Token totals of a run, shared by every call in it, with an optional budget and prices.
#[derive(Debug, Default)]
pub struct Meter {
    used: Mutex<MeterState>,
    budget: Option<u64>,
    price: Option<Price>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct MeterState {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// Totals at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls made.
    pub calls: u64,
    /// Prompt tokens in all.
    pub prompt_tokens: u64,
    /// Completion tokens in all.
    pub completion_tokens: u64,
    /// Estimated cost in the price table's currency, when the model has a price.
    pub cost: Option<f64>,
}

impl Totals {
    /// Prompt and completion tokens together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl Meter {
    /// A meter with an optional token budget and price.
    pub fn new(budget: Option<u64>, price: Option<Price>) -> Self {
        Meter {
            used: Mutex::default(),
            budget,
            price,
        }
    }

    /// Count `tokens` an earlier session of the run spent (as prompt tokens: the split is not
    /// kept), so the budget and the totals go on from there.
    pub fn carry_over(&self, tokens: u64) {
        self.used.lock().expect("meter poisoned").prompt_tokens += tokens;
    }

    /// Refuse the next call when the budget is spent.
    pub fn check(&self) -> Result<()> {
        let used = *self.used.lock().expect("meter poisoned");
        match self.budget {
            Some(limit) if used.prompt_tokens + used.completion_tokens >= limit => {
                Err(Error::BudgetExhausted {
                    used: used.prompt_tokens + used.completion_tokens,
                    limit,
                })
            }
            _ => Ok(()),
        }
    }

    /// Add one call's usage.
    pub fn add(&self, usage: Usage) {
        let mut used = self.used.lock().expect("meter poisoned");
        used.calls += 1;
        used.prompt_tokens += usage.prompt_tokens;
        used.completion_tokens += usage.completion_tokens;
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        let used = *self.used.lock().expect("meter poisoned");
        Totals {
            calls: used.calls,
            prompt_tokens: used.prompt_tokens,
            completion_tokens: used.completion_tokens,
            cost: self.price.map(|p| {
                (used.prompt_tokens as f64 * p.input_per_mtok
                    + used.completion_tokens as f64 * p.output_per_mtok)
                    / 1e6
            }),
        }
    }
}

/// A model whose calls are counted against a shared [`Meter`].
#[derive(Debug, Clone)]
pub struct Metered<L> {
    inner: L,
    meter: Arc<Meter>,
}

impl<L: Llm> Metered<L> {
    /// Count `inner`'s calls on `meter`.
    pub fn new(inner: L, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }

    /// The shared meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

impl<L: Llm> Llm for Metered<L> {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        self.meter.check()?;
        let reply = self.inner.complete(request).await?;
        self.meter.add(reply.usage);
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_budget_stops_the_call_after_it_is_spent() {
        let meter = Meter::new(
            Some(100),
            Some(Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            }),
        );
        assert!(meter.check().is_ok());
        meter.add(Usage {
            prompt_tokens: 60,
            completion_tokens: 50,
            estimated: false,
        });
        let err = meter.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "token budget spent: 110 of 100 tokens used"
        );
        let totals = meter.totals();
        assert_eq!(
            (totals.calls, totals.prompt_tokens, totals.completion_tokens),
            (1, 60, 50)
        );
        assert!((totals.cost.unwrap() - 160e-6).abs() < 1e-12);
    }
}
