//! What the LLM tests share: an engine on a real SQLite file with a master key and a manual
//! clock, the providers' base URLs pointed at a local mock server, keys stored as
//! credentials, and a run driven to its end with the clock moved to each scheduled retry.

#![allow(dead_code)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_core::{Event, Holder, RunStatus, Scope, StepSummary};
use cairn_engine::{
    Clock, Engine, EngineConfig, KeySource, ManualClock, MasterKey, Payload, Registry, RunDetail,
    Secret, SetCredential, StartOptions, Workflow,
};
use cairn_llm::LlmConfig;
use cairn_store::RunId;
use cairn_store_sqlite::SqliteStore;
use tempfile::TempDir;
use wiremock::MockServer;

/// The OpenAI key the tests store: it must appear in requests and nowhere in the store.
pub const OPENAI_KEY: &str = "sk-test-openai-5ecret";
/// The Anthropic key the tests store.
pub const ANTHROPIC_KEY: &str = "sk-ant-test-5ecret";

/// The time the manual clock starts at (2026-01-01).
const START_MS: i64 = 1_767_225_600_000;
/// How long a test waits for a run at most.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// An engine whose model calls go to `server`, and what it needs kept alive.
pub struct Env {
    /// The engine.
    pub engine: Engine,
    /// Its clock, moved only to scheduled retries.
    pub clock: Arc<ManualClock>,
    /// The SQLite store's directory.
    dir: TempDir,
}

/// An engine with `workflow` and the `llm` action registered, both providers' base URLs at
/// `server` (`/v1`), and both keys stored as the organization's credentials.
pub async fn env<I: Payload, O: Payload>(workflow: &Workflow<I, O>, server: &MockServer) -> Env {
    env_with(workflow, server, |config| config).await
}

/// [`env`] with no credential stored.
pub fn env_without_keys<I: Payload, O: Payload>(
    workflow: &Workflow<I, O>,
    server: &MockServer,
) -> Env {
    env_configured(workflow, server, |config| config)
}

/// [`env`] with the providers' configuration changed by `tweak`.
pub async fn env_with<I: Payload, O: Payload>(
    workflow: &Workflow<I, O>,
    server: &MockServer,
    tweak: impl FnOnce(LlmConfig) -> LlmConfig,
) -> Env {
    let env = env_configured(workflow, server, tweak);
    env.set_credential("openai", OPENAI_KEY).await;
    env.set_credential("anthropic", ANTHROPIC_KEY).await;
    env
}

/// An engine without credentials, its configuration changed by `tweak`.
fn env_configured<I: Payload, O: Payload>(
    workflow: &Workflow<I, O>,
    server: &MockServer,
    tweak: impl FnOnce(LlmConfig) -> LlmConfig,
) -> Env {
    env_registered(workflow, server, tweak, |registry| registry)
}

/// An engine without credentials, its configuration changed by `tweak` and its registry by
/// `register` (more actions, providers of one's own).
pub fn env_registered<I: Payload, O: Payload>(
    workflow: &Workflow<I, O>,
    server: &MockServer,
    tweak: impl FnOnce(LlmConfig) -> LlmConfig,
    register: impl FnOnce(Registry) -> Registry,
) -> Env {
    let base = format!("{}/v1", server.uri());
    let config = LlmConfig::new()
        .and_then(|c| c.openai_base_url(&base))
        .and_then(|c| c.anthropic_base_url(&base))
        .expect("a configuration")
        .request_timeout(Duration::from_secs(5));
    let config = tweak(config);
    let registry =
        register(cairn_llm::register(Registry::new().workflow(workflow))).resource(config);
    let dir = TempDir::new().expect("a temporary directory");
    let store = SqliteStore::open_in_dir(dir.path()).expect("open the store");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = Engine::builder(Arc::new(store), registry)
        .master_key(KeySource::Key(MasterKey::generate()))
        .clock(clock.clone())
        .config(EngineConfig {
            poll_interval: Duration::from_millis(20),
            ..EngineConfig::default()
        })
        .build()
        .expect("a valid registry");
    Env { engine, clock, dir }
}

impl Env {
    /// Stores the organization's default credential `key` with `apiKey`.
    pub async fn set_credential(&self, key: &str, api_key: &str) {
        let organization = Holder {
            scope: Scope::Organization,
            org: "default".into(),
            project: None,
            user: None,
        };
        self.set_credential_of(key, organization, "apiKey", api_key)
            .await;
    }

    /// Stores `holder`'s default credential `key` with one field.
    pub async fn set_credential_of(&self, key: &str, holder: Holder, field: &str, value: &str) {
        self.engine
            .set_credential(SetCredential {
                key: key.to_owned(),
                holder,
                fields: [(field.to_owned(), Secret::new(value))].into(),
                is_default: true,
                id: None,
                expires_at_ms: None,
            })
            .await
            .expect("set the credential");
    }

    /// Starts a run of `workflow` and executes it to its end.
    pub async fn run<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: &I,
    ) -> RunDetail {
        self.run_with(workflow, input, StartOptions::default())
            .await
    }

    /// [`run`](Env::run) with `options` (an owner, …).
    pub async fn run_with<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: &I,
        options: StartOptions,
    ) -> RunDetail {
        let started = self
            .engine
            .start(workflow, input, options)
            .await
            .expect("start the run");
        self.execute(started.run_id).await
    }

    /// Executes run `id` to its end, moving the clock to each retry it schedules.
    pub async fn execute(&self, id: RunId) -> RunDetail {
        let engine = self.engine.clone();
        let execution = tokio::spawn(async move { engine.execute(id).await });
        let deadline = Instant::now() + RUN_DEADLINE;
        while !execution.is_finished() {
            assert!(Instant::now() < deadline, "run {id} did not end in time");
            if let Some(retry_at_ms) = self.next_retry(id).await {
                self.clock.advance_to(retry_at_ms);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let run = execution.await.expect("the task").expect("execute");
        assert!(
            matches!(run.status, RunStatus::Succeeded | RunStatus::Failed),
            "{:?}",
            run.status
        );
        self.engine.get_run(id).await.expect("the run")
    }

    /// The latest retry the run scheduled, if it is still ahead.
    async fn next_retry(&self, id: RunId) -> Option<i64> {
        let detail = self.engine.get_run(id).await.ok()?;
        let now = self.clock.now_ms();
        detail
            .events
            .iter()
            .rev()
            .find_map(|record| match record.event {
                Event::StepAttemptFailed { retry_at_ms, .. } => Some(retry_at_ms),
                _ => None,
            })
            .filter(|at| *at > now)
    }
}

/// The run's steps, `(key, kind)`.
pub fn keys(detail: &RunDetail) -> Vec<(String, String)> {
    detail
        .steps
        .iter()
        .map(|s: &StepSummary| (s.key.to_string(), s.kind.to_string()))
        .collect()
}

impl Env {
    /// Asserts no byte of the store's files (the database, its WAL) holds either key in the
    /// clear, and no event or step of `detail` does.
    pub fn assert_no_key_stored(&self, detail: &RunDetail) {
        let mut scanned = 0;
        for entry in std::fs::read_dir(self.dir.path()).expect("the store's directory") {
            let path = entry.expect("an entry").path();
            let bytes = std::fs::read(&path).expect("a store file");
            scanned += bytes.len();
            for key in [OPENAI_KEY, ANTHROPIC_KEY] {
                let found = bytes.windows(key.len()).any(|w| w == key.as_bytes());
                assert!(!found, "a key is in {}", path.display());
            }
        }
        assert!(scanned > 0, "the store's files were not found");
        assert_no_key_in(detail);
    }
}

/// Asserts no event or step of the run holds either key.
fn assert_no_key_in(detail: &RunDetail) {
    let events = serde_json::to_string(&detail.events).expect("events as JSON");
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!events.contains(key), "a key is in the run's events");
    }
    let summary = format!("{:?}", detail.steps);
    assert!(!summary.contains(OPENAI_KEY) && !summary.contains(ANTHROPIC_KEY));
}
