//! The writer's memory of the runs it is writing: what the fencing check and the next
//! append need (status, lease owner, last `seq`, row), so the hot path — an append right
//! after the same run's previous append — skips the point read of `runs` it would
//! otherwise make (measured: a sixth of the writer thread's instructions).
//!
//! The invariant: an entry equals its run's row in the writer's transaction. It holds
//! because
//! - only creates and appends fill or update entries, and only after their SQL succeeded;
//!   every other command forgets the run it names (a hook's token names no run up front,
//!   so those forget every run) before it runs;
//! - a batch that breaks is rolled back whole, and then every entry is forgotten;
//! - another connection, in this process or another, can change rows only between the
//!   writer's transactions; each transaction starts by reading `PRAGMA data_version`,
//!   which changes exactly when another connection committed, and forgets every entry if
//!   it did.
//!
//! Forgetting is always safe: a missing entry is read from the table.

use std::collections::HashMap;

use cairn_store::RunId;

use crate::{
    codec::{Effect, PreparedEvents},
    held::{Hot, Sql},
    ops::RunState,
};

/// Most runs remembered; at the limit the cache starts over. A live run costs one entry
/// until it ends, parks or loses its lease, so this is far above any worker's concurrency.
pub(crate) const RUN_CACHE_CAPACITY: usize = 16_384;

/// The writer's remembered runs (see the module docs).
#[derive(Default)]
pub(crate) struct RunCache {
    runs: HashMap<RunId, RunState>,
    /// `PRAGMA data_version` as of the writer's current transaction; `None` until read.
    data_version: Option<i64>,
}

impl RunCache {
    /// At the start of a write transaction: forgets every run if another connection has
    /// committed since the last transaction (or if that cannot be told).
    pub(crate) fn revalidate(&mut self, conn: &Sql<'_>) {
        let version = conn.query_row(Hot::DataVersion, [], |row| row.get::<_, i64>(0));
        match version {
            Ok(version) if self.data_version == Some(version) => {}
            Ok(version) => {
                self.runs.clear();
                self.data_version = Some(version);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read PRAGMA data_version; the run cache starts over");
                self.runs.clear();
                self.data_version = None;
            }
        }
    }

    /// Takes run `id`'s entry out, if there is one: the caller puts it back with
    /// [`keep`](Self::keep) or [`keep_after`](Self::keep_after) once it knows the row.
    pub(crate) fn take(&mut self, id: RunId) -> Option<RunState> {
        self.runs.remove(&id)
    }

    /// Remembers `state` as run `id`'s row.
    pub(crate) fn keep(&mut self, id: RunId, state: RunState) {
        if self.runs.len() >= RUN_CACHE_CAPACITY && !self.runs.contains_key(&id) {
            self.runs.clear();
        }
        self.runs.insert(id, state);
    }

    /// Remembers run `id`'s row as `state` became once `events` were written after it
    /// (forgetting it if they ended or requeued the run: its lease is gone).
    pub(crate) fn keep_after(&mut self, id: RunId, mut state: RunState, events: &PreparedEvents) {
        state.last_seq += events.count;
        for effect in &events.effects {
            match effect {
                Effect::None => {}
                Effect::Status(status) => state.status = *status,
                Effect::RegisterHook { .. } => state.may_have_hooks = true,
                Effect::End { .. } | Effect::Requeue => return,
            }
        }
        self.keep(id, state);
    }

    /// Forgets run `id`: a command is about to change its row.
    pub(crate) fn forget(&mut self, id: RunId) {
        self.runs.remove(&id);
    }

    /// Forgets every run: the transaction was rolled back, or a command is about to change
    /// a run it does not name.
    pub(crate) fn forget_all(&mut self) {
        self.runs.clear();
    }

    /// How many runs are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
#[path = "run_cache_tests.rs"]
mod tests;
