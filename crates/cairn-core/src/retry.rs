//! Retry policy and the pure backoff maths behind it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a step is retried after a retryable error.
///
/// The delay before attempt `n + 1` (after `n` failed attempts) is
/// `min(initial * multiplier^(n-1), max)`, then reduced by up to `jitter` (a fraction in
/// `0..=1`) using a random draw the caller passes in, so the maths stays deterministic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first one included. `1` means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Factor applied to the delay after each failed attempt.
    pub multiplier: f64,
    /// Upper bound of any one delay.
    pub max_backoff: Duration,
    /// Fraction of the delay that is randomised away (0 = none, 1 = "full jitter").
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Three attempts, 1 s then 2 s, with 20% jitter: a transient failure is retried, a
    /// persistent one surfaces within seconds.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first error is final.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Exponential backoff: 5 attempts, 1 s doubling up to 5 min, 20% jitter.
    pub fn exponential() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
            jitter: 0.2,
        }
    }

    /// Sets the total number of attempts (the first one included; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the delay before the second attempt.
    pub fn initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Sets the factor applied to the delay after each failure (at least 1).
    pub fn multiplier(mut self, factor: f64) -> Self {
        self.multiplier = factor.max(1.0);
        self
    }

    /// Sets the upper bound of any one delay.
    pub fn max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Sets the fraction of each delay that is randomised away (clamped to `0..=1`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Whether another attempt may follow `failed_attempts` failures.
    pub fn allows_another(&self, failed_attempts: u32) -> bool {
        failed_attempts < self.max_attempts
    }

    /// The delay before the next attempt after `failed_attempts` (≥ 1) failures.
    ///
    /// `random` is a draw in `0.0..1.0`; it only matters when `jitter > 0`.
    pub fn backoff(&self, failed_attempts: u32, random: f64) -> Duration {
        debug_assert!(failed_attempts >= 1, "backoff is asked for after a failure");
        let exponent = failed_attempts.saturating_sub(1).min(64) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_millis(300),
            jitter: 0.5,
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = policy();
        let delays: Vec<_> = (1..=4).map(|n| p.backoff(n, 0.0)).collect();
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 300, 300]);
    }

    #[test]
    fn jitter_takes_away_at_most_its_fraction() {
        let p = policy();
        assert_eq!(p.backoff(1, 1.0).as_millis(), 50);
        assert_eq!(p.backoff(1, 0.5).as_millis(), 75);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        assert!(p.allows_another(3));
        assert!(!p.allows_another(4));
        assert!(!RetryPolicy::none().allows_another(1));
    }
}
