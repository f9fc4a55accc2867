//! Retries of failed handlers: exponential backoff with jitter, a bounded number of attempts.

use std::time::Duration;

use rand::Rng;

use crate::codec::CodecError;

/// What a handler says about a failure. The distinction decides what happens next: a transient failure is
/// tried again (a database that is down comes back), a permanent one goes to the dead-letter topic at once
/// (an order for a product that does not exist stays so).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn transient(why: impl std::fmt::Display) -> HandlerError {
        HandlerError::Transient(why.to_string())
    }

    pub fn permanent(why: impl std::fmt::Display) -> HandlerError {
        HandlerError::Permanent(why.to_string())
    }
}

/// For handlers that decode or encode events themselves (publishing follow-ups, reading an embedded
/// payload): an unreachable registry is worth retrying, a payload that does not decode is not.
impl From<CodecError> for HandlerError {
    fn from(error: CodecError) -> HandlerError {
        if error.is_transient() {
            HandlerError::transient(error)
        } else {
            HandlerError::permanent(error)
        }
    }
}

/// How often and how patiently a transient failure is retried. The delay before attempt `n + 1` is drawn
/// uniformly from `[d / 2, d]` where `d = min(max_backoff, initial_backoff * multiplier^(n - 1))`: the
/// jitter keeps the consumers that failed together on a shared dependency from retrying together.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first failure is the last.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay after failed attempt `attempt` (1-based), or `None` when it was the last.
    pub fn backoff(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let ceiling = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let ceiling = ceiling.min(self.max_backoff.as_secs_f64());
        let ceiling = if ceiling.is_finite() { ceiling } else { 0.0 };
        let delay = rand::rng().random_range(ceiling / 2.0..=ceiling.max(0.0));
        Some(Duration::from_secs_f64(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_within_the_jitter_band() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        };
        for (attempt, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)]
        {
            for _ in 0..50 {
                let delay = policy.backoff(attempt).expect("more attempts left");
                let ceiling = Duration::from_millis(ceiling_ms);
                // A microsecond of slack for the float round trip.
                let slack = Duration::from_micros(1);
                assert!(
                    delay + slack >= ceiling / 2 && delay <= ceiling + slack,
                    "attempt {attempt}: {delay:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        assert_eq!(policy.backoff(10), None);
    }

    #[test]
    fn codec_errors_are_permanent_unless_the_registry_is_unreachable() {
        let unreachable = CodecError::Registry(crate::registry::RegistryError::Unreachable {
            url: "http://registry".into(),
            why: "connection refused".into(),
        });
        assert!(matches!(
            HandlerError::from(unreachable),
            HandlerError::Transient(_)
        ));
        let garbage = CodecError::NotFramed("the first byte is not the magic byte 0");
        assert!(matches!(
            HandlerError::from(garbage),
            HandlerError::Permanent(_)
        ));
    }

    #[test]
    fn no_retries_means_one_attempt() {
        assert_eq!(RetryPolicy::none().backoff(1), None);
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.backoff(1), None);
    }
}
