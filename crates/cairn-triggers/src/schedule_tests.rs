//! Schedules: parse errors name what is wrong; fire times follow the time zone and its DST
//! rules; after downtime each catch-up policy fires what it promises and reports the rest.

use chrono::{DateTime, Utc};

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn hourly() -> Schedule {
    Schedule::cron("hourly", "0 * * * *").unwrap()
}

#[test]
fn bad_expressions_zones_and_ids_are_named() {
    let expression = Schedule::cron("x", "0 25 * * *").unwrap_err();
    assert!(matches!(expression, ScheduleError::Expression { .. }));
    assert!(
        expression.to_string().contains("\"0 25 * * *\""),
        "{expression}"
    );
    let zone = hourly().timezone("Mars/Olympus").unwrap_err();
    assert_eq!(zone, ScheduleError::TimeZone("Mars/Olympus".into()));
    for id in ["", "has space", "a/b"] {
        assert_eq!(
            Schedule::cron(id, "* * * * *").unwrap_err(),
            ScheduleError::Id(id.into())
        );
    }
    let never = Schedule::cron("x", "0 0 31 4 *").unwrap_err();
    assert_eq!(never, ScheduleError::NeverFires("0 0 31 4 *".into()));
    let with_seconds = Schedule::cron("s", "30 0 9 * * *").unwrap();
    assert_eq!(
        with_seconds.next_after(at("2026-12-03T00:00:00Z")),
        Some(at("2026-12-03T09:00:30Z"))
    );
}

#[test]
fn fields_are_read_in_the_schedule_time_zone() {
    let weekdays = Schedule::cron("digest", "0 9 * * MON-FRI")
        .unwrap()
        .timezone("Europe/Berlin")
        .unwrap();
    // Friday 4 December 2026, after 09:00 in Berlin (CET, UTC+1): next is Monday 08:00 UTC.
    assert_eq!(
        weekdays.next_after(at("2026-12-04T09:00:00Z")),
        Some(at("2026-12-07T08:00:00Z"))
    );
    // In July (CEST, UTC+2) the same 09:00 is 07:00 UTC.
    assert_eq!(
        weekdays.next_after(at("2026-07-01T00:00:00Z")),
        Some(at("2026-07-01T07:00:00Z"))
    );
    assert_eq!(
        weekdays.occurrence_key(at("2026-07-01T07:00:00Z")),
        "sched:digest:2026-07-01T07:00:00Z"
    );
}

#[test]
fn a_fixed_time_in_a_skipped_hour_fires_at_the_first_instant_after_it() {
    // 29 March 2026, Berlin: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    let nightly = Schedule::cron("nightly", "30 2 * * *")
        .unwrap()
        .timezone("Europe/Berlin")
        .unwrap();
    let fire = nightly.next_after(at("2026-03-28T12:00:00Z")).unwrap();
    assert_eq!(
        fire,
        at("2026-03-29T01:00:00Z"),
        "03:00 CEST, the first instant after"
    );
    assert_eq!(
        nightly.next_after(fire),
        Some(at("2026-03-30T00:30:00Z")),
        "then 02:30 CEST as usual"
    );
}

#[test]
fn a_repeated_hour_fires_a_fixed_time_once_and_a_stepped_one_in_both_copies() {
    // 25 October 2026, Berlin: 03:00 CEST becomes 02:00 CET; 02:00-03:00 happens twice
    // (00:00-01:00 UTC, then 01:00-02:00 UTC).
    let nightly = Schedule::cron("nightly", "30 2 * * *")
        .unwrap()
        .timezone("Europe/Berlin")
        .unwrap();
    let first = nightly.next_after(at("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(first, at("2026-10-25T00:30:00Z"));
    assert_eq!(
        nightly.next_after(first),
        Some(at("2026-10-26T01:30:00Z")),
        "not again at 01:30 UTC (the second 02:30)"
    );

    let half_hourly = Schedule::cron("half", "*/30 * * * *")
        .unwrap()
        .timezone("Europe/Berlin")
        .unwrap();
    let mut fires = Vec::new();
    let mut after = at("2026-10-24T23:45:00Z");
    while let Some(next) = half_hourly
        .next_after(after)
        .filter(|t| *t < at("2026-10-25T02:00:00Z"))
    {
        fires.push(next);
        after = next;
    }
    assert_eq!(
        fires,
        [
            at("2026-10-25T00:00:00Z"),
            at("2026-10-25T00:30:00Z"),
            at("2026-10-25T01:00:00Z"),
            at("2026-10-25T01:30:00Z"),
        ],
        "both copies of the repeated hour"
    );
    let keys: std::collections::HashSet<_> = fires
        .iter()
        .map(|fire| half_hourly.occurrence_key(*fire))
        .collect();
    assert_eq!(keys.len(), 4, "each occurrence its own key");
}

#[test]
fn an_on_time_fire_is_due_alone() {
    let due = hourly().due(at("2026-12-03T10:00:00Z"), at("2026-12-03T10:00:05Z"));
    assert_eq!(due.fire, [at("2026-12-03T10:00:00Z")]);
    assert_eq!(due.missed, None);
    assert_eq!(due.next, at("2026-12-03T11:00:00Z"));
    let early = hourly().due(at("2026-12-03T10:00:00Z"), at("2026-12-03T09:59:59Z"));
    assert!(early.fire.is_empty() && early.missed.is_none());
    assert_eq!(early.next, at("2026-12-03T10:00:00Z"));
}

#[test]
fn after_downtime_latest_fires_the_newest_and_reports_the_rest() {
    let due = hourly().due(at("2026-12-03T05:00:00Z"), at("2026-12-03T10:20:00Z"));
    assert_eq!(due.fire, [at("2026-12-03T10:00:00Z")]);
    let missed = due.missed.unwrap();
    assert_eq!(
        (missed.first, missed.last),
        (at("2026-12-03T05:00:00Z"), at("2026-12-03T09:00:00Z"))
    );
    assert_eq!(due.next, at("2026-12-03T11:00:00Z"));
}

#[test]
fn after_downtime_all_fires_every_time_in_its_window() {
    let schedule = hourly().catch_up(CatchUp::All {
        window: Duration::from_secs(2 * 3600 + 1200),
    });
    let due = schedule.due(at("2026-12-03T05:00:00Z"), at("2026-12-03T10:20:00Z"));
    assert_eq!(
        due.fire,
        [
            at("2026-12-03T08:00:00Z"),
            at("2026-12-03T09:00:00Z"),
            at("2026-12-03T10:00:00Z"),
        ]
    );
    let missed = due.missed.unwrap();
    assert_eq!(
        (missed.first, missed.last),
        (at("2026-12-03T05:00:00Z"), at("2026-12-03T07:00:00Z"))
    );
}

#[test]
fn after_downtime_none_fires_nothing_late() {
    let schedule = hourly().catch_up(CatchUp::None);
    let late = schedule.due(at("2026-12-03T05:00:00Z"), at("2026-12-03T10:20:00Z"));
    assert!(late.fire.is_empty());
    let missed = late.missed.unwrap();
    assert_eq!(
        (missed.first, missed.last),
        (at("2026-12-03T05:00:00Z"), at("2026-12-03T10:00:00Z"))
    );
    let on_time = schedule.due(at("2026-12-03T10:00:00Z"), at("2026-12-03T10:00:30Z"));
    assert_eq!(on_time.fire, [at("2026-12-03T10:00:00Z")]);
}

#[test]
fn a_long_downtime_of_a_frequent_schedule_keeps_at_most_the_limit() {
    let every_second = Schedule::cron("tick", "* * * * * *")
        .unwrap()
        .catch_up(CatchUp::All {
            window: Duration::from_secs(30 * 24 * 3600),
        });
    let began = std::time::Instant::now();
    let due = every_second.due(at("2026-11-01T00:00:00Z"), at("2026-12-03T00:00:00Z"));
    assert_eq!(due.fire.len(), MAX_CATCH_UP);
    assert_eq!(due.fire.last(), Some(&at("2026-12-03T00:00:00Z")));
    assert!(due.fire.windows(2).all(|pair| pair[0] < pair[1]));
    let missed = due.missed.unwrap();
    assert_eq!(missed.first, at("2026-11-01T00:00:00Z"));
    assert_eq!(missed.last, at("2026-12-02T23:43:20Z"));
    assert!(
        began.elapsed() < std::time::Duration::from_secs(5),
        "bounded by the limit, not by the downtime: {:?}",
        began.elapsed()
    );
}

#[test]
fn a_range_lists_its_fire_times_up_to_a_limit() {
    let schedule = hourly();
    let times = schedule
        .fire_times_between(at("2026-12-03T05:00:00Z"), at("2026-12-03T08:00:00Z"), 4)
        .unwrap();
    assert_eq!(
        times,
        [
            at("2026-12-03T05:00:00Z"),
            at("2026-12-03T06:00:00Z"),
            at("2026-12-03T07:00:00Z"),
            at("2026-12-03T08:00:00Z")
        ],
        "both ends are in the range"
    );
    let too_many = schedule
        .fire_times_between(at("2026-12-03T05:00:00Z"), at("2026-12-03T08:00:00Z"), 3)
        .unwrap_err();
    assert!(
        too_many.to_string().contains("more than 3 fire times"),
        "{too_many}"
    );
    assert_eq!(
        schedule.previous_before(at("2026-12-03T05:00:00Z")),
        Some(at("2026-12-03T04:00:00Z"))
    );
}
