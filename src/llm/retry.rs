//! Bounded retries with exponential backoff and jitter, honouring a server's Retry-After.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base: Duration,
    /// Longest delay between tries (a Retry-After is capped here too).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// What one try came to.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Finished: success, or a failure that retrying will not fix.
    Done(Result<T, Error>),
    /// A transient failure; `after` is the server's Retry-After when it sent one.
    Retry {
        /// The server's requested wait.
        after: Option<Duration>,
        /// The error to report if no try is left.
        error: Error,
    },
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): exponential with jitter in its upper
    /// half, or the server's Retry-After.
    pub fn delay(&self, retry: u32, after: Option<Duration>) -> Duration {
        if let Some(after) = after {
            return after.min(self.max);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max);
        let half = exp / 2;
        half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
    }

    /// Run `op` until it is done or the tries run out.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut retry = 0;
        loop {
            match op().await {
                Attempt::Done(result) => return result,
                Attempt::Retry { after, error } => {
                    if retry + 1 >= self.attempts {
                        return Err(error);
                    }
                    let wait = self.delay(retry, after);
                    tracing::debug!(%error, ?wait, retry, "transient model error; retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }
}

/// Parse a Retry-After header given in seconds (the form model APIs use).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> Error {
        Error::LlmFailing {
            url: "http://model/v1".into(),
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "busy".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_exponentially_then_succeeds() {
        let policy = RetryPolicy {
            attempts: 4,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let result = policy
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                    Attempt::Retry {
                        after: None,
                        error: transient(),
                    }
                } else {
                    Attempt::Done(Ok(7))
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        let waited = start.elapsed();
        // 1 s, 2 s and 4 s, each jittered into its upper half: 3.5 s to 7 s in all.
        assert!(
            waited >= Duration::from_millis(3500) && waited <= Duration::from_secs(7),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_gives_up_after_the_last_try() {
        let policy = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_secs(30),
        };
        let start = tokio::time::Instant::now();
        let result: Result<(), Error> = policy
            .run(|| async {
                Attempt::Retry {
                    after: Some(Duration::from_secs(5)),
                    error: transient(),
                }
            })
            .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "the server at http://model/v1 kept failing (503 Service Unavailable): busy"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_is_not_retried() {
        let policy = RetryPolicy::default();
        let tries = AtomicU32::new(0);
        let result: Result<(), Error> = policy
            .run(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Attempt::Done(Err(Error::LlmKeyRefused {
                    url: "http://model/v1".into(),
                    status: reqwest::StatusCode::UNAUTHORIZED,
                    key_var: "OPENAI_API_KEY",
                    has_key: true,
                }))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
