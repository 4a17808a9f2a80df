//! `LISTEN/NOTIFY`: idle workers learn at once that a run became ready (created, released,
//! parked with a wake time, resumed, retried), instead of waiting for their next poll; change
//! watches learn which runs another process changed.
//!
//! Writes send `pg_notify('cairn_ready', '["<schema>","<workflow>"]')` in the transaction
//! that made the run ready, and `pg_notify('cairn_changes', '["<schema>","<instance>",
//! ["<run id>",…]]')` in every transaction that changed runs while some store watches the
//! schema's changes (see below and `writer`), so the notification arrives once the change is
//! visible. Channels are database-wide, so the payload names the schema and each store keeps
//! only its own; a store skips its own changes (named by its instance id), which its writer
//! hands to its watches at once. Per store, one task for ready waiters and one for change
//! watches (each started by the first of its kind) hold a `LISTEN` connection each, from a
//! pool of their own, and fan notifications out.
//!
//! **Change notifications only while watched** (decision 0050). A store with a change watch
//! holds [`watch_slots!`] shared session advisory locks keyed by its schema on its `LISTEN`
//! connection, taken after `LISTEN` and before the watch is handed out. A writer sends its
//! change notifications only if it fails to take one of those keys (at random) exclusively
//! for its transaction ([`unwatched!`]): a key it gets means nobody held it shared, so no
//! watch can miss the change: a watch arriving meanwhile waits for the writer's commit before
//! its first read. A key it fails to get (a watch holds it, or another writer) makes it
//! notify, which is always safe. So a drain that nobody watches sends no change notifications.
//!
//! A notification sent while the listening connection was down is lost. When a task
//! reconnects (listening, then taking its keys again) it wakes every waiter (as if every
//! workflow had work) or tells every change watch `Unknown`; idle workers keep polling
//! `claim_ready`/`next_ready_at` with a timeout.

use std::{collections::HashSet, time::Duration};

use cairn_store::{ChangeWatch, RunId, StoreResult, watch::ChangeHub};
use sqlx::{PgPool, postgres::PgListener};
use tokio::{
    sync::{OnceCell, broadcast},
    task::JoinHandle,
};

use crate::error::sql_error;

/// The name of [`CHANNEL`], for SQL text put together with `concat!`.
macro_rules! ready_channel {
    () => {
        "cairn_ready"
    };
}

/// The name of [`CHANGES_CHANNEL`], for SQL text put together with `concat!`.
macro_rules! changes_channel {
    () => {
        "cairn_changes"
    };
}

/// The first key of the watch locks (`'cwa'` and the slot); the second is a hash of the
/// schema's name, as for the migration lock.
macro_rules! watch_lock_base {
    () => {
        "1668768000"
    };
}

/// SQL: true when no change watch can be listening to schema `$schema` (an SQL text
/// expression): this transaction took one of the schema's watch keys exclusively, and holds
/// it until it ends (see the module docs).
macro_rules! unwatched {
    ($schema:expr) => {
        concat!(
            "pg_try_advisory_xact_lock(",
            $crate::notify::watch_lock_base!(),
            " + floor(random() * ",
            $crate::notify::watch_slots!(),
            ")::int, hashtext(",
            $schema,
            "))"
        )
    };
}

/// How many watch keys each schema has (see the module docs), for SQL text: writers pick one
/// at random, so two writers' transactions rarely want the same.
macro_rules! watch_slots {
    () => {
        "16"
    };
}

/// SQL: the `pg_notify` calls of a statement run alone (see `alone`) announcing that the
/// runs of CTE `$runs` (a column `id`) changed, one notification per run, when a change
/// watch may be listening; none when the schema parameter `$schema` is NULL (in a
/// transaction, which announces at `COMMIT`). The payload is [`changes_payloads`]'s JSON,
/// built by the server.
macro_rules! announce_changed {
    ($runs:literal, $schema:literal, $instance:literal) => {
        concat!(
            "SELECT pg_notify('",
            $crate::notify::changes_channel!(),
            "', json_build_array(",
            $schema,
            "::text, ",
            $instance,
            "::text, json_build_array(",
            $runs,
            ".id))::text) FROM ",
            $runs,
            " WHERE ",
            $schema,
            "::text IS NOT NULL AND NOT ",
            $crate::notify::unwatched!(concat!($schema, "::text"))
        )
    };
}

/// SQL: like [`announce_changed!`], the `pg_notify` calls announcing that the runs of CTE
/// `$runs` (a column `workflow`) became ready; [`payload`]'s JSON, built by the server.
macro_rules! announce_ready {
    ($runs:literal, $schema:literal) => {
        concat!(
            "SELECT pg_notify('",
            $crate::notify::ready_channel!(),
            "', json_build_array(",
            $schema,
            "::text, ",
            $runs,
            ".workflow)::text) FROM ",
            $runs,
            " WHERE ",
            $schema,
            "::text IS NOT NULL"
        )
    };
}

pub(crate) use {
    announce_changed, announce_ready, changes_channel, ready_channel, unwatched, watch_lock_base,
    watch_slots,
};

/// The channel every Cairn store announces ready runs on.
pub(crate) const CHANNEL: &str = ready_channel!();

/// The channel every Cairn store announces changed runs on.
pub(crate) const CHANGES_CHANNEL: &str = changes_channel!();

/// SQL: takes every watch key of schema `$1` shared, for the session, waiting for the
/// writers holding one to end their transactions.
const HOLD_WATCH_KEYS: &str = concat!(
    "SELECT pg_advisory_lock_shared(",
    watch_lock_base!(),
    " + slot, hashtext($1)) FROM generate_series(0, ",
    watch_slots!(),
    " - 1) AS slot"
);

/// Most run ids in one change notification (PostgreSQL refuses payloads of 8000 bytes or
/// more; an id takes 39 with its quotes and comma).
const IDS_PER_NOTIFICATION: usize = 150;

/// How many wake-ups may wait for a slow waiter before it is told it lagged (and wakes).
const FAN_OUT: usize = 1024;

/// Longest pause between attempts to reconnect the listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The payload announcing that a run of `workflow` in `schema` became ready.
pub(crate) fn payload(schema: &str, workflow: &str) -> String {
    serde_json::json!([schema, workflow]).to_string()
}

/// The workflow a payload announces, if it is about `schema`.
fn workflow_of(payload: &str, schema: &str) -> Option<String> {
    let (of, workflow): (String, String) = serde_json::from_str(payload).ok()?;
    (of == schema).then_some(workflow)
}

/// The payloads announcing that `runs` (each once) changed in `schema` by the store
/// `instance`: as few as fit.
pub(crate) fn changes_payloads(schema: &str, instance: &str, runs: &[RunId]) -> Vec<String> {
    let mut runs = runs.to_vec();
    runs.sort_unstable();
    runs.dedup();
    runs.chunks(IDS_PER_NOTIFICATION)
        .map(|chunk| serde_json::json!([schema, instance, chunk]).to_string())
        .collect()
}

/// The runs a change payload announces, if it is about `schema` and from another store
/// than `instance`.
fn changes_of(payload: &str, schema: &str, instance: &str) -> Option<Vec<RunId>> {
    let (of, by, runs): (String, String, Vec<RunId>) = serde_json::from_str(payload).ok()?;
    (of == schema && by != instance).then_some(runs)
}

/// What the listening task tells waiters.
#[derive(Clone, Debug)]
enum Signal {
    /// A run of this workflow became ready.
    Ready(String),
    /// Notifications may have been lost (the connection was re-established): look for work.
    Resync,
}

/// The listening task of one store and the fan-out to its waiters; stops with the store.
pub(crate) struct Listener {
    signals: broadcast::Sender<Signal>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a listening task listens for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Ready runs, for the store's ready waiters.
    Ready,
    /// Other processes' changes, for the store's change watches: it holds the watch keys.
    Changes,
}

/// Where a listening task sends what it hears: this store's schema and instance, its
/// ready waiters or its change watches.
struct Relay {
    kind: Kind,
    schema: String,
    instance: String,
    signals: broadcast::Sender<Signal>,
    changes: ChangeHub,
}

impl Relay {
    fn heard(&self, channel: &str, payload: &str) {
        if channel == CHANGES_CHANNEL {
            if let Some(runs) = changes_of(payload, &self.schema, &self.instance) {
                self.changes.publish(&runs);
            }
        } else if let Some(workflow) = workflow_of(payload, &self.schema) {
            // No waiter right now is fine: a later one starts by looking for work.
            let _ = self.signals.send(Signal::Ready(workflow));
        }
    }

    /// Notifications may have been lost.
    fn resync(&self) {
        match self.kind {
            Kind::Ready => {
                let _ = self.signals.send(Signal::Resync);
            }
            Kind::Changes => self.changes.publish_unknown(),
        }
    }
}

impl Listener {
    /// Connects, `LISTEN`s, and starts the task. Fails (`Unavailable`) if the database cannot
    /// be reached now.
    async fn start(pool: PgPool, relay: Relay) -> StoreResult<Listener> {
        let listener = listen(&pool, relay.kind, &relay.schema)
            .await
            .map_err(sql_error)?;
        let signals = relay.signals.clone();
        let task = tokio::spawn(relay.run(pool, listener));
        Ok(Listener { signals, task })
    }
}

/// A connection listening for `kind`; for changes, holding `schema`'s watch keys, taken
/// after `LISTEN` is on (see the module docs).
async fn listen(pool: &PgPool, kind: Kind, schema: &str) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    match kind {
        Kind::Ready => listener.listen(CHANNEL).await?,
        Kind::Changes => {
            listener.listen(CHANGES_CHANNEL).await?;
            hold_watch_keys(&mut listener, schema).await?;
        }
    }
    Ok(listener)
}

/// Takes `schema`'s watch keys shared for the session of `conn`, which must be listening to
/// [`CHANGES_CHANNEL`] already: from then on, every writer of the schema notifies.
pub(crate) async fn hold_watch_keys<'c, E>(conn: E, schema: &str) -> sqlx::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    sqlx::query(HOLD_WATCH_KEYS)
        .bind(schema)
        .execute(conn)
        .await?;
    Ok(())
}

impl Relay {
    /// Forwards this schema's notifications, reconnecting (with a growing pause) when the
    /// connection fails, and resyncing after every reconnect.
    async fn run(self, pool: PgPool, mut listener: PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    self.heard(notification.channel(), notification.payload());
                }
                // Lost and already re-established, listening again (sqlx reconnects eagerly);
                // the watch keys went with the old session.
                Ok(None) => match self.rehold(&mut listener).await {
                    Ok(()) => self.resync(),
                    Err(error) => listener = self.restart(&pool, listener, error).await,
                },
                Err(error) => listener = self.restart(&pool, listener, error).await,
            }
        }
    }

    /// Takes the watch keys again on a connection sqlx re-established, if this task holds them.
    async fn rehold(&self, listener: &mut PgListener) -> sqlx::Result<()> {
        match self.kind {
            Kind::Ready => Ok(()),
            Kind::Changes => hold_watch_keys(listener, &self.schema).await,
        }
    }

    /// A new listening connection in place of `failed`, after resyncing.
    async fn restart(&self, pool: &PgPool, failed: PgListener, error: sqlx::Error) -> PgListener {
        tracing::warn!(%error, "the LISTEN connection failed; reconnecting");
        // Give the (possibly still checked-out) connection back to the listener's pool
        // first, or the reconnect would wait for it forever.
        drop(failed);
        let listener = self.reconnect(pool).await;
        self.resync();
        listener
    }

    /// A fresh listening connection, retried with a growing pause until the database answers.
    async fn reconnect(&self, pool: &PgPool) -> PgListener {
        let mut pause = Duration::from_millis(50);
        loop {
            match listen(pool, self.kind, &self.schema).await {
                Ok(listener) => return listener,
                Err(error) => {
                    tracing::debug!(%error, ?pause, "cannot LISTEN yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The store's listeners, each started on first use, and its change watches.
pub(crate) struct Notifications {
    /// Where the listeners' connections come from: two at most.
    pool: PgPool,
    schema: String,
    /// This store's id in change notifications, so it skips its own.
    pub(crate) instance: String,
    pub(crate) changes: ChangeHub,
    ready: OnceCell<Listener>,
    watched: OnceCell<Listener>,
}

impl Notifications {
    pub(crate) fn new(pool: PgPool, schema: String) -> Notifications {
        Notifications {
            pool,
            schema,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            changes: ChangeHub::new(),
            ready: OnceCell::new(),
            watched: OnceCell::new(),
        }
    }

    /// The listener of `kind`; starts listening if nobody did yet.
    async fn listener(&self, kind: Kind) -> StoreResult<&Listener> {
        let cell = match kind {
            Kind::Ready => &self.ready,
            Kind::Changes => &self.watched,
        };
        cell.get_or_try_init(|| {
            let relay = Relay {
                kind,
                schema: self.schema.clone(),
                instance: self.instance.clone(),
                signals: broadcast::channel(FAN_OUT).0,
                changes: self.changes.clone(),
            };
            Listener::start(self.pool.clone(), relay)
        })
        .await
    }

    /// A waiter for runs of `workflows`; starts listening if nobody did yet.
    pub(crate) async fn waiter(&self, workflows: &[String]) -> StoreResult<ReadyWaiter> {
        let listener = self.listener(Kind::Ready).await?;
        Ok(ReadyWaiter {
            signals: listener.signals.subscribe(),
            workflows: workflows.iter().cloned().collect(),
        })
    }

    /// A change watch: it hears this store's commits from now on (its writer publishes
    /// them), and other stores' once `LISTEN` is on and the watch keys are held, which they
    /// are before this returns (from then on, until the store closes, every writer of the
    /// schema notifies).
    pub(crate) async fn watch(&self) -> StoreResult<Box<dyn ChangeWatch>> {
        let watch = self.changes.watch();
        self.listener(Kind::Changes).await?;
        Ok(Box::new(watch))
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.changes.close();
    }
}

/// Waits for runs of some workflows to become ready, woken by `NOTIFY`. Made by
/// [`PostgresStore::ready_waiter`](crate::PostgresStore::ready_waiter).
///
/// It hears every notification from the moment it was made, including those that arrive
/// while its owner is busy claiming: make it *before* looking for work, then
/// `claim_ready` → (nothing) → [`wait`](ReadyWaiter::wait) → `claim_ready` …, and no wake-up
/// falls between the look and the wait.
#[derive(Debug)]
pub struct ReadyWaiter {
    signals: broadcast::Receiver<Signal>,
    workflows: HashSet<String>,
}

impl ReadyWaiter {
    /// Waits until a run of one of the waiter's workflows may have become ready since the
    /// waiter was made or last returned `true`, or until `timeout` passes. Returns `true` when
    /// woken (by a notification, or because notifications may have been lost), `false` on
    /// timeout. A wake-up is a hint to look (`claim_ready`), not a promise of work: another
    /// worker may be faster, and a run may have been parked with a later wake-up time.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.woken()).await.is_ok()
    }

    async fn woken(&mut self) {
        loop {
            match self.signals.recv().await {
                Ok(Signal::Ready(workflow)) if !self.workflows.contains(&workflow) => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                // The store is gone: nothing will ever wake this waiter, let the timeout run.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

#[async_trait::async_trait]
impl cairn_store::ReadyWatch for ReadyWaiter {
    async fn wait(&mut self, timeout: Duration) -> bool {
        ReadyWaiter::wait(self, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_payloads_fit_name_each_run_once_and_skip_the_own_store() {
        let runs: Vec<RunId> = (0..400).map(|_| RunId::new()).collect();
        let mut twice = runs.clone();
        twice.extend(&runs);
        let payloads = changes_payloads("cairn_a", "me", &twice);
        assert_eq!(payloads.len(), 3, "400 ids, 150 a notification");
        let mut heard: Vec<RunId> = payloads
            .iter()
            .flat_map(|payload| {
                assert!(payload.len() < 8000, "{} bytes", payload.len());
                changes_of(payload, "cairn_a", "other").expect("about cairn_a")
            })
            .collect();
        heard.sort_unstable();
        let mut expected = runs;
        expected.sort_unstable();
        assert_eq!(heard, expected);
        assert_eq!(changes_of(&payloads[0], "cairn_a", "me"), None, "own");
        assert_eq!(changes_of(&payloads[0], "cairn_b", "other"), None, "schema");
    }

    #[test]
    fn payloads_name_schema_and_workflow_and_are_filtered_by_schema() {
        let text = payload("cairn_a", "signup:v2 \"quoted\"");
        assert_eq!(
            workflow_of(&text, "cairn_a").as_deref(),
            Some("signup:v2 \"quoted\"")
        );
        assert_eq!(workflow_of(&text, "cairn_b"), None);
        assert_eq!(workflow_of("not json", "cairn_a"), None);
    }

    #[tokio::test]
    async fn waiters_wake_for_their_workflows_and_on_resync() {
        let (signals, _) = broadcast::channel(4);
        let mut waiter = ReadyWaiter {
            signals: signals.subscribe(),
            workflows: ["a".to_owned()].into_iter().collect(),
        };
        signals.send(Signal::Ready("b".into())).expect("send");
        signals.send(Signal::Ready("a".into())).expect("send");
        assert!(waiter.wait(Duration::from_secs(10)).await, "a is mine");
        signals.send(Signal::Resync).expect("send");
        assert!(
            waiter.wait(Duration::from_secs(10)).await,
            "resync wakes all"
        );
        signals.send(Signal::Ready("b".into())).expect("send");
        assert!(
            !waiter.wait(Duration::from_millis(1)).await,
            "b is not mine: the wait times out"
        );
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod watch_tests;
