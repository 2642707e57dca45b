//! Usage accounting: token totals shared by every call of a run, budgets of tokens and of
//! money that stop the next call once spent, and a cost estimate from the price table.
//! Budgets are hard against parallel calls: each call reserves its prompt and its reply
//! limit before it is sent, and a call that would not fit beside the calls in flight waits
//! for them. A call alone may still end past the budget by what it used; the next is refused.
//! A deadline ends a call that would outlast the run's wall time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    max_cost: Option<f64>,
    reply_limit: u64,
    released: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct MeterState {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Prompt and reply tokens reserved by the calls in flight.
    reserved_prompt: u64,
    reserved_reply: u64,
    in_flight: u64,
}

/// Tokens held for one call in flight; given back when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    meter: &'a Meter,
    prompt: u64,
    reply: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.meter.used.lock().expect("meter poisoned");
        used.reserved_prompt -= self.prompt;
        used.reserved_reply -= self.reply;
        used.in_flight -= 1;
        drop(used);
        self.meter.released.notify_waiters();
    }
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
            max_cost: None,
            reply_limit: 2048,
            released: tokio::sync::Notify::new(),
        }
    }

    /// The same meter with a money budget, in the price table's currency (it needs a price).
    pub fn with_max_cost(mut self, max_cost: Option<f64>) -> Self {
        self.max_cost = max_cost;
        self
    }

    /// The same meter, reserving `limit` reply tokens for a request that sets none.
    pub fn with_reply_limit(mut self, limit: u32) -> Self {
        self.reply_limit = u64::from(limit);
        self
    }

    fn cost_of(&self, prompt: u64, completion: u64) -> f64 {
        self.price.map_or(0.0, |p| {
            (prompt as f64 * p.input_per_mtok + completion as f64 * p.output_per_mtok) / 1e6
        })
    }

    /// Hold what `request` may use, waiting while it would not fit beside the calls in flight;
    /// an error when a budget is spent.
    pub async fn reserve(&self, request: &Request) -> Result<Reservation<'_>> {
        let prompt = Usage::estimate(request, "").prompt_tokens;
        let reply = request.max_tokens.map_or(self.reply_limit, u64::from);
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut used = self.used.lock().expect("meter poisoned");
                self.spent_check(&used)?;
                let tokens = used.prompt_tokens + used.completion_tokens;
                let fits_tokens = self.budget.is_none_or(|limit| {
                    tokens + used.reserved_prompt + used.reserved_reply + prompt + reply <= limit
                });
                let fits_cost = self.max_cost.is_none_or(|max| {
                    self.cost_of(
                        used.prompt_tokens + used.reserved_prompt + prompt,
                        used.completion_tokens + used.reserved_reply + reply,
                    ) <= max
                });
                // Alone, a call may go while the budget is not spent; beside others, only
                // when everything in flight fits.
                if used.in_flight == 0 || (fits_tokens && fits_cost) {
                    used.reserved_prompt += prompt;
                    used.reserved_reply += reply;
                    used.in_flight += 1;
                    return Ok(Reservation {
                        meter: self,
                        prompt,
                        reply,
                    });
                }
            }
            released.await;
        }
    }

    fn spent_check(&self, used: &MeterState) -> Result<()> {
        let tokens = used.prompt_tokens + used.completion_tokens;
        if let Some(limit) = self.budget
            && tokens >= limit
        {
            return Err(Error::BudgetExhausted {
                used: tokens,
                limit,
            });
        }
        if let Some(max) = self.max_cost {
            let cost = self.cost_of(used.prompt_tokens, used.completion_tokens);
            if cost >= max {
                return Err(Error::CostExhausted { cost, max });
            }
        }
        Ok(())
    }

    /// Count `tokens` an earlier session of the run spent (as prompt tokens: the split is not
    /// kept), so the budget and the totals go on from there.
    pub fn carry_over(&self, tokens: u64) {
        self.used.lock().expect("meter poisoned").prompt_tokens += tokens;
    }

    /// Refuse the next call when a budget is spent.
    pub fn check(&self) -> Result<()> {
        let used = *self.used.lock().expect("meter poisoned");
        self.spent_check(&used)
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

/// A model whose calls are counted against a shared [`Meter`], and cut off at a deadline.
#[derive(Debug)]
pub struct Metered<L> {
    inner: L,
    meter: Arc<Meter>,
    deadline: Mutex<Option<Instant>>,
}

impl<L: Llm> Metered<L> {
    /// Count `inner`'s calls on `meter`.
    pub fn new(inner: L, meter: Arc<Meter>) -> Self {
        Metered {
            inner,
            meter,
            deadline: Mutex::new(None),
        }
    }

    /// End every call still running at `deadline` (the run's wall time), and refuse calls
    /// after it, with [`Error::WallTimeSpent`].
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().expect("deadline poisoned") = deadline;
    }

    /// The shared meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

impl<L: Llm> Llm for Metered<L> {
    async fn complete(&self, request: &Request) -> Result<Reply> {
        let deadline = *self.deadline.lock().expect("deadline poisoned");
        let work = async {
            let held = self.meter.reserve(request).await?;
            let reply = self.inner.complete(request).await?;
            self.meter.add(reply.usage);
            drop(held);
            Ok(reply)
        };
        match deadline {
            None => work.await,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, work).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::WallTimeSpent {
                        left: Duration::ZERO,
                    }),
                }
            }
        }
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

    /// A model that takes `delay` and uses 100 prompt and 1500 reply tokens; it notes when
    /// each call started and ended.
    struct Slow {
        delay: Duration,
        spans: Mutex<Vec<(Instant, Instant)>>,
    }

    impl Llm for Slow {
        async fn complete(&self, _request: &Request) -> Result<Reply> {
            let started = Instant::now();
            tokio::time::sleep(self.delay).await;
            self.spans.lock().unwrap().push((started, Instant::now()));
            Ok(Reply {
                text: "ok".into(),
                usage: Usage {
                    prompt_tokens: 100,
                    completion_tokens: 1500,
                    estimated: false,
                },
                model: "slow".into(),
                mode: None,
                latency: self.delay,
            })
        }
    }

    fn slow(delay_ms: u64) -> Slow {
        Slow {
            delay: Duration::from_millis(delay_ms),
            spans: Mutex::default(),
        }
    }

    fn request() -> Request {
        Request {
            max_tokens: Some(2000),
            ..Request::new(vec![crate::llm::Message::user("sum the amounts")])
        }
    }

    #[tokio::test]
    async fn two_parallel_calls_that_would_overshoot_together_go_one_after_the_other() {
        // Each call may use 2000 reply tokens: two at once could spend 4000 of 3000.
        let ask = request();
        let meter = Arc::new(Meter::new(Some(3000), None));
        let model = Metered::new(slow(150), meter.clone());
        let (a, b) = tokio::join!(model.complete(&ask), model.complete(&ask));
        a.unwrap();
        b.unwrap();
        let spans = model.inner.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), 2);
        assert!(
            spans[1].0 >= spans[0].1,
            "the second call waited: {spans:?}"
        );
        assert_eq!(meter.totals().total(), 3200);
        // Spent now: the next call is refused before it is sent.
        let refused = model.complete(&request()).await.unwrap_err();
        assert!(
            matches!(refused, Error::BudgetExhausted { .. }),
            "{refused}"
        );
        assert_eq!(model.inner.spans.lock().unwrap().len(), 2);

        // A budget one call spends: the waiting call is refused, never sent.
        let meter = Arc::new(Meter::new(Some(1500), None));
        let model = Metered::new(slow(100), meter.clone());
        let (a, b) = tokio::join!(model.complete(&ask), model.complete(&ask));
        assert!(a.is_ok());
        assert!(matches!(b, Err(Error::BudgetExhausted { .. })), "{b:?}");
        assert_eq!(model.inner.spans.lock().unwrap().len(), 1);
        assert_eq!(meter.totals().total(), 1600);
    }

    #[tokio::test]
    async fn calls_that_fit_run_side_by_side() {
        let ask = request();
        let meter = Arc::new(Meter::new(Some(100_000), None));
        let model = Metered::new(slow(150), meter);
        let started = Instant::now();
        let (a, b) = tokio::join!(model.complete(&ask), model.complete(&ask));
        a.unwrap();
        b.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(290),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_money_budget_refuses_the_call_after_it_is_spent() {
        let price = Price {
            input_per_mtok: 10.0,
            output_per_mtok: 30.0,
        };
        // One call costs 0.001 + 0.045 = 0.046.
        let meter = Arc::new(Meter::new(None, Some(price)).with_max_cost(Some(0.05)));
        let model = Metered::new(slow(1), meter.clone());
        model.complete(&request()).await.unwrap();
        model.complete(&request()).await.unwrap();
        let refused = model.complete(&request()).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "cost budget spent: 0.0920 of 0.0500 spent"
        );
        assert_eq!(model.inner.spans.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_call_past_the_deadline_ends_when_the_wall_time_does() {
        let model = Metered::new(slow(5_000), Arc::new(Meter::new(None, None)));
        model.set_deadline(Some(Instant::now() + Duration::from_millis(200)));
        let started = Instant::now();
        let err = model.complete(&request()).await.unwrap_err();
        assert!(matches!(err, Error::WallTimeSpent { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // After it, calls are refused at once.
        let started = Instant::now();
        assert!(model.complete(&request()).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
