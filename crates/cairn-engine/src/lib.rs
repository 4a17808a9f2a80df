//! Cairn's runtime: typed actions and workflows, the step executor, leases and the worker
//! loop. Users depend on the `cairn` facade, which re-exports what they need from here.
//!
//! A workflow body is plain async Rust. Each `action.run(input)` it awaits is a step: the
//! executor asks the sans-IO [`Journal`](cairn_core::Journal) whether the run's history has
//! the result (replay) or the step must execute; an executed step's result is appended to the
//! run's log, durably, before anything outside the workflow can depend on it (the next
//! step's start, the run's end: see `writes`).

mod action;
mod attempt;
mod clock;
mod context;
mod engine;
mod error;
mod executor;
mod heartbeat;
mod registry;
mod resume;
mod schema;
mod shared;
mod step;
mod wait;
mod worker;
mod workflow;
mod writes;

pub use action::{Action, ActionBuilder, ActionCtx, ActionInfo, Payload};
pub use cairn_core::RetryPolicy as Retry;
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::UNRECORDED;
pub use engine::{
    ActionOverride, Engine, EngineBuilder, EngineConfig, MAX_IDEMPOTENCY_KEY_LEN, RunDetail,
    RunEvent, StartOptions, Started,
};
pub use error::{ActionError, EngineError, StepError, WorkflowError};
pub use registry::Registry;
pub use schema::{Violation, Violations};
pub use step::StepCall;
pub use tokio_util::sync::CancellationToken;
pub use wait::{Hook, HookOptions, SleepFor};
pub use workflow::{Workflow, WorkflowBuilder, WorkflowCtx, WorkflowInfo};
