//! Poll sources: how often a source is polled (`"30s"`, `"5m"`, `"1h"`), when it is polled
//! next after a success (missed polls collapse into one) or after an error (exponential
//! backoff with jitter, capped at ten intervals, never before the server's `Retry-After`),
//! when a source counts as failing (five errors in a row), and each item's idempotency key.
//!
//! **Exactly once.** An item's key is `poll:{source}:{item key}`; the engine inserts its run
//! under that key in the transaction that records the item and advances the source's cursor,
//! fenced by the poll's lease, so a crash between the fetch and the commit, or a second
//! worker polling the same source, never starts an item twice.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Consecutive errors after which a source is marked failing (it keeps being polled, at the
/// backoff's pace, and is active again after its next success).
pub const FAILING_AFTER: u32 = 5;
/// The backoff after errors never exceeds this many intervals (unless `Retry-After` asks).
pub const MAX_BACKOFF_INTERVALS: u32 = 10;
/// The shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest item key used as is; a longer (or unprintable) one is replaced by its SHA-256.
pub const MAX_ITEM_KEY_LEN: usize = 128;
/// The longest `Retry-After` honoured: a server asking for more is polled after a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Why an interval cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    /// Not a number followed by `s`, `m`, `h` or `d`.
    #[error(
        "the poll interval {0:?} is not valid: write a whole number and a unit, e.g. \"30s\", \
         \"5m\", \"1h\" or \"1d\""
    )]
    Syntax(String),
    /// Under [`MIN_INTERVAL`].
    #[error("the poll interval {0:?} is shorter than 1 second; poll at most once a second")]
    TooShort(String),
}

/// Parses a poll interval: a whole number and one unit, `s`, `m`, `h` or `d` (`"30s"`,
/// `"5m"`, `"1h"`), at least one second.
pub fn parse_interval(text: &str) -> Result<Duration, IntervalError> {
    let syntax = || IntervalError::Syntax(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(syntax)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| syntax())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(syntax()),
    };
    let interval = Duration::from_secs(number.checked_mul(seconds).ok_or_else(syntax)?);
    if interval < MIN_INTERVAL {
        return Err(IntervalError::TooShort(text.to_owned()));
    }
    Ok(interval)
}

/// When to poll next after a successful poll that was due at `due_ms` and finished at
/// `now_ms`: the first time on the source's grid (`due + k × interval`) after now. Polls
/// missed while no worker ran collapse into the one just made.
pub fn next_after_success(due_ms: i64, interval: Duration, now_ms: i64) -> i64 {
    let step = millis(interval).max(1);
    if now_ms < due_ms {
        return due_ms.saturating_add(step);
    }
    let missed = (now_ms - due_ms) / step;
    due_ms.saturating_add(step.saturating_mul(missed.saturating_add(1)))
}

/// How long to wait after the `errors`-th error in a row (from 1): twice the interval, then
/// four times, … capped at [`MAX_BACKOFF_INTERVALS`] intervals, of which a random part in
/// `[half, all]` is taken (`jitter` in `[0, 1)`, drawn by the caller), so sources that fail
/// together do not retry together. Never less than `retry_after` (the server's
/// `Retry-After`, at most [`MAX_RETRY_AFTER`]).
pub fn backoff(
    interval: Duration,
    errors: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = interval.saturating_mul(MAX_BACKOFF_INTERVALS);
    let exponent = errors.clamp(1, 16);
    let full = interval.saturating_mul(1 << exponent).min(cap);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let waited = full / 2 + (full / 2).mul_f64(jitter);
    match retry_after {
        Some(asked) => waited.max(asked.min(MAX_RETRY_AFTER)),
        None => waited,
    }
}

/// Whether a source with `errors` consecutive errors counts as failing.
pub fn is_failing(errors: u32) -> bool {
    errors >= FAILING_AFTER
}

/// Reads an HTTP `Retry-After` value: a number of seconds, or an HTTP date (then the time
/// from `now_ms` until it, zero if past). `None` if it is neither.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_millis()).ok())?;
    Some(Duration::from_millis(
        u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0),
    ))
}

/// The key an item is known by: the item key itself when it is printable and at most
/// [`MAX_ITEM_KEY_LEN`] long, else `sha256:{hex}` of it.
pub fn item_key(key: &str) -> String {
    if !key.is_empty() && key.len() <= MAX_ITEM_KEY_LEN && !key.chars().any(char::is_control) {
        return key.to_owned();
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// An item's idempotency key, also its run's trigger: `poll:{source}:{item key}` (the item
/// key as [`item_key`] makes it).
pub fn occurrence_key(source: &str, key: &str) -> String {
    format!("poll:{source}:{}", item_key(key))
}

/// Milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "poll_tests.rs"]
mod tests;
