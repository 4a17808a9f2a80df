//! Cron schedules: parsing (5 fields, or 6 with seconds; croner), the time zone the fields
//! are read in (UTC unless given; chrono-tz), the fire times due at a moment with the
//! catch-up policy after downtime, and each occurrence's idempotency key.
//!
//! **Exactly once.** An occurrence's key is `sched:{id}:{fire instant, UTC RFC 3339}`: the
//! UTC instant, not local time, so the two 02:30s of a repeated DST hour are two keys only
//! if the expression fires in both (croner fires a fixed-time job once in a repeated hour and
//! at the first instant after a skipped one; `*` and step fields run in both copies and skip
//! the gap). The run is inserted under that key in the transaction that moves the schedule's
//! next fire time on, so any worker may fire any due schedule and a crash or a second worker
//! never starts an occurrence twice.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds},
};

/// The longest catch-up window honoured, and the most fire times caught up at once.
pub const MAX_CATCH_UP: usize = 1_000;
/// How late a fire time may be and still be on time (a worker's poll, a busy store).
pub const ON_TIME: Duration = Duration::from_secs(60);
/// How far back [`CatchUp::Latest`] looks for the newest missed fire time.
pub const LATEST_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a schedule cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "the cron expression {expression:?} is not valid: {why}; write 5 fields (minute hour \
         day-of-month month day-of-week, e.g. \"0 9 * * MON-FRI\") or 6 with seconds first"
    )]
    Expression {
        /// The expression.
        expression: String,
        /// croner's reason.
        why: String,
    },
    /// The time zone is not an IANA name.
    #[error("{0:?} is not a time zone; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    TimeZone(String),
    /// The id is empty or has characters keys cannot hold.
    #[error("the schedule id {0:?} is not valid: use 1 to 100 letters, digits, '-', '_' or '.'")]
    Id(String),
    /// The expression never fires (e.g. 30 February).
    #[error("the cron expression {0:?} never fires")]
    NeverFires(String),
}

/// A range holds more fire times than asked for at once (see
/// [`Schedule::fire_times_between`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{from} .. {to} holds more than {limit} fire times; backfill a narrower range, a part at a time"
)]
pub struct TooManyFireTimes {
    /// The most allowed.
    pub limit: usize,
    /// The range's start.
    pub from: DateTime<Utc>,
    /// The range's end.
    pub to: DateTime<Utc>,
}

/// What to do about fire times missed while no worker ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// One run, for the newest missed fire time of the last 24 hours (the default).
    Latest,
    /// A run for every missed fire time within `window` (at most 1,000, the newest kept).
    All {
        /// How far back to catch up.
        window: Duration,
    },
    /// None: a fire time later than a minute is skipped.
    None,
}

/// What to do when a fire time comes while the previous occurrence's run has not ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Start it anyway (the default).
    AllowAll,
    /// Skip it (recorded with the reason).
    Skip,
    /// Keep one occurrence waiting; start it when the running one ends.
    BufferOne,
}

/// A cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    id: String,
    expression: String,
    cron: Cron,
    zone: Tz,
    catch_up: CatchUp,
    overlap: Overlap,
}

/// The span of fire times that were not fired, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The oldest of them.
    pub first: DateTime<Utc>,
    /// The newest of them.
    pub last: DateTime<Utc>,
    /// Why they were not fired.
    pub reason: &'static str,
}

/// What a schedule has to do at a moment: the occurrences to start, those missed, and the
/// next fire time to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Fire times to start a run for, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Fire times passed over (downtime beyond the catch-up policy).
    pub missed: Option<Missed>,
    /// The first fire time after the moment asked about.
    pub next: DateTime<Utc>,
}

impl Schedule {
    /// A schedule with id `id` firing at `expression` (5 fields, or 6 with seconds first), in
    /// UTC, catching up the latest missed time, overlapping allowed.
    pub fn cron(id: &str, expression: &str) -> Result<Schedule, ScheduleError> {
        let valid_id = (1..=100).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_id {
            return Err(ScheduleError::Id(id.to_owned()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|error| ScheduleError::Expression {
                expression: expression.to_owned(),
                why: error.to_string(),
            })?;
        let schedule = Schedule {
            id: id.to_owned(),
            expression: expression.to_owned(),
            cron,
            zone: Tz::UTC,
            catch_up: CatchUp::Latest,
            overlap: Overlap::AllowAll,
        };
        // An expression that parses may still never match (31 April); say so now.
        if schedule
            .next_after(Utc.timestamp_opt(0, 0).single().unwrap_or_default())
            .is_none()
        {
            return Err(ScheduleError::NeverFires(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// Reads the fields in time zone `zone` (an IANA name).
    pub fn timezone(mut self, zone: &str) -> Result<Schedule, ScheduleError> {
        self.zone = Tz::from_str(zone).map_err(|_| ScheduleError::TimeZone(zone.to_owned()))?;
        Ok(self)
    }

    /// Sets the catch-up policy.
    pub fn catch_up(mut self, catch_up: CatchUp) -> Schedule {
        self.catch_up = catch_up;
        self
    }

    /// Sets the overlap policy.
    pub fn overlap(mut self, overlap: Overlap) -> Schedule {
        self.overlap = overlap;
        self
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its expression, as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of the time zone its fields are read in.
    pub fn timezone_name(&self) -> &str {
        self.zone.name()
    }

    /// Its catch-up policy.
    pub fn catch_up_policy(&self) -> CatchUp {
        self.catch_up
    }

    /// Its overlap policy (the worker applies it: it knows whether a run is still going).
    pub fn overlap_policy(&self) -> Overlap {
        self.overlap
    }

    /// The first fire time strictly after `after`, or `None` past the end of the calendar.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(after, Direction::Forward, false)
    }

    /// The last fire time strictly before `before`, or `None` before the calendar's start.
    pub fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(before, Direction::Back, false)
    }

    /// The fire times in `[from, to]`, oldest first: a backfill's occurrences. More than
    /// `limit` is an error naming the range, so a wide range is refused before anything
    /// starts.
    pub fn fire_times_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>, TooManyFireTimes> {
        let mut times = Vec::new();
        let mut at = self.find(from, Direction::Forward, true);
        while let Some(time) = at.filter(|time| *time <= to) {
            if times.len() == limit {
                return Err(TooManyFireTimes { limit, from, to });
            }
            times.push(time);
            at = self.find(time, Direction::Forward, false);
        }
        Ok(times)
    }

    /// The idempotency key of the occurrence at `fire`.
    pub fn occurrence_key(&self, fire: DateTime<Utc>) -> String {
        format!(
            "sched:{}:{}",
            self.id,
            fire.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// What is due at `now` for a schedule whose next fire time was `next` (`next <= now`
    /// when anything is due): the fire times in `[next, now]` the catch-up policy keeps
    /// (newest first found, walking back from `now`, so a long downtime costs at most the
    /// policy's limit of steps), the span it passes over, and the next fire time after `now`.
    pub fn due(&self, next: DateTime<Utc>, now: DateTime<Utc>) -> Due {
        let following = self.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC);
        if next > now {
            return Due {
                fire: Vec::new(),
                missed: None,
                next,
            };
        }
        let (window, limit, reason) = match self.catch_up {
            CatchUp::Latest => (
                LATEST_WINDOW,
                1,
                "downtime: only the latest missed fire time is caught up",
            ),
            CatchUp::All { window } => (
                window,
                MAX_CATCH_UP,
                "downtime: older than the catch-up window",
            ),
            CatchUp::None => (ON_TIME, 1, "downtime: catch-up is off"),
        };
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let keep_from = next.max(now.checked_sub_signed(window).unwrap_or(next));
        let mut fire = Vec::new();
        let mut at = self.find(now, Direction::Back, true);
        while let Some(time) = at.filter(|time| *time >= keep_from) {
            if fire.len() == limit {
                break;
            }
            fire.push(time);
            at = self.find(time, Direction::Back, false);
        }
        fire.reverse();
        // What lies between `next` and the oldest kept (or `now`) was passed over.
        let kept_from = fire.first().copied();
        let first = self
            .find(next, Direction::Forward, true)
            .filter(|first| kept_from.map_or(*first <= now, |kept| first < &kept));
        let last = match kept_from {
            Some(kept) => self.find(kept, Direction::Back, false),
            None => self.find(now, Direction::Back, true),
        };
        let missed = first
            .zip(last.filter(|last| *last >= next))
            .map(|(first, last)| Missed {
                first,
                last,
                reason,
            });
        Due {
            fire,
            missed,
            next: following,
        }
    }

    /// The nearest fire time to `from` in `direction` (`from` itself too, if `inclusive`).
    fn find(
        &self,
        from: DateTime<Utc>,
        direction: Direction,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        let local = from.with_timezone(&self.zone);
        let found = match direction {
            Direction::Forward => self.cron.find_next_occurrence(&local, inclusive),
            Direction::Back => self.cron.find_previous_occurrence(&local, inclusive),
        };
        found.ok().map(|time| time.with_timezone(&Utc))
    }
}

/// Which way [`Schedule::find`] looks.
#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Back,
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
