//! A backend checked against the memory store, one generated sequence of operations at a
//! time ([`check_against_the_memory_store`]); behind the `model` feature.
//!
//! `proptest-state-machine` generates sequences of run operations (creates with and without
//! idempotency keys, parents and ending histories; claims; fenced appends of steps, hooks and
//! ends; parks, also with a stale `known_seq` or on a child; lease renewals and releases;
//! cancels, retries, hook resumes and time-outs; the clock moving past leases; and a
//! **reopen**, which drops the backend's store and opens it again on the same data). Each
//! operation runs on the backend and on [`MemoryStore`], the reference: both must answer
//! alike (the same value or the same contract error), and afterwards every run must read
//! alike (its record, its whole log, its hooks), as must `next_ready_at` and the listing.
//! A failing sequence is shrunk to a short one and printed.
//!
//! The reference is the memory store because it is the contract's plainest implementation
//! and passes the same conformance suite; what this adds to that suite is sequences nobody
//! wrote by hand and the reopen between any two of them (what a backend keeps in memory,
//! such as SQLite's run cache, must agree with what it wrote).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt::Debug,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use cairn_core::{ErrorInfo, ErrorKind, Event, StepKey, StepKind};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use serde_json::json;

use crate::{
    ClaimOutcome, HookFilter, Lease, MemoryStore, NewRun, Park, RunFilter, RunId, Store,
    StoreError, WorkerId,
};

use super::support::{T0, completed, started};

mod ops;

use ops::Ops;
pub use ops::{Op, Who};

/// The one workflow every generated run belongs to.
const WORKFLOW: &str = "model";

/// The lease length the operations take.
const LEASE_MS: i64 = 30_000;

/// The sequences' seed unless `CAIRN_MODEL_SEED` (hex) names another: fixed, so a run of the
/// check is repeatable and its coverage floor (every kind of operation taken) cannot flake.
const DEFAULT_SEED: u64 = 0xca1e_5eed;

/// A backend the model check opens, and opens again on the same data.
pub trait ModelBackend {
    /// Where a store's data lives between openings (a temporary directory, a PostgreSQL
    /// schema); dropped after the sequence.
    type Home;

    /// A fresh, empty home.
    fn home(&self) -> Self::Home;

    /// Opens a store on `home`: once at the start and again after every reopen, when the
    /// previous store has been dropped.
    fn open<'a>(
        &'a self,
        home: &'a Self::Home,
    ) -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + 'a>>;
}

/// Runs `cases` generated sequences of up to `max_ops` operations on `backend` and on the
/// memory store, panicking with the shrunk sequence when they disagree. The sequences come
/// from a seeded generator (printed; `CAIRN_MODEL_SEED` chooses another).
pub fn check_against_the_memory_store<B: ModelBackend>(backend: &B, cases: u32, max_ops: usize) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let seed = std::env::var("CAIRN_MODEL_SEED")
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("model check seed=0x{seed:x} (set CAIRN_MODEL_SEED=0x… to try others)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = Ops::sequential_strategy(1..max_ops);
    let tally = Tally::default();
    let result = runner.run(&strategy, |((), ops, mut seen)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut pair = Pair::open(backend, &tally).await;
            for op in ops {
                if let Some(seen) = seen.as_mut() {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                pair.apply(&op).await;
                pair.compare(&op).await;
            }
        });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("the backend and the memory store disagree: {failure}");
    }
    // A check whose operations were all refused would compare nothing but errors: every kind
    // must have been taken at least once (and refused at least once, where it can be).
    let counts = tally.into_inner();
    eprintln!("operations (taken, refused) over {cases} sequences: {counts:?}");
    for (name, (taken, _)) in &counts {
        assert!(
            *taken > 0,
            "no {name} was ever taken: the sequences test little"
        );
    }
    assert!(
        counts.len() >= 13,
        "every kind of operation ran: {counts:?}"
    );
}

/// The backend's store and the reference, with what the operations refer to.
struct Pair<'a, B: ModelBackend> {
    backend: &'a B,
    /// Dropped before `home`.
    store: Arc<dyn Store>,
    home: B::Home,
    model: MemoryStore,
    runs: Vec<RunId>,
    hooks: Vec<String>,
    now: i64,
    tally: &'a Tally,
}

impl<'a, B: ModelBackend> Pair<'a, B> {
    async fn open(backend: &'a B, tally: &'a Tally) -> Self {
        let home = backend.home();
        let store = backend.open(&home).await;
        Pair {
            backend,
            home,
            store,
            model: MemoryStore::new(),
            runs: Vec::new(),
            hooks: Vec::new(),
            now: T0,
            tally,
        }
    }

    fn run(&self, n: usize) -> Option<RunId> {
        (!self.runs.is_empty()).then(|| self.runs[n % self.runs.len()])
    }

    /// The worker `who` names for run `id`.
    async fn worker(&self, id: RunId, who: Who) -> WorkerId {
        match who {
            Who::Worker(n) => worker_id(n),
            Who::Holder => {
                let run = self.model.get_run(id).await.expect("the model's run");
                run.and_then(|run| run.lease_owner)
                    .unwrap_or_else(|| worker_id(0))
            }
        }
    }

    fn lease(&self, worker: u8) -> Lease {
        Lease {
            worker: worker_id(worker),
            expires_at_ms: self.now + LEASE_MS,
        }
    }

    /// Runs `op` on both stores and checks they answered alike.
    async fn apply(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Create {
                key,
                parent,
                leased_to,
                ends,
            } => {
                let run = NewRun {
                    id: RunId::new(),
                    workflow: WORKFLOW.to_owned(),
                    input: json!({"n": self.runs.len()}),
                    idempotency_key: key.map(|key| format!("key-{key}")),
                    parent_run_id: parent.and_then(|parent| self.run(parent)),
                    forked_from: None,
                    trigger: "api".to_owned(),
                    owner: Default::default(),
                    history: if ends {
                        vec![Event::RunCompleted {
                            output: json!("at once"),
                        }]
                    } else {
                        Vec::new()
                    },
                    lease: leased_to.map(|worker| self.lease(worker)),
                    now_ms: now,
                };
                let outcome = same(
                    self.tally,
                    op,
                    self.model.create_run(run.clone()).await,
                    self.store.create_run(run).await,
                );
                if let Some(outcome) = outcome
                    && outcome.created
                {
                    self.runs.push(outcome.run_id);
                }
            }
            Op::Claim { run, worker } => {
                let Some(id) = self.run(run) else { return };
                let lease = self.lease(worker);
                let model = self.model.claim_run(id, &lease, now).await.map(claimed);
                let store = self.store.claim_run(id, &lease, now).await.map(claimed);
                same(self.tally, op, model, store);
            }
            Op::ClaimReady { worker, limit } => {
                let lease = self.lease(worker);
                let workflows = [WORKFLOW.to_owned()];
                let ids = |runs: Vec<crate::ClaimedRun>| -> Vec<RunId> {
                    runs.into_iter().map(|claimed| claimed.run.run_id).collect()
                };
                let model = self
                    .model
                    .claim_ready(&workflows, &lease, now, limit)
                    .await
                    .map(ids);
                let store = self
                    .store
                    .claim_ready(&workflows, &lease, now, limit)
                    .await
                    .map(ids);
                same(self.tally, op, model, store);
            }
            Op::Step { run, worker, n } => {
                let events = [started("act", n), completed("act", n, json!({"n": n}))];
                self.append(op, run, worker, &events).await;
            }
            Op::Hook {
                run,
                worker,
                timeout,
            } => {
                let token = format!("token-{}", self.hooks.len());
                let event = Event::HookCreated {
                    call: None,
                    key: StepKey::numbered(cairn_core::HOOK_SLUG, self.hooks.len() as u32),
                    token: token.clone(),
                    schema: json!({"type": "object"}),
                    timeout_at_ms: timeout.then_some(now + 20_000),
                };
                if self.append(op, run, worker, &[event]).await {
                    self.hooks.push(token);
                }
            }
            Op::End {
                run,
                worker,
                failed,
            } => {
                let event = if failed {
                    Event::RunFailed {
                        error: ErrorInfo::new(ErrorKind::Action, "it failed"),
                    }
                } else {
                    Event::RunCompleted {
                        output: json!("done"),
                    }
                };
                self.append(op, run, worker, &[event]).await;
            }
            Op::Park {
                run,
                worker,
                waiting,
                wake_in_ms,
                stale,
                child,
            } => {
                let Some(id) = self.run(run) else { return };
                let known = self.model.events(id).await.expect("the model's log").len() as u64;
                let park = Park {
                    status: if waiting {
                        cairn_core::RunStatus::Waiting
                    } else {
                        cairn_core::RunStatus::Sleeping
                    },
                    wake_at_ms: now + wake_in_ms,
                    known_seq: if stale {
                        known.saturating_sub(1)
                    } else {
                        known
                    },
                    child: child
                        .and_then(|child| self.run(child))
                        .filter(|child| *child != id),
                };
                let worker = self.worker(id, worker).await;
                let model = self.model.park_run(id, &worker, park, now).await;
                let store = self.store.park_run(id, &worker, park, now).await;
                same(self.tally, op, model, store);
            }
            Op::Renew { run, worker } => {
                let Some(id) = self.run(run) else { return };
                let lease = Lease {
                    worker: self.worker(id, worker).await,
                    expires_at_ms: now + LEASE_MS,
                };
                same(
                    self.tally,
                    op,
                    self.model.renew_lease(id, &lease).await,
                    self.store.renew_lease(id, &lease).await,
                );
            }
            Op::Release {
                run,
                worker,
                ready_in_ms,
            } => {
                let Some(id) = self.run(run) else { return };
                let worker = self.worker(id, worker).await;
                let model = self
                    .model
                    .release_lease(id, &worker, now + ready_in_ms)
                    .await;
                let store = self
                    .store
                    .release_lease(id, &worker, now + ready_in_ms)
                    .await;
                same(self.tally, op, model, store);
            }
            Op::Cancel { run } => {
                let Some(id) = self.run(run) else { return };
                same(
                    self.tally,
                    op,
                    self.model.cancel_run(id, "stop", now).await,
                    self.store.cancel_run(id, "stop", now).await,
                );
            }
            Op::Retry { run } => {
                let Some(id) = self.run(run) else { return };
                same(
                    self.tally,
                    op,
                    self.model.retry_run(id, now).await,
                    self.store.retry_run(id, now).await,
                );
            }
            Op::Resume { hook } => {
                let Some(token) = self.hook(hook) else { return };
                let payload = json!({"hook": hook});
                let model = self.model.resume_hook(&token, payload.clone(), now).await;
                let store = self.store.resume_hook(&token, payload, now).await;
                same(self.tally, op, model, store);
            }
            Op::TimeOut { hook, worker } => {
                let Some(token) = self.hook(hook) else { return };
                let stored = self
                    .model
                    .get_hook(&token)
                    .await
                    .expect("a hook")
                    .expect("stored");
                let key = stored.step_key;
                let timed_out = Event::StepFailed {
                    call: None,
                    key,
                    kind: StepKind::Hook,
                    slug: cairn_core::HOOK_SLUG.to_owned(),
                    error: ErrorInfo::new(ErrorKind::Timeout, "no answer"),
                    attempts: 1,
                };
                let worker = self.worker(stored.run_id, worker).await;
                let model = self
                    .model
                    .time_out_hook(&token, &worker, timed_out.clone(), now)
                    .await;
                let store = self
                    .store
                    .time_out_hook(&token, &worker, timed_out, now)
                    .await;
                same(self.tally, op, model, store);
            }
            Op::Advance { ms } => self.now += ms,
            Op::Reopen => {
                let dropped = std::mem::replace(&mut self.store, Arc::new(MemoryStore::new()));
                drop(dropped);
                self.store = self.backend.open(&self.home).await;
            }
        }
    }

    fn hook(&self, n: usize) -> Option<String> {
        (!self.hooks.is_empty()).then(|| self.hooks[n % self.hooks.len()].clone())
    }

    /// Appends `events` to run number `run` on both; whether they were appended.
    async fn append(&self, op: &Op, run: usize, worker: Who, events: &[Event]) -> bool {
        let Some(id) = self.run(run) else {
            return false;
        };
        let worker = self.worker(id, worker).await;
        let model = self.model.append(id, &worker, events, self.now).await;
        let store = self.store.append(id, &worker, events, self.now).await;
        same(self.tally, op, model, store).is_some()
    }

    /// Checks that every run, its log and hooks, the next wake-up and the listing read alike.
    async fn compare(&self, op: &Op) {
        // `$read` on the model and on the backend, whose answers must be equal.
        macro_rules! agree {
            ($what:expr, |$store:ident| $read:expr) => {{
                let model = {
                    let $store: &dyn Store = &self.model;
                    $read.await.expect("the model reads")
                };
                let $store: &dyn Store = &*self.store;
                let backend = $read.await.expect("the backend reads");
                assert_eq!(backend, model, "after {op:?}: {} differs", $what);
                model
            }};
        }
        for id in &self.runs {
            agree!(format!("run {id}"), |store| store.get_run(*id));
            agree!(format!("run {id}'s log"), |store| store.events(*id));
            let filter = HookFilter {
                run_id: Some(*id),
                state: None,
                limit: 100,
            };
            agree!(format!("run {id}'s hooks"), |store| store
                .list_hooks(&filter));
        }
        let workflows = [WORKFLOW.to_owned()];
        agree!("next_ready_at", |store| store.next_ready_at(&workflows));
        let all = RunFilter {
            limit: 1_000,
            ..RunFilter::default()
        };
        let ids = |runs: Vec<crate::RunRecord>| -> Vec<RunId> {
            runs.into_iter().map(|run| run.run_id).collect()
        };
        let listed = agree!("the listing", |store| async {
            store.list_runs(&all).await.map(ids)
        });
        let summarized: Vec<RunId> = self
            .store
            .list_run_summaries(&all)
            .await
            .expect("the backend's summaries")
            .iter()
            .map(|run| run.run_id)
            .collect();
        assert_eq!(summarized, listed, "after {op:?}: the summaries differ");
    }
}

fn worker_id(n: u8) -> WorkerId {
    WorkerId(format!("worker-{n}").into())
}

/// A claim's outcome as compared: what it says, with the claimed run and its log.
fn claimed(outcome: ClaimOutcome) -> String {
    match outcome {
        ClaimOutcome::Claimed(claimed) => {
            format!("Claimed({:?}, {:?})", claimed.run, claimed.events)
        }
        other => format!("{other:?}"),
    }
}

/// Checks that the backend answered as the model did and counts the operation's kind as
/// taken or refused; returns the answer when it was a value. An `Unavailable` or `Corrupt`
/// error is a failure of its own: the model never gives one.
fn same<T: Debug>(
    tally: &Tally,
    op: &Op,
    model: Result<T, StoreError>,
    store: Result<T, StoreError>,
) -> Option<T> {
    if let Err(
        err @ (StoreError::Unavailable(_) | StoreError::MaybeCommitted(_) | StoreError::Corrupt(_)),
    ) = &store
    {
        panic!("{op:?}: the backend failed: {err}");
    }
    assert_eq!(
        format!("{store:?}"),
        format!("{model:?}"),
        "{op:?}: the backend answered differently from the model"
    );
    let name = format!("{op:?}");
    let name = name.split([' ', '{']).next().unwrap_or_default().to_owned();
    let mut counts = tally.borrow_mut();
    let entry = counts.entry(name).or_default();
    if model.is_ok() {
        entry.0 += 1;
    } else {
        entry.1 += 1;
    }
    model.ok()
}

/// Per kind of operation: how many were taken, how many refused (by both stores alike).
type Tally = RefCell<BTreeMap<String, (usize, usize)>>;
