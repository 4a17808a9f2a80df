//! What started a run, read from its stored `trigger` text: the typed [`Trigger`] a workflow
//! gets from `ctx.trigger()` and the API shows beside the raw text.
//!
//! **Deterministic on replay.** The trigger is written once, when the run is created, and
//! never changes: parsing it gives the same answer on every execution of the run.
//!
//! **The text's forms.** `api`, `cli`, `rerun`, `child`; `webhook:{endpoint}:{delivery id}`;
//! `poll:{source}:{item key}`; `schedule:{id}@{fire instant, UTC RFC 3339}`, optionally
//! followed by `;`-separated parts: `tz={IANA zone}`, `prev={previous fire instant}`, and
//! `manual` (a run started by `schedules trigger`) or `backfill`. Runs created before those
//! parts existed have none (their time zone and previous fire time read as unknown); parts
//! not known here are ignored, so a newer writer's text still parses.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What started a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Trigger {
    /// A cron schedule's fire time (a live fire, a backfill or a manual trigger).
    #[serde(rename_all = "camelCase")]
    Schedule {
        /// The schedule's id.
        id: String,
        /// The fire time this run is for (for a manual trigger: when it was asked for).
        #[schemars(with = "String")]
        scheduled_at: DateTime<Utc>,
        /// The IANA zone the schedule's expression is read in; `None` for runs created
        /// before the trigger recorded it.
        timezone: Option<String>,
        /// The schedule's fire time before `scheduled_at` (by its expression, whether or
        /// not that one started a run); `None` when unknown.
        #[schemars(with = "Option<String>")]
        previous: Option<DateTime<Utc>>,
        /// How the occurrence was started.
        by: ScheduleStart,
    },
    /// A webhook delivery.
    #[serde(rename_all = "camelCase")]
    Webhook {
        /// The endpoint (`POST /triggers/{endpoint}`).
        endpoint: String,
        /// The delivery's id (the provider's, or the body's SHA-256).
        delivery_id: String,
    },
    /// A poll source's new item.
    #[serde(rename_all = "camelCase")]
    Poll {
        /// The source's id.
        source: String,
        /// The item's key.
        item_key: String,
    },
    /// The HTTP API.
    Api,
    /// The command line.
    Cli,
    /// A rerun of an earlier run.
    Rerun,
    /// A parent run's child step.
    Child,
    /// Anything else (tests, replays, a caller's own text), as stored.
    Other {
        /// The stored text.
        text: String,
    },
}

/// How a schedule's occurrence was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScheduleStart {
    /// By a worker, at (or after downtime, for) its fire time.
    Fire,
    /// By `schedules backfill`.
    Backfill,
    /// By `schedules trigger`, outside the schedule's fire times.
    Manual,
}

impl Trigger {
    /// Reads a run's stored trigger text; never fails (unknown text is [`Trigger::Other`]).
    pub fn parse(text: &str) -> Trigger {
        let other = || Trigger::Other {
            text: text.to_owned(),
        };
        match text {
            "api" => return Trigger::Api,
            "cli" => return Trigger::Cli,
            "rerun" => return Trigger::Rerun,
            "child" => return Trigger::Child,
            _ => {}
        }
        if let Some(rest) = text.strip_prefix("schedule:") {
            return parse_schedule(rest).unwrap_or_else(other);
        }
        if let Some((endpoint, delivery_id)) = text
            .strip_prefix("webhook:")
            .and_then(|rest| rest.split_once(':'))
        {
            return Trigger::Webhook {
                endpoint: endpoint.to_owned(),
                delivery_id: delivery_id.to_owned(),
            };
        }
        if let Some((source, item_key)) = text
            .strip_prefix("poll:")
            .and_then(|rest| rest.split_once(':'))
        {
            return Trigger::Poll {
                source: source.to_owned(),
                item_key: item_key.to_owned(),
            };
        }
        other()
    }
}

/// The trigger text of schedule `id`'s occurrence at `at` (see the module docs).
pub(crate) fn schedule_trigger(
    id: &str,
    at: DateTime<Utc>,
    timezone: &str,
    previous: Option<DateTime<Utc>>,
    by: ScheduleStart,
) -> String {
    let mut text = format!("schedule:{id}@{};tz={timezone}", rfc3339(at));
    if let Some(previous) = previous {
        text.push_str(";prev=");
        text.push_str(&rfc3339(previous));
    }
    match by {
        ScheduleStart::Fire => {}
        ScheduleStart::Backfill => text.push_str(";backfill"),
        ScheduleStart::Manual => text.push_str(";manual"),
    }
    text
}

/// The prefix of every trigger text of schedule `id`'s runs.
pub(crate) fn schedule_trigger_prefix(id: &str) -> String {
    format!("schedule:{id}@")
}

/// A UTC time as the keys and triggers write it.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `{id}@{instant}[;part…]`, or `None` if the id or instant is not there.
fn parse_schedule(rest: &str) -> Option<Trigger> {
    let (id, rest) = rest.split_once('@')?;
    let mut parts = rest.split(';');
    let scheduled_at = instant(parts.next()?)?;
    let mut timezone = None;
    let mut previous = None;
    let mut by = ScheduleStart::Fire;
    for part in parts {
        match part.split_once('=') {
            Some(("tz", zone)) => timezone = Some(zone.to_owned()),
            Some(("prev", at)) => previous = instant(at),
            None if part == "manual" => by = ScheduleStart::Manual,
            None if part == "backfill" => by = ScheduleStart::Backfill,
            _ => {}
        }
    }
    (!id.is_empty()).then(|| Trigger::Schedule {
        id: id.to_owned(),
        scheduled_at,
        timezone,
        previous,
        by,
    })
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        instant(text).expect("an RFC 3339 time")
    }

    #[test]
    fn old_and_new_schedule_texts_parse() {
        assert_eq!(
            Trigger::parse("schedule:digest@2026-03-29T00:30:00Z"),
            Trigger::Schedule {
                id: "digest".into(),
                scheduled_at: at("2026-03-29T00:30:00Z"),
                timezone: None,
                previous: None,
                by: ScheduleStart::Fire,
            },
            "a text written before the parts existed"
        );
        let text = schedule_trigger(
            "digest",
            at("2026-03-29T00:30:00Z"),
            "Europe/Berlin",
            Some(at("2026-03-28T01:30:00Z")),
            ScheduleStart::Backfill,
        );
        assert_eq!(
            text,
            "schedule:digest@2026-03-29T00:30:00Z;tz=Europe/Berlin;prev=2026-03-28T01:30:00Z;backfill"
        );
        assert_eq!(
            Trigger::parse(&format!("{text};later=1")),
            Trigger::Schedule {
                id: "digest".into(),
                scheduled_at: at("2026-03-29T00:30:00Z"),
                timezone: Some("Europe/Berlin".into()),
                previous: Some(at("2026-03-28T01:30:00Z")),
                by: ScheduleStart::Backfill,
            },
            "every part, and an unknown one ignored"
        );
        let manual = schedule_trigger(
            "d",
            at("2026-03-29T00:30:00Z"),
            "UTC",
            None,
            ScheduleStart::Manual,
        );
        assert!(matches!(
            Trigger::parse(&manual),
            Trigger::Schedule {
                by: ScheduleStart::Manual,
                previous: None,
                ..
            }
        ));
    }

    #[test]
    fn every_other_form_parses() {
        assert_eq!(Trigger::parse("api"), Trigger::Api);
        assert_eq!(Trigger::parse("cli"), Trigger::Cli);
        assert_eq!(Trigger::parse("rerun"), Trigger::Rerun);
        assert_eq!(Trigger::parse("child"), Trigger::Child);
        assert_eq!(
            Trigger::parse("webhook:stripe:evt_1:x"),
            Trigger::Webhook {
                endpoint: "stripe".into(),
                delivery_id: "evt_1:x".into()
            }
        );
        assert_eq!(
            Trigger::parse("poll:issues:42"),
            Trigger::Poll {
                source: "issues".into(),
                item_key: "42".into()
            }
        );
        for text in [
            "test",
            "schedule:x@yesterday",
            "schedule:@2026-03-29T00:30:00Z",
        ] {
            assert_eq!(
                Trigger::parse(text),
                Trigger::Other { text: text.into() },
                "{text}"
            );
        }
    }
}
