//! Cairn's PostgreSQL store: several worker processes on several machines share one database.
//!
//! [`PostgresStore`] implements [`cairn_store::Store`] and passes its conformance suite, with
//! the same tables and meaning as the SQLite store.
//!
//! - **Claims** take runs with `SELECT … FOR UPDATE SKIP LOCKED` and mark them leased in the
//!   same statement, so concurrent claimers in any number of processes never share a run.
//! - **Fencing**: every append, park, renewal, release and hook time-out locks the run's row
//!   (`SELECT … FOR UPDATE`) and checks the lease owner and status in the transaction that
//!   writes, so a worker that lost its lease cannot commit anything.
//! - **Group commit, in order**: every write of a store goes through one FIFO queue consumed
//!   by one task, which commits whatever has queued in one transaction on a connection of its
//!   own (one savepoint per command when one of them fails, so it fails alone). Background
//!   appends are therefore ordered before every later write of the process, as the trait
//!   requires, and step completions of many runs share transactions, and one statement: a
//!   batch of step appends is three round trips (`BEGIN`, the statement, the notifications
//!   with `COMMIT`). A batch of one command that is one statement (a step's append, a run's
//!   end, a plain create) runs alone in autocommit, its notifications sent from inside the
//!   statement: one round trip (see `alone`).
//! - **A step's append writes only its `events` rows** (schema v2): a run's last `seq` is
//!   read from `events`, its `RunCreated` is made from its row when read, its `updated_at`
//!   is the later of the row's and its last event's.
//! - **Wake-ups**: transactions that make a run ready send `NOTIFY cairn_ready`;
//!   [`PostgresStore::ready_waiter`] gives idle workers a [`ReadyWaiter`] that wakes on them.
//!   Polling stays the fallback.
//! - **Change watches**: transactions that change runs send `NOTIFY cairn_changes` with the
//!   run ids while some store watches the schema (it holds the schema's watch keys, advisory
//!   locks; decision 0050); [`Store::watch_changes`](cairn_store::Store::watch_changes) hears
//!   this store's commits at once and other processes' through one `LISTEN` connection per
//!   store (`Unknown` after it reconnects, as notifications may have been lost).
//! - **Credentials** (schema v3) are the one write outside the queue: they touch no run, so
//!   each credential write is a transaction of its own on the pool, under a table lock that
//!   makes the credential writes of every process take turns (see `credentials`), so the
//!   default rule's check and a key rotation's check see no concurrent save. A run's owner is
//!   a nullable column, NULL for the default owner.
//! - **Schedules** (schema v4) are written through the queue: a fire takes its schedule's row
//!   `FOR UPDATE SKIP LOCKED` (a row another process holds is that process's fire: this one
//!   is superseded, without waiting), compares the next fire time read, and inserts the
//!   occurrence's runs `ON CONFLICT DO NOTHING` in the same transaction (see `schedules`).
//! - **Webhook deliveries** (schema v5) are logged outside the queue too, each in its own
//!   transaction with the pruning of its endpoint's oldest rows (see `deliveries`).
//! - **Poll sources** (schema v6) likewise: a poll's commit holds its source's row, checks
//!   the lease's owner and fencing token, and inserts its items' keys and runs with the new
//!   cursor in the same transaction (see `polls`).
//! - **Child runs**: a write that may end a child run locks its parent's row first, so a
//!   parent parking while its child ends cannot miss the wake-up (see `lock`).
//! - **Migrations** run on connect, under a transaction-scoped advisory lock, so several
//!   workers may start at once.
//! - **A worker cut off mid-transaction** (a network partition, a frozen process) holds the
//!   rows its transaction locked, and claims skip locked rows: every connection sets
//!   `idle_in_transaction_session_timeout` ([`PostgresOptions::idle_in_transaction_timeout`],
//!   5 s), so the server ends such a transaction and its runs can be taken over once their
//!   leases lapse (decision 0047).
//! - **Plans**: every connection sets `enable_seqscan = off`, so a plan cached while the
//!   tables were small reads by key as they grow (decision 0049), and `jit = off`, so the
//!   scans that setting prices high are not compiled at every execution (decision 0053).
//! - **Transient trouble** (connection refused or reset, the server restarting, deadlocks,
//!   timeouts) is [`Unavailable`](cairn_store::StoreError::Unavailable); the pool reconnects by itself, and a batch whose
//!   connection died before `COMMIT` (or a lone statement the server refused before it
//!   completed) is retried once on a new connection.
//!
//! Payloads are stored as `TEXT` (serde_json's output), so they read back exactly.
//!
//! # Differences from the SQLite store
//!
//! Both pass the same conformance suite; beyond it:
//!
//! - **Dropping** a `SqliteStore` waits for its queued writes. Dropping a [`PostgresStore`]
//!   cannot wait (it would block the async runtime): queued writes still commit in the
//!   background while the runtime runs. Call [`PostgresStore::flush`] before exiting.
//! - **Wake-ups**: only PostgreSQL has [`PostgresStore::ready_waiter`]; with SQLite, idle
//!   workers poll (`next_ready_at`).
//! - **Ambiguous commits**: if the connection dies exactly while `COMMIT` is in flight, or
//!   while a lone statement in autocommit is (without the server's error first), the call
//!   fails with [`MaybeCommitted`](cairn_store::StoreError::MaybeCommitted) (true of any
//!   client/server database); it is never retried by the store. A retried `create_run` is
//!   harmless (same id); the engine never sends such an `append` again (decision 0044).
//! - **Conflicts between processes** (a deadlock between two batches touching the same runs
//!   in opposite orders, `statement_timeout`) fail the command involved with `Unavailable`,
//!   where SQLite's single write lock makes such calls wait (up to its busy timeout).
//! - **One write transaction at a time per store**: the ordering guarantee needs one queue,
//!   so a process's writes are serialised through one connection (and batched); reads use
//!   the pool. Several worker processes write in parallel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_store::StoreError> {
//! use cairn_store::{RunFilter, Store};
//! use cairn_store_postgres::{PostgresOptions, PostgresStore};
//! let options = PostgresOptions {
//!     schema: Some("cairn".into()),
//!     ..PostgresOptions::default()
//! };
//! let store = PostgresStore::connect_with("postgres://cairn@db.internal/cairn", options).await?;
//! let runs = store.list_runs(&RunFilter::default()).await?;
//! # Ok(()) }
//! ```

mod alone;
mod append;
mod batch;
mod codec;
mod credentials;
mod deliveries;
mod end;
mod error;
mod lock;
mod notify;
mod ops;
mod polls;
mod read;
mod schedules;
mod schema;
mod store;
mod waits;
mod writer;

pub use notify::ReadyWaiter;
pub use store::{PostgresOptions, PostgresStore};

// Lets the test helpers shared with `tests/` name this crate the same way in both places.
#[cfg(test)]
extern crate self as cairn_store_postgres;

#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod common;
