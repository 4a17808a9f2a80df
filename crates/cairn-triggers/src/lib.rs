//! Triggers start workflow runs from outside a workflow: cron schedules, signed webhook
//! sources and poll sources (issue 26). This crate is sans-IO: it decides *when*, *is
//! this delivery authentic* and *under which idempotency key*; the engine starts the runs and
//! the store keeps each trigger's state, so that an occurrence's run is inserted in the same
//! transaction that advances the trigger (see [`schedule`]), a delivery's run once per
//! delivery id (see [`webhook`]), and a polled item's run once per item key (see [`poll`]).

pub mod poll;
pub mod schedule;
pub mod webhook;

pub use poll::IntervalError;
pub use schedule::{CatchUp, Due, Missed, Overlap, Schedule, ScheduleError, TooManyFireTimes};
pub use webhook::{Headers, Scheme, TransformError, VerifyError, WebhookRequest};
