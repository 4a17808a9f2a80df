//! Cairn's runtime: typed actions and workflows, the step executor, leases and the worker
//! loop. Users depend on the `cairn` facade, which re-exports what they need from here.
//!
//! A workflow body is plain async Rust. Each `action.run(input)` it awaits is a step: the
//! executor asks the sans-IO [`Journal`](cairn_core::Journal) whether the run's history has
//! the result (replay) or the step must execute; an executed step's result is appended to the
//! run's log, durably, before anything outside the workflow can depend on it (the next
//! step's start, the run's end: see `run::writes`).
//!
//! The crate is built in layers; a module uses only the layers below its own (checked by
//! `tests/layers.rs`):
//!
//! 1. `base`: errors, schemas, the clock, entropy, configuration, resources.
//! 2. `run`: one execution (`RunContext`), its stop reasons and its
//!    deferred writes, over a narrow environment (`run::env`).
//! 3. `call`: the one path every kind of step is made through (key, limits, replay or
//!    execute, the stop rule), payload codecs, action attempts, waiting and suspending.
//! 4. `steps`: actions (also as untyped tools), workflows and child runs, recorded values,
//!    sleeps, hooks.
//! 5. `registry`: what a binary offers, and the resources its actions share.
//! 6. `runtime`: driving runs, the executor, the heartbeat; runs child runs for layer 4
//!    through the `ChildRuns` trait of layer 2.
//! 7. `api`: [`Engine`], the worker loop, resuming hooks, views.

mod api;
mod base;
mod call;
mod registry;
mod run;
mod runtime;
mod steps;

pub use api::{
    credentials::{CredentialView, SetCredential},
    engine::{Engine, EngineBuilder, Execution, RunDetail, StartOptions, Started},
    schedules::{BackfillRun, ScheduleDetail, ScheduleStarted},
    view::{HookView, RunDetailView, RunView, StepView, parse_timestamp, timestamp},
    webhooks::{Delivered, WebhookError},
};
pub use base::{
    clock::{Clock, ManualClock, SystemClock},
    config::{EngineConfig, MAX_IDEMPOTENCY_KEY_LEN, MAX_STEP_KEY_LEN},
    credential::{Credential, CredentialError, Field, ResolvedCredential, Scope},
    entropy::{Entropy, OsEntropy, SeededEntropy},
    error::{ActionError, EngineError, ErrorClass, StepError, WorkflowError},
    info::{ActionInfo, WorkflowInfo},
    oauth::{OAUTH_ENV_PREFIX, OAuth, OAuthError},
    panics::panic_is_caught,
    schema::{Payload, Violation, Violations, validate_payload},
    trigger::{ScheduleStart, Trigger},
    vault::{KeySource, MASTER_KEY_VAR, MasterKey, Secret, VaultError},
};
pub use cairn_core::{RetryPolicy as Retry, StepKind};
pub use cairn_store::{DELIVERIES_KEPT, WebhookDelivery};
pub use cairn_triggers::{
    CatchUp, Headers, Overlap, Schedule, ScheduleError, TransformError, VerifyError, WebhookRequest,
};
pub use call::StepCall;
pub use oauth2::url::Url;
pub use registry::Registry;
pub use run::{
    action_ctx::ActionCtx,
    body::WorkflowCtx,
    env::{ActionOverride, RunEvent},
};
pub use steps::{
    action::{Action, ActionBuilder},
    hook::{Hook, HookOptions},
    poll::{Poll, PollSource, PollingSource, StartFrom},
    poll_ctx::{PollCtx, PollError, Polled},
    sleep::SleepFor,
    tool::Tool,
    webhook::{
        GitHubSignature, HmacHeader, SlackSignature, StandardWebhooks, StripeSignature, Verifier,
        Webhook, WebhookSource,
    },
    workflow::{Workflow, WorkflowBuilder},
};
pub use tokio_util::sync::CancellationToken;
