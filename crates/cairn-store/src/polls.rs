//! Poll source rows as a store keeps them: the source's cursor (the poll function's own
//! JSON), when it is polled next, its error streak and state, the lease of the poll under
//! way (owner, expiry, fencing token), and the item keys seen in the last seven days.
//!
//! **Exactly once.** [`Store::commit_poll`](crate::Store::commit_poll) records a poll's
//! items, creates the runs of the ones not seen before (each under its idempotency key
//! `poll:{source}:{item key}`, an existing key being no error and no new run) and advances
//! the cursor in one transaction, only if the poll's lease is still the one the source holds
//! (same owner, same fencing token): a poll whose lease lapsed and was taken by another
//! worker writes nothing, so its cursor can never move the source back or start items twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CreateOutcome, NewRun, WorkerId};

/// How long an item key is remembered after it was last seen (7 days): an item polled again
/// within it starts nothing.
pub const ITEM_KEYS_KEPT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Whether a source is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PollState {
    /// Polled when due.
    Active,
    /// Not polled until resumed.
    Paused,
    /// Polled, at the backoff's pace, after several errors in a row; active again after
    /// its next success.
    Failing,
}

impl PollState {
    /// Its name as stored and shown (`active`, `paused`, `failing`).
    pub fn as_str(self) -> &'static str {
        match self {
            PollState::Active => "active",
            PollState::Paused => "paused",
            PollState::Failing => "failing",
        }
    }

    /// The state stored as `name`.
    pub fn parse(name: &str) -> Option<PollState> {
        match name {
            "active" => Some(PollState::Active),
            "paused" => Some(PollState::Paused),
            "failing" => Some(PollState::Failing),
            _ => None,
        }
    }
}

impl std::fmt::Display for PollState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored poll source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollSourceRecord {
    /// Its name (the key of declarations).
    pub name: String,
    /// The workflow its items start.
    pub workflow: String,
    /// Whether it is polled.
    pub state: PollState,
    /// The poll function's cursor, as its last successful poll returned it.
    pub cursor: Option<Value>,
    /// Whether a poll has committed: the first one records its items without starting runs
    /// (unless the source starts from the beginning).
    pub seeded: bool,
    /// When it is polled next (unix ms).
    pub next_poll_at_ms: i64,
    /// Errors since its last successful poll.
    pub consecutive_errors: u32,
    /// The newest of those errors.
    pub last_error: Option<String>,
    /// When its last poll (successful or not) committed (unix ms).
    pub last_polled_at_ms: Option<i64>,
    /// The worker polling it now, if any.
    pub lease_owner: Option<WorkerId>,
    /// When that poll's lease lapses (unix ms).
    pub lease_expires_at_ms: Option<i64>,
    /// Grows by one at every claim: a commit must name the token its claim got.
    pub fencing_token: i64,
    /// When it was first saved (unix ms).
    pub created_at_ms: i64,
    /// When it last changed (unix ms).
    pub updated_at_ms: i64,
}

impl PollSourceRecord {
    /// A new, active, unseeded source of `workflow`, due at `now_ms`.
    pub fn new(name: &str, workflow: &str, now_ms: i64) -> PollSourceRecord {
        PollSourceRecord {
            name: name.to_owned(),
            workflow: workflow.to_owned(),
            state: PollState::Active,
            cursor: None,
            seeded: false,
            next_poll_at_ms: now_ms,
            consecutive_errors: 0,
            last_error: None,
            last_polled_at_ms: None,
            lease_owner: None,
            lease_expires_at_ms: None,
            fencing_token: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// Whether a worker may claim it at `now_ms`: not paused, due, and no live lease.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.state != PollState::Paused
            && self.next_poll_at_ms <= now_ms
            && self.lease_expires_at_ms.is_none_or(|until| until <= now_ms)
    }
}

/// The right to commit one poll of a source, from
/// [`Store::claim_poll_source`](crate::Store::claim_poll_source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollLease {
    /// The source.
    pub source: String,
    /// The worker polling.
    pub worker: WorkerId,
    /// The source's fencing token after this claim.
    pub token: i64,
    /// When the lease lapses (unix ms): another worker may claim the source from then on.
    pub expires_at_ms: i64,
}

/// A claimed source: its row as the claim left it, and the lease to commit with.
#[derive(Clone, Debug, PartialEq)]
pub struct PollClaim {
    /// The source.
    pub source: PollSourceRecord,
    /// The poll's lease.
    pub lease: PollLease,
}

/// A change an operator makes to a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollControl {
    /// Stop polling it.
    Pause,
    /// Poll it again from `next_poll_at_ms` (its error streak forgotten).
    Resume {
        /// When to poll it next (unix ms).
        next_poll_at_ms: i64,
    },
    /// Make it due now (a paused source stays paused).
    PollNow,
}

/// One item a poll returned.
#[derive(Clone, Debug)]
pub struct PollItem {
    /// Its key within the source.
    pub key: String,
    /// The run to start if the key was not seen before (`None`: record the key only, e.g.
    /// while seeding, or when the transform ignored the item).
    pub run: Option<NewRun>,
}

/// What a poll found.
#[derive(Clone, Debug)]
pub enum PollResult {
    /// It succeeded: its items and the new cursor.
    Items {
        /// The items, in the order the poll returned them.
        items: Vec<PollItem>,
        /// The cursor to store.
        cursor: Option<Value>,
    },
    /// It failed: the cursor stays.
    Failed {
        /// What went wrong (no secret).
        error: String,
        /// Errors in a row, this one included.
        consecutive_errors: u32,
        /// `Failing` once the streak is long enough, else `Active` (a paused source stays
        /// paused whatever this says).
        state: PollState,
    },
}

/// One poll's commit, for [`Store::commit_poll`](crate::Store::commit_poll).
#[derive(Clone, Debug)]
pub struct PollCommit {
    /// The lease the poll was made under.
    pub lease: PollLease,
    /// What it found.
    pub result: PollResult,
    /// When to poll next (unix ms).
    pub next_poll_at_ms: i64,
    /// The time of the commit (unix ms).
    pub now_ms: i64,
}

impl PollCommit {
    /// Takes the items' runs out (by the items' positions; none for a failed poll) and
    /// returns them with the cursor to store: what a backend encodes before its transaction.
    pub fn take_runs(&mut self) -> (Vec<Option<NewRun>>, Option<&Value>) {
        match &mut self.result {
            PollResult::Items { items, cursor } => (
                items.iter_mut().map(|item| item.run.take()).collect(),
                cursor.as_ref(),
            ),
            PollResult::Failed { .. } => (Vec::new(), None),
        }
    }
}

/// What [`Store::commit_poll`](crate::Store::commit_poll) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollCommitOutcome {
    /// The poll is recorded; for each item not seen before that had a run, in order, the
    /// run (new, or the one its idempotency key already had).
    Committed {
        /// The runs of the new items.
        runs: Vec<CreateOutcome>,
        /// How many items had been seen before (nothing was started for them).
        seen_before: usize,
    },
    /// The lease is no longer the source's (another worker claimed it after it lapsed, or
    /// this poll was committed already): nothing was written.
    LeaseLost,
}

/// Whether a commit under `lease` may write to `stored`: the same owner and token.
pub fn holds_poll_lease(stored: &PollSourceRecord, lease: &PollLease) -> bool {
    stored.lease_owner.as_ref() == Some(&lease.worker) && stored.fencing_token == lease.token
}

/// The state a commit leaves: a paused source stays paused; a success makes it active; a
/// failure says.
pub fn state_after(stored: PollState, result: &PollResult) -> PollState {
    match (stored, result) {
        (PollState::Paused, _) => PollState::Paused,
        (_, PollResult::Items { .. }) => PollState::Active,
        (_, PollResult::Failed { state, .. }) => *state,
    }
}
