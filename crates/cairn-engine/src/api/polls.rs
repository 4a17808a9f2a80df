//! Poll sources from the engine's side: saving the registry's sources when a worker starts,
//! polling the due ones (any worker polls any source it has the function of), and the
//! views and controls the CLI shows (list, poll now, pause, resume).
//!
//! **Exactly once.** A worker claims a due source (a lease with a fencing token), runs its
//! poll function with the stored cursor, and commits with
//! [`Store::commit_poll`](cairn_store::Store::commit_poll): each item not seen before gets
//! its run, inserted under `poll:{source}:{item key}`, in the transaction that records the
//! item keys and stores the new cursor, only if the lease is still the source's. A worker
//! killed between its fetch and its commit wrote nothing: once its lease lapses, the next
//! worker polls from the same cursor and starts the same items, once. The first poll of a
//! source only records what is there (unless it starts from the beginning).

use std::sync::{Arc, OnceLock};

use cairn_core::Scope;
use cairn_store::{
    Lease, PollClaim, PollCommit, PollCommitOutcome, PollControl, PollItem, PollResult,
    PollSourceRecord, PollState,
};
use cairn_triggers::poll::{self as rules, occurrence_key};
use tokio_util::sync::CancellationToken;

use crate::{
    api::engine::{Engine, StartOptions},
    base::{
        config::millis,
        credential::NeededCredential,
        entropy::EntropyExt,
        error::EngineError,
        panics::{Caught, panic_message},
    },
    call::credentials::{CredentialPin, resolve},
    steps::{
        poll::{Fetched, Poll, StartFrom},
        poll_ctx::{PollCtx, PollError},
    },
};

/// Most due sources one call of [`Engine::poll_due_sources`] claims.
const DUE_PER_CALL: usize = 100;

/// The HTTP client every poll of the process shares (rustls on ring).
fn http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // Another part of the process may have installed a provider already: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .build()
                .expect("an HTTP client with rustls on ring builds")
        })
        .clone()
}

impl Engine {
    /// Saves every poll source of the registry by name (a new one is due at once; a stored
    /// one keeps its cursor, state and item keys). Workers call it when they start.
    pub async fn declare_poll_sources(&self) -> Result<Vec<PollSourceRecord>, EngineError> {
        let env = &self.runtime.env;
        let mut saved = Vec::new();
        for poll in self.runtime.registry.poll_sources() {
            let record = PollSourceRecord::new(&poll.name, &poll.slug, env.clock.now_ms());
            saved.push(env.store.declare_poll_source(record).await?);
        }
        Ok(saved)
    }

    /// Polls every due source this engine has the function of (up to 100 a call), each
    /// under its lease, concurrently, and commits what each found (see the module docs).
    /// The worker loop calls it once per poll interval. Returns how many runs it created.
    pub async fn poll_due_sources(&self) -> Result<usize, EngineError> {
        if !self.has_poll_sources() {
            return Ok(0);
        }
        let env = &self.runtime.env;
        let now_ms = env.clock.now_ms();
        let mut claims = Vec::new();
        for due in env.store.due_poll_sources(now_ms, DUE_PER_CALL).await? {
            let Some(poll) = self.runtime.registry.poll_source(&due.name) else {
                continue;
            };
            let lease = Lease {
                worker: env.worker.clone(),
                expires_at_ms: now_ms
                    .saturating_add(millis(poll.timeout))
                    .saturating_add(env.config.lease_ttl_ms()),
            };
            if let Some(claim) = env
                .store
                .claim_poll_source(&due.name, &lease, now_ms)
                .await?
            {
                claims.push((poll, claim));
            }
        }
        let polled = futures::future::join_all(
            claims
                .into_iter()
                .map(|(poll, claim)| self.poll_one(poll, claim)),
        )
        .await;
        let mut created = 0;
        for result in polled {
            created += result?;
        }
        if created > 0 {
            self.runtime.new_work.notify_waiters();
        }
        Ok(created)
    }

    /// Whether the registry has poll sources (a worker without any reads nothing for them).
    pub(crate) fn has_poll_sources(&self) -> bool {
        self.runtime.registry.poll_sources().next().is_some()
    }

    /// Runs one claimed poll and commits it; returns how many runs it created.
    async fn poll_one(&self, poll: &Poll, claim: PollClaim) -> Result<usize, EngineError> {
        let env = &self.runtime.env;
        let PollClaim { source, lease } = claim;
        let fetched = self.fetch(poll, &source).await;
        if env.stopping.is_cancelled() {
            // Not an error of the source's: nothing is written, the lease lapses, and the
            // next worker polls it from the same cursor.
            return Ok(0);
        }
        let now_ms = env.clock.now_ms();
        let seeding = !source.seeded && poll.start_from == StartFrom::Now;
        let (result, next_poll_at_ms) = match fetched.and_then(|f| self.items(poll, f, seeding)) {
            Ok((items, cursor)) => (
                PollResult::Items { items, cursor },
                rules::next_after_success(source.next_poll_at_ms, poll.interval, now_ms),
            ),
            Err(error) => {
                let errors = source.consecutive_errors.saturating_add(1);
                let wait = rules::backoff(poll.interval, errors, env.entropy.unit(), error.wait());
                tracing::warn!(source = %poll.name, errors, error = %error, "poll failed; backing off");
                let state = if rules::is_failing(errors) {
                    PollState::Failing
                } else {
                    PollState::Active
                };
                let result = PollResult::Failed {
                    error: error.message().to_owned(),
                    consecutive_errors: errors,
                    state,
                };
                (result, now_ms.saturating_add(millis(wait)))
            }
        };
        let commit = PollCommit {
            lease,
            result,
            next_poll_at_ms,
            now_ms,
        };
        Ok(match env.store.commit_poll(commit).await? {
            PollCommitOutcome::Committed { runs, seen_before } => {
                let created = runs.iter().filter(|run| run.created).count();
                tracing::info!(source = %poll.name, created, seen_before, "polled");
                created
            }
            PollCommitOutcome::LeaseLost => {
                tracing::warn!(source = %poll.name, "the poll's lease was taken over; its result is dropped");
                0
            }
        })
    }

    /// Runs the poll function (with the source's credentials) until it answers or times out;
    /// a panic in it is an error of the poll.
    async fn fetch(&self, poll: &Poll, source: &PollSourceRecord) -> Result<Fetched, PollError> {
        let env = &self.runtime.env;
        let owner = poll.owner.clone().unwrap_or_default();
        let needs: Vec<NeededCredential> = poll
            .credentials
            .iter()
            .map(|credential| NeededCredential {
                credential: credential.clone(),
                scopes: vec![Scope::Project, Scope::Organization],
                optional: false,
            })
            .collect();
        let resolved = resolve(env, &needs, &owner, &CredentialPin::default())
            .await
            .map_err(PollError::from)?;
        let cancel = CancellationToken::new();
        let ctx = PollCtx {
            source: poll.name.clone(),
            http: http_client(),
            resources: env.resources.clone(),
            credentials: Arc::from(resolved.credentials),
            now_ms: env.clock.now_ms(),
            cancel: cancel.clone(),
        };
        let stopping = env.stopping.clone();
        tokio::select! {
            biased;
            fetched = Caught::new((poll.fetch)(ctx, source.cursor.clone())) => {
                fetched.unwrap_or_else(|payload| Err(PollError::new(format!(
                    "the poll function panicked: {}",
                    panic_message(&*payload)
                ))))
            }
            () = env.clock.sleep(poll.timeout) => {
                cancel.cancel();
                Err(PollError::new(format!(
                    "the poll took longer than its timeout of {} s",
                    poll.timeout.as_secs_f64()
                )))
            }
            () = stopping.cancelled() => {
                cancel.cancel();
                Err(PollError::new("the worker stopped during the poll"))
            }
        }
    }

    /// The items to commit: each item's run (its input checked against the workflow), or
    /// none while seeding or when the transform skipped it. A transform or input error
    /// fails the whole poll, so no item is passed over.
    fn items(
        &self,
        poll: &Poll,
        fetched: Fetched,
        seeding: bool,
    ) -> Result<(Vec<PollItem>, Option<serde_json::Value>), PollError> {
        let mut items = Vec::with_capacity(fetched.items.len());
        for item in fetched.items {
            let key = rules::item_key(&item.key);
            let input = item.input.map_err(|err| {
                PollError::new(format!("the transform refused item {key:?}: {err}"))
            })?;
            let run = match input {
                Some(input) if !seeding => {
                    let occurrence = occurrence_key(&poll.name, &item.key);
                    let options = StartOptions {
                        idempotency_key: Some(occurrence.clone()),
                        trigger: Some(occurrence),
                        execute_here: false,
                        owner: poll.owner.clone(),
                    };
                    Some(
                        self.new_run(&poll.slug, input, &options)
                            .map_err(|err| PollError::new(format!("item {key:?}: {err}")))?,
                    )
                }
                _ => None,
            };
            items.push(PollItem { key, run });
        }
        Ok((items, fetched.cursor))
    }

    /// Every stored poll source, by name.
    pub async fn list_poll_sources(&self) -> Result<Vec<PollSourceRecord>, EngineError> {
        Ok(self.runtime.env.store.list_poll_sources().await?)
    }

    /// Makes a source due now: the next worker poll takes it.
    pub async fn poll_source_now(&self, name: &str) -> Result<PollSourceRecord, EngineError> {
        self.control_poll_source(name, PollControl::PollNow).await
    }

    /// Pauses a source: it is not polled until resumed.
    pub async fn pause_poll_source(&self, name: &str) -> Result<PollSourceRecord, EngineError> {
        self.control_poll_source(name, PollControl::Pause).await
    }

    /// Resumes a source (its error streak forgotten), due now.
    pub async fn resume_poll_source(&self, name: &str) -> Result<PollSourceRecord, EngineError> {
        let now_ms = self.runtime.env.clock.now_ms();
        self.control_poll_source(
            name,
            PollControl::Resume {
                next_poll_at_ms: now_ms,
            },
        )
        .await
    }

    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
    ) -> Result<PollSourceRecord, EngineError> {
        let env = &self.runtime.env;
        Ok(env
            .store
            .control_poll_source(name, control, env.clock.now_ms())
            .await?)
    }
}
