//! Triggers start workflow runs from outside a workflow: cron schedules today; webhook and
//! poll sources next (issue 26). This crate is sans-IO: it decides *when* and *under which
//! idempotency key*; the engine's worker starts the runs and the store keeps each trigger's
//! state, so that an occurrence's run is inserted in the same transaction that advances the
//! trigger (see [`schedule`]).

pub mod schedule;

pub use schedule::{CatchUp, Due, Missed, Overlap, Schedule, ScheduleError};
