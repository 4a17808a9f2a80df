//! The writer thread's loop: when a batch's transaction opens, commits and is synced.
//!
//! Commits are made durable by a sync thread ([`Syncer`]) that fdatasyncs the WAL, so the
//! next batch's SQL runs during a sync. While that thread is syncing, the writer keeps one
//! transaction open and runs every command that arrives into it; when the sync is done, it
//! commits that transaction and hands it over. So each sync covers exactly one commit, and
//! each page the batch touched goes to the WAL once, however many commands touched it:
//! committing every batch as it filled wrote the same hot pages (the runs table, its
//! indexes' right edges) once per commit, and the sync time grows with the bytes written.
//!
//! When nothing is being synced and nothing is queued behind a batch, the writer commits
//! and syncs it itself: a lone caller's write then costs no thread wake-up. Once idle, the
//! writer polls its queue for a short while ([`Pipeline::idle_spin`]) before it blocks: a
//! lone caller's next write usually comes within it, and a blocked thread must be woken,
//! which on a VM costs tens of microseconds per write (measured: the sequential workflow's
//! p50 fell by about 7%, the median of ten alternating pairs).
//!
//! Every caller is answered only after a sync that followed its commit, exactly as with
//! `synchronous=FULL`, and in commit order.
//!
//! The code here and in [`batch`](crate::batch) is generic over the write connection
//! ([`Database`]), the WAL ([`Wal`]) and the queues ([`Threads`]): the store runs it on
//! SQLite, its file and `std`; the model checks (`pipeline_checks.rs`) run the same code on
//! in-memory fakes and shuttle's queues, under schedules that shuttle chooses.

use std::{
    fs::{File, OpenOptions},
    path::PathBuf,
    sync::mpsc::{SendError, TryRecvError},
    time::{Duration, Instant},
};

use cairn_store::{CommitTimer, StoreResult, watch::ChangeHub};
use tokio::sync::oneshot;

use crate::{
    batch::{Batch, Committed, Database},
    sync::{Failure, Receiver, Sender, Threads},
};

/// What reaches the writer thread: `C` is a caller's write ([`Database::Command`]).
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every message is a command; boxing it would allocate once per write"
)]
pub(crate) enum Message<C> {
    /// A caller's write.
    Command(C),
    /// The sync thread answered this many batches and is free.
    Synced(usize),
    /// Asks for the write connection's `PRAGMA data_version` (see `writer::DataVersions`).
    DataVersion(oneshot::Sender<StoreResult<i64>>),
    /// The store is closing: commit what came before, then stop.
    Stop,
}

/// The file a [`Syncer`] makes commits durable in: the WAL ([`WalFile`]) in the store, a
/// fake that records what is durable in the model checks.
pub(crate) trait Wal: Send + Sized + 'static {
    /// Another handle on the same file (each syncer has its own).
    fn twin(&self) -> Self;

    /// Puts every commit so far on disk (`fdatasync`).
    fn sync(&mut self) -> Result<(), Unsynced>;
}

/// Why a [`Wal::sync`] did not make the commits durable.
#[derive(Debug)]
pub(crate) enum Unsynced {
    /// The file could not be opened to sync it: no writeback was attempted, the pages are
    /// still dirty, and a later sync covers them.
    Unopened(String),
    /// The sync failed: see [`Syncer`] on why that is final.
    Failed(String),
}

/// The WAL file of a database, opened at its first sync (it may not exist before).
pub(crate) struct WalFile {
    path: PathBuf,
    file: Option<File>,
}

impl WalFile {
    /// The WAL at `path`, opened at its first sync.
    pub(crate) fn new(path: PathBuf) -> WalFile {
        WalFile { path, file: None }
    }
}

impl Wal for WalFile {
    fn twin(&self) -> WalFile {
        WalFile::new(self.path.clone())
    }

    fn sync(&mut self) -> Result<(), Unsynced> {
        let file = match &mut self.file {
            Some(file) => file,
            empty => empty.insert(OpenOptions::new().write(true).open(&self.path).map_err(
                |error| {
                    let why = format!("cannot open {} to sync it: {error}", self.path.display());
                    Unsynced::Unopened(why)
                },
            )?),
        };
        file.sync_data().map_err(|error| {
            Unsynced::Failed(format!(
                "syncing {} failed, so commits may not be durable: {error}",
                self.path.display()
            ))
        })
    }
}

/// Makes commits durable before anyone hears of them: fdatasyncs the WAL file after one or
/// more committed batches, then answers their waiters.
///
/// **A failed sync is final.** When `fdatasync` fails, the kernel may have dropped the pages
/// it could not write and marked them clean, so a later sync that succeeds proves nothing
/// about the commits before it, and a WAL with a hole is cut short at the hole when the
/// database is next opened: the batches after it would be lost though acknowledged. So
/// after the first failure no batch is acknowledged again (each is answered `Unavailable`,
/// saying to restart the process), and none is retried, as PostgreSQL panics on a failed
/// `fsync` rather than retry it. Nor is any committed: the writer rolls back every batch from
/// then on ([`Pipeline::close`]), since a write answered `Unavailable` but committed would be
/// written again by its caller's retry (a step recorded twice: decision 0045). Reopening the
/// store recovers the database from its files.
///
/// The write connection runs with `synchronous=NORMAL`, so SQLite does not sync the WAL at
/// `COMMIT` (it still syncs before every checkpoint); a `Syncer` does it instead. Another
/// connection may *read* a commit before it is synced; anything it then writes is synced
/// after it (one WAL file).
pub(crate) struct Syncer<W, T: Threads> {
    wal: W,
    /// The store's change watches, told of each batch once it is synced.
    changes: ChangeHub,
    /// Where each batch's time from `COMMIT` to synced is recorded.
    timer: CommitTimer,
    /// The first failed sync of the WAL, shared by the writer thread's syncer and the sync
    /// thread's ([`Syncer::twin`]).
    failed: T::Failure,
}

impl<W: Wal, T: Threads> Syncer<W, T> {
    /// A syncer of `wal`, telling `changes` of what it synced.
    pub(crate) fn new(wal: W, changes: ChangeHub) -> Syncer<W, T> {
        Syncer {
            wal,
            changes,
            timer: CommitTimer::default(),
            failed: T::Failure::default(),
        }
    }

    /// A syncer of the same WAL, telling the same watches and timer, that shares this one's
    /// failure: once either fails to sync, neither acknowledges anything again.
    pub(crate) fn twin(&self) -> Syncer<W, T> {
        Syncer {
            wal: self.wal.twin(),
            changes: self.changes.clone(),
            timer: self.timer.clone(),
            failed: self.failed.clone(),
        }
    }

    /// The same, recording each batch's commit latency in `timer`.
    pub(crate) fn timed(self, timer: CommitTimer) -> Syncer<W, T> {
        Syncer { timer, ..self }
    }

    /// Whether commit latencies are recorded now (batches then note when they commit).
    pub(crate) fn is_timed(&self) -> bool {
        self.timer.is_observed()
    }

    /// Why nothing may be written any more, once a sync of the WAL has failed (see the
    /// type's docs); `None` until then.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.failed.get().map(|first| {
            format!(
                "an earlier sync of the WAL failed ({first}), so no commit since is known to be \
                 durable and this store takes no more writes: restart the process (reopening \
                 the store recovers the database from its files)"
            )
        })
    }

    fn sync(&mut self) -> Result<(), String> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        self.wal.sync().map_err(|unsynced| match unsynced {
            Unsynced::Unopened(why) => why,
            Unsynced::Failed(why) => {
                // Final (see the type's docs): the first failure is the one kept.
                self.failed.set(why.clone());
                why
            }
        })
    }

    /// Whether anyone watches the store's changes (a batch begun now collects its runs).
    fn watching(&self) -> bool {
        self.changes.watching()
    }

    /// Syncs once for `group` (unless every batch in it was rolled back) and answers it.
    pub(crate) fn settle(&mut self, group: Vec<Committed>) {
        let needs_sync = group.iter().any(|batch| !batch.is_broken());
        let failure = if needs_sync { self.sync().err() } else { None };
        if let Some(failure) = &failure {
            tracing::error!(%failure, "the WAL could not be synced");
        }
        for batch in group {
            if failure.is_none()
                && let Some(began) = batch.began()
            {
                self.timer.record_since(began);
            }
            batch.answer(failure.as_deref(), &self.changes);
        }
    }

    /// The sync thread: answers committed batches as they come, one sync for everything
    /// queued, and tells the writer thread each time it is free.
    pub(crate) fn run<C: Send + 'static>(
        mut self,
        committed: &T::Receiver<Committed>,
        free: &T::Sender<Message<C>>,
    ) {
        while let Ok(first) = committed.recv() {
            let mut group = vec![first];
            group.extend(committed.try_iter());
            let settled = group.len();
            self.settle(group);
            // Fails only once the writer thread has stopped, and then nobody needs to know.
            let _ = free.send(Message::Synced(settled));
        }
    }
}

/// The writer thread's state: its connection, the transaction it is filling, and how many
/// committed batches the sync thread holds.
pub(crate) struct Pipeline<D: Database, T: Threads> {
    /// The write connection.
    db: D,
    /// The transaction commands go into, if one is open.
    open: Option<Batch>,
    /// Most commands in one transaction.
    max_batch: usize,
    /// How long an idle writer polls its queue before it blocks.
    idle_spin: Duration,
    /// The writer thread's own handle on the WAL, for syncing in place.
    in_place: Syncer<D::Wal, T>,
    to_syncer: T::Sender<Committed>,
    /// Batches handed to the sync thread and not answered yet.
    handed: usize,
}

/// The writer's limits (see [`SqliteOptions`](crate::SqliteOptions)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PipelineLimits {
    /// Most commands in one transaction.
    pub(crate) max_batch: usize,
    /// How long an idle writer polls its queue before it blocks.
    pub(crate) idle_spin: Duration,
}

/// What polling a queue found.
#[derive(Debug)]
enum Polled<T> {
    /// The next message.
    Message(T),
    /// Every sender is gone.
    Closed,
    /// The window passed with the queue empty.
    Nothing,
}

/// Polls `queue` until a message comes, it closes, or `window` has passed (at least once,
/// even for a zero window), without blocking. A zero window, the busy writer's, reads no
/// clock: a clock read costs about as much as the poll.
fn poll_for<M>(queue: &impl Receiver<M>, window: Duration) -> Polled<M> {
    let start = (!window.is_zero()).then(Instant::now);
    loop {
        match queue.try_recv() {
            Ok(message) => return Polled::Message(message),
            Err(TryRecvError::Disconnected) => return Polled::Closed,
            Err(TryRecvError::Empty) => match start {
                Some(start) if start.elapsed() < window => std::hint::spin_loop(),
                _ => return Polled::Nothing,
            },
        }
    }
}

/// Whether the loop goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl<D: Database, T: Threads> Pipeline<D, T> {
    /// A writer thread's state over `db`, handing batches to the sync thread on `to_syncer`.
    pub(crate) fn new(
        db: D,
        limits: PipelineLimits,
        in_place: Syncer<D::Wal, T>,
        to_syncer: T::Sender<Committed>,
    ) -> Pipeline<D, T> {
        Pipeline {
            db,
            open: None,
            max_batch: limits.max_batch.max(1),
            idle_spin: limits.idle_spin,
            in_place,
            to_syncer,
            handed: 0,
        }
    }

    /// The loop: take every queued message, then settle the open batch if the sync thread
    /// is free; wait for the next message. Ends on [`Message::Stop`] or a closed queue.
    pub(crate) fn run(mut self, messages: &T::Receiver<Message<D::Command>>) {
        let mut next = None;
        'messages: while let Some(first) = next.take().or_else(|| self.wait(messages)) {
            if self.take(first) == Flow::Stop {
                break;
            }
            while let Ok(message) = messages.try_recv() {
                if self.take(message) == Flow::Stop {
                    break 'messages;
                }
            }
            next = self.settle_if_free(|| messages.try_recv().ok());
        }
        self.finish();
    }

    /// The next message: polled for up to [`spin_window`](Self::spin_window), then waited
    /// for. `None` once the queue is closed.
    fn wait(&self, messages: &T::Receiver<Message<D::Command>>) -> Option<Message<D::Command>> {
        match poll_for(messages, self.spin_window()) {
            Polled::Message(message) => Some(message),
            Polled::Closed => None,
            Polled::Nothing => messages.recv().ok(),
        }
    }

    /// How long to poll the queue before blocking: [`idle_spin`](Pipeline::idle_spin) when
    /// the writer is idle (nothing open, nothing being synced), so a lone caller's next write
    /// finds it awake; zero when busy, where the cores are better left to the callers (the
    /// message it waits for, a sync's end or more work, takes longer anyway).
    fn spin_window(&self) -> Duration {
        if self.open.is_none() && self.handed == 0 {
            self.idle_spin
        } else {
            Duration::ZERO
        }
    }

    /// Takes one message: runs a command in the open transaction (opening one, or handing
    /// over a full one first; rolling it back at once if the command broke it), or notes
    /// that the sync thread is free.
    fn take(&mut self, message: Message<D::Command>) -> Flow {
        match message {
            Message::Command(command) => {
                if self
                    .open
                    .as_ref()
                    .is_some_and(|open| open.len() >= self.max_batch)
                {
                    self.commit_and_hand_over();
                }
                let db = &mut self.db;
                let watching = self.in_place.watching();
                let open = self.open.get_or_insert_with(|| Batch::begin(db, watching));
                open.execute(db, command);
                if open.is_broken() {
                    self.roll_back_broken();
                }
                Flow::Continue
            }
            Message::Synced(settled) => {
                debug_assert!(
                    settled <= self.handed,
                    "more batches synced than handed over"
                );
                self.handed = self.handed.saturating_sub(settled);
                Flow::Continue
            }
            Message::DataVersion(reply) => {
                let version = self.db.data_version();
                // The asker may have given up: nothing to do then.
                let _ = reply.send(version);
                Flow::Continue
            }
            Message::Stop => Flow::Stop,
        }
    }

    /// Once the queue is empty: if the sync thread is free, commits the open transaction and
    /// hands it over when `next` finds work behind it, else syncs and answers it here.
    /// Returns the message `next` found. While a sync is under way, the transaction stays
    /// open for what comes next.
    fn settle_if_free(
        &mut self,
        next: impl FnOnce() -> Option<Message<D::Command>>,
    ) -> Option<Message<D::Command>> {
        if self.handed > 0 {
            return None;
        }
        let open = self.open.take()?;
        let committed = self.close(open);
        let next = next();
        if next.is_some() {
            self.hand_over(committed);
        } else {
            self.in_place.settle(vec![committed]);
        }
        next
    }

    /// Ends a transaction that broke (it could not begin, or an SQL failure rolled it back)
    /// and answers its commands with why at once: nothing of it was written, so there is
    /// nothing to sync and nobody waits for the next command or a sync, and the next command
    /// gets a fresh transaction instead of joining a broken one.
    fn roll_back_broken(&mut self) {
        if let Some(open) = self.open.take() {
            let committed = open.commit(&mut self.db, self.in_place.is_timed());
            committed.answer(None, &self.in_place.changes);
        }
    }

    fn commit_and_hand_over(&mut self) {
        if let Some(open) = self.open.take() {
            let committed = self.close(open);
            self.hand_over(committed);
        }
    }

    /// Ends the transaction `open`: commits it, or rolls it back once a sync of the WAL has
    /// failed. Its waiters are then answered `Unavailable` and nothing of it is written:
    /// they retry writes so answered, and a committed one would be written twice.
    fn close(&mut self, mut open: Batch) -> Committed {
        if let Some(refusal) = self.in_place.refusal() {
            open.refuse(refusal);
        }
        open.commit(&mut self.db, self.in_place.is_timed())
    }

    fn hand_over(&mut self, committed: Committed) {
        match self.to_syncer.send(committed) {
            Ok(()) => self.handed += 1,
            Err(SendError(committed)) => {
                let why = "the SQLite sync thread has stopped; reopen the store";
                committed.answer(Some(why), &self.in_place.changes);
            }
        }
    }

    /// Commits what is open and has it answered.
    fn finish(mut self) {
        if let Some(open) = self.open.take() {
            let committed = self.close(open);
            if self.handed == 0 {
                self.in_place.settle(vec![committed]);
            } else {
                self.hand_over(committed);
            }
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pipeline_checks.rs"]
mod checks;
