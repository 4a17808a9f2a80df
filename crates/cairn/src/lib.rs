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
//!
//! ## Cargo features
//!
//! A binary compiles only what it enables, as with tokio and sqlx:
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sqlite` | yes | `SqliteStore`, the embedded store: one SQLite file, bundled, nothing to install |
//! | `cli` | yes | `cairn::cli`, the embedded command line (`cairn::cli::main`) |
//! | `postgres` | no | `PostgresStore` and the CLI's `--database-url`, for workers on several machines (sqlx, rustls) |
//! | `client` | no | the CLI's `--server URL` (`CAIRN_SERVER`, `CAIRN_API_KEY`): `run`, `runs …`, `hooks resume` and `workflows list` act on a running `serve` over HTTP, opening no store (reqwest, rustls with ring, sse-stream); implies `cli` |
//! | `server` | no | the CLI's `serve`: the HTTP API (crate `cairn-server`: axum, hyper); implies `cli` and `client` |
//! | `llm` | no | `cairn::llm`: model calls as durable steps and agents whose tools are actions (crate `cairn-llm`: OpenAI-compatible and Anthropic over reqwest), with `Tool`, `validate_payload` and `TestEnv::mock_llm` |
//!
//! `cairn = { version = "…", features = ["postgres"] }` adds PostgreSQL to the defaults;
//! `default-features = false, features = ["postgres", "cli"]` leaves SQLite out. A CLI built
//! without `postgres` refuses `--database-url` (or `CAIRN_DATABASE_URL`) with a message saying
//! which feature to enable, one without `sqlite` requires it, and one without `client`
//! refuses `--server` the same way. The engine, the actions and
//! workflows, and [`testing`] (in memory) are always there. Ready-made integrations
//! (`actions`) are still to come, behind a feature of their own, off by default.

#[cfg(feature = "cli")]
pub mod cli;
pub mod testing;

/// Language models as durable steps (feature `llm`): [`llm::prompt_llm`],
/// [`llm::prompt_llm_as`] and [`llm::Agent`], whose tools are actions. The crate `cairn-llm`,
/// re-exported.
#[cfg(feature = "llm")]
pub use cairn_llm as llm;

pub use cairn_core::{
    ChangedInput, ErrorInfo, ErrorKind, Event, EventRecord, Holder, Limits, Owner, RunStatus,
    Scope, StepKey, StepKind, StepStatus, StepSummary, UsedCredential,
};
pub use cairn_engine::{
    Action, ActionBuilder, ActionCtx, ActionError, ActionInfo, BackfillRun, CancellationToken,
    CatchUp, Clock, Credential, CredentialView, Delivered, Engine, EngineBuilder, EngineConfig,
    EngineError, Field, GitHubSignature, HmacHeader, Hook, HookOptions, KeySource, MasterKey,
    Overlap, Payload, Poll, PollCtx, PollError, PollSource, Polled, PollingSource, Registry,
    ResolvedCredential, Retry, RunDetail, RunEvent, Schedule, ScheduleDetail, ScheduleError,
    ScheduleStart, ScheduleStarted, Secret, SetCredential, SlackSignature, SleepFor,
    StandardWebhooks, StartFrom, StartOptions, Started, StepCall, StepError, StripeSignature,
    SystemClock, TransformError, Trigger, Verifier, VerifyError, Violation, Violations, Webhook,
    WebhookError, WebhookRequest, WebhookSource, Workflow, WorkflowBuilder, WorkflowCtx,
    WorkflowError, WorkflowInfo, panic_is_caught,
};
#[cfg(feature = "llm")]
pub use cairn_engine::{Tool, validate_payload};
pub use cairn_store::{
    HookFilter, HookRecord, HookState, PatchFilter, PollSourceRecord, PollState, RunFilter, RunId,
    RunRecord, ScheduleMiss, ScheduleRecord, Store, StoreError, WebhookDelivery,
};
#[cfg(feature = "postgres")]
pub use cairn_store_postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use cairn_store_sqlite::SqliteStore;
