//! # Cairn: durable workflows in plain async Rust
//!
//! A workflow is ordinary async Rust that calls typed *actions*. Every action call is a
//! durable step: its result is appended to the run's event log (fsync'd) before the workflow
//! moves on. If the process dies or a step fails and the run is retried, Cairn replays the
//! log: finished steps hand back their recorded result without running again, and execution
//! resumes at the first step that has not finished.
//!
//! ```no_run
//! use std::sync::LazyLock;
//!
//! use cairn::{Action, ActionCtx, Registry, Retry, Workflow, WorkflowCtx};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Signup { name: String, #[schemars(email)] email: String }
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Brief { brief: String }
//!
//! static RESEARCH: LazyLock<Action<Signup, Brief>> = LazyLock::new(|| {
//!     Action::new("research-signup")
//!         .description("Look up the company behind a signup")
//!         .retry(Retry::exponential().max_attempts(5))
//!         .run(|input: Signup, _ctx: ActionCtx| async move {
//!             Ok(Brief { brief: format!("{} <{}> signed up", input.name, input.email) })
//!         })
//! });
//!
//! static PIPELINE: LazyLock<Workflow<Signup, Brief>> = LazyLock::new(|| {
//!     Workflow::new("signup-pipeline")
//!         .description("Research a signup lead.")
//!         .run(|input: Signup, _ctx: WorkflowCtx| async move {
//!             let brief = RESEARCH.run(input).await?;
//!             Ok(brief)
//!         })
//! });
//!
//! fn main() -> std::process::ExitCode {
//!     cairn::cli::main(Registry::new().workflow(&PIPELINE).action(&RESEARCH))
//! }
//! ```
//!
//! The binary then has the whole CLI: `run signup-pipeline --input '{…}'`, `runs list`,
//! `runs get <id>`, `runs retry`, `runs rerun --from`, `runs cancel`, `worker`,
//! `workflows list`. Runs live in a SQLite file under `.cairn/` (no server to start).

pub mod cli;
pub mod testing;

pub use cairn_core::{
    ErrorInfo, ErrorKind, Event, EventRecord, Limits, RunStatus, StepKey, StepKind, StepStatus,
    StepSummary,
};
pub use cairn_engine::{
    Action, ActionBuilder, ActionCtx, ActionError, ActionInfo, CancellationToken, Clock, Engine,
    EngineBuilder, EngineConfig, EngineError, Hook, HookOptions, Payload, Registry, Retry,
    RunDetail, RunEvent, SleepFor, StartOptions, Started, StepCall, StepError, SystemClock,
    Violation, Violations, Workflow, WorkflowBuilder, WorkflowCtx, WorkflowError, WorkflowInfo,
};
pub use cairn_store::{
    HookFilter, HookRecord, HookState, RunFilter, RunId, RunRecord, Store, StoreError,
};
pub use cairn_store_postgres::{PostgresOptions, PostgresStore};
pub use cairn_store_sqlite::SqliteStore;
