//! Tests of the poll maths: intervals, the next poll after a success and after errors, the
//! failing mark, `Retry-After`, item keys.

use std::time::Duration;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn intervals_parse_with_their_unit_and_bad_ones_say_how_to_write_them() {
    assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_interval("5m"), Ok(5 * MINUTE));
    assert_eq!(parse_interval("1h"), Ok(60 * MINUTE));
    assert_eq!(parse_interval(" 2d "), Ok(Duration::from_secs(2 * 86_400)));
    for bad in [
        "",
        "5",
        "m",
        "5 m",
        "5min",
        "-5m",
        "1.5h",
        "99999999999999999999d",
    ] {
        let error = parse_interval(bad).expect_err(bad);
        assert!(error.to_string().contains("\"30s\""), "{bad}: {error}");
    }
    assert_eq!(
        parse_interval("0s"),
        Err(IntervalError::TooShort("0s".into()))
    );
}

#[test]
fn missed_polls_collapse_into_one() {
    let interval = 5 * MINUTE;
    // On time: the next slot of the grid.
    assert_eq!(next_after_success(0, interval, 1_000), 300_000);
    // Exactly on a later slot: the one after it.
    assert_eq!(next_after_success(0, interval, 300_000), 600_000);
    // Five hours down: one poll now, then the next slot after now, not sixty catch-ups.
    assert_eq!(
        next_after_success(0, interval, 5 * 3_600_000 + 1),
        5 * 3_600_000 + 300_000
    );
    // Polled early (poll-now): the slot after the one it was due at.
    assert_eq!(next_after_success(600_000, interval, 1_000), 900_000);
}

#[test]
fn errors_back_off_exponentially_with_jitter_up_to_ten_intervals() {
    let interval = MINUTE;
    // No jitter drawn: half of 2, 4, 8, then the cap of 10 intervals.
    let low: Vec<Duration> = (1..=6)
        .map(|errors| backoff(interval, errors, 0.0, None))
        .collect();
    assert_eq!(
        low,
        [1, 2, 4, 5, 5, 5].map(|n| n * MINUTE),
        "the lowest draw"
    );
    let high: Vec<Duration> = (1..=6)
        .map(|errors| backoff(interval, errors, 0.999_999, None))
        .collect();
    for (errors, wait) in (1..).zip(&high) {
        assert!(
            *wait <= 10 * MINUTE,
            "error {errors}: {wait:?} over the cap"
        );
    }
    assert!(high[0] > 119 * interval / 60 && high[0] < 2 * MINUTE);
    assert!(high[5] > 599 * interval / 60);
    assert!(backoff(interval, 2, 0.5, None) > backoff(interval, 1, 0.5, None));
    // A huge error count does not overflow.
    assert!(backoff(interval, u32::MAX, 0.5, None) <= 10 * MINUTE);
    // Junk jitter counts as none.
    assert_eq!(backoff(interval, 1, f64::NAN, None), MINUTE);
}

#[test]
fn retry_after_is_honoured_beyond_the_backoff_but_not_beyond_a_day() {
    let interval = MINUTE;
    assert_eq!(
        backoff(interval, 1, 0.0, Some(30 * MINUTE)),
        30 * MINUTE,
        "a longer Retry-After wins"
    );
    assert_eq!(
        backoff(interval, 1, 0.0, Some(Duration::from_secs(1))),
        MINUTE,
        "a shorter one does not speed the backoff up"
    );
    assert_eq!(
        backoff(interval, 1, 0.0, Some(Duration::from_secs(7 * 86_400))),
        MAX_RETRY_AFTER
    );
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    assert_eq!(parse_retry_after("120", 0), Some(2 * MINUTE));
    // Wed, 21 Oct 2015 07:28:00 GMT is 1_445_412_480 s after the epoch.
    let at_ms = 1_445_412_480_000;
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at_ms - 90_000),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at_ms + 1),
        Some(Duration::ZERO),
        "a date past is no wait"
    );
    assert_eq!(parse_retry_after("soon", 0), None);
}

#[test]
fn a_source_fails_after_five_errors_in_a_row() {
    assert!(!is_failing(0));
    assert!(!is_failing(4));
    assert!(is_failing(5));
    assert!(is_failing(6));
}

#[test]
fn item_keys_are_kept_when_short_and_printable_else_hashed() {
    assert_eq!(occurrence_key("new-issues", "42"), "poll:new-issues:42");
    let long = "x".repeat(MAX_ITEM_KEY_LEN + 1);
    let hashed = item_key(&long);
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
        "{hashed}"
    );
    assert_eq!(hashed, item_key(&long), "the same key hashes alike");
    assert!(item_key("a\nb").starts_with("sha256:"));
    assert!(item_key("").starts_with("sha256:"));
    assert_eq!(
        item_key(&"y".repeat(MAX_ITEM_KEY_LEN)).len(),
        MAX_ITEM_KEY_LEN
    );
}
