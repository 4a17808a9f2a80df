//! Sans-IO core of Cairn.
//!
//! This crate decides; it never does. It owns the event types a run's log is made of, step-key
//! assignment, the [`Journal`] that answers "replay this, execute that, or this is
//! non-deterministic" for each step call, retry/backoff maths and the engine's named limits.
//!
//! **Architecture invariant:** no I/O, no clock, no randomness, no async runtime. Everything
//! that varies (the current time, a random draw for jitter) is passed in, so every decision is
//! a pure function of its inputs and is unit-tested against canned histories.

mod duration;
mod event;
mod journal;
mod limits;
mod owner;
mod patch;
mod retry;
mod step_key;
mod summary;
mod waits;

pub use duration::{InvalidDuration, parse_duration};
pub use event::{ErrorInfo, ErrorKind, Event, EventRecord, RunStatus, StepKind};
pub use journal::{Call, CallName, ChangedInput, Decision, Journal, NonDeterminism, Patched};
pub use limits::{LimitExceeded, Limits};
pub use owner::{DEFAULT_OWNER_NAME, Holder, Owner, Scope, UsedCredential};
pub use patch::{PATCH_SLUG, patch_key};
pub use retry::RetryPolicy;
pub use step_key::{
    HOOK_SLUG, InvalidSlug, NOW_SLUG, RANDOM_SLUG, SLEEP_SLUG, StepKey, UUID_SLUG, validate_slug,
};
pub use summary::{AttemptError, StepStatus, StepSummary, summarize_steps};
pub use waits::{HookInput, SleepInput};
