//! A batch: the commands run in one write transaction, and their waiters' answers until the
//! commit is on disk. What it asks of the write connection is the [`Database`] trait: SQLite
//! in the store (`writer::WriteConnection`), an in-memory fake in the model checks
//! (`pipeline_checks.rs`), so that those checks run this file's answering rules as the
//! store does.

use std::time::Instant;

use cairn_store::{StoreResult, watch::ChangeHub};

use crate::{ops::Changed, pipeline::Wal};

/// Answers one command once its batch committed (`None`) or failed (`Some(why)`).
pub(crate) type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// What a batch asks of the write connection: the statements that open and end its
/// transaction, and the commands run inside it.
pub(crate) trait Database {
    /// A caller's write.
    type Command: Send + 'static;
    /// The file its commits are made durable in.
    type Wal: Wal;

    /// Opens a transaction (`BEGIN IMMEDIATE`), or says why it could not.
    fn begin(&mut self) -> Result<(), String>;

    /// Runs `command` in the open transaction, noting in `changed` the runs it changed: not
    /// at all once the batch is `broken`, and a failure that rolls the transaction back
    /// breaks it. The answer waits for the commit.
    fn execute(
        &mut self,
        command: Self::Command,
        broken: &mut Option<String>,
        changed: &mut Changed,
    ) -> Answer;

    /// Ends a batch: commits its transaction, or rolls it back if `broken` (a commit that
    /// fails breaks it). `began` is false when the transaction could not begin.
    fn end(&mut self, began: bool, broken: &mut Option<String>);

    /// The connection's `PRAGMA data_version` (see `watch::DataVersions`).
    fn data_version(&mut self) -> StoreResult<i64>;
}

/// A batch run in one transaction: its waiters' answers, why it failed, if it did, and the
/// runs it changed. The answers go out once the commit is on disk (see
/// [`Syncer`](crate::pipeline::Syncer)).
pub(crate) struct Committed {
    answers: Vec<Answer>,
    broken: Option<String>,
    changed: Changed,
    /// When its `COMMIT` began, if the store's commits are timed.
    began: Option<Instant>,
}

impl Committed {
    /// Whether the batch was rolled back, so there is nothing of it to sync.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// When its `COMMIT` began, if the store's commits are timed.
    pub(crate) fn began(&self) -> Option<Instant> {
        self.began
    }

    /// How many commands the batch held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
    }

    /// Tells the change watches of `changes` what the batch changed (unless it was rolled
    /// back), then answers every waiter: the batch's own failure, else `sync_failure`, else
    /// success. Watches made after the batch began collecting nothing hear `Unknown`.
    pub(crate) fn answer(self, sync_failure: Option<&str>, changes: &ChangeHub) {
        if self.broken.is_none() && changes.watching() {
            if self.changed.watching {
                changes.publish(&self.changed.runs);
            } else {
                changes.publish_unknown();
            }
        }
        let why = self.broken.as_deref().or(sync_failure);
        for answer in self.answers {
            answer(why);
        }
    }
}

/// A write transaction being filled with commands, one savepoint (or none) each.
pub(crate) struct Batch {
    answers: Vec<Answer>,
    broken: Option<String>,
    began: bool,
    changed: Changed,
}

impl Batch {
    /// Opens the transaction; if that fails, every command added is answered with why. It
    /// collects the runs it changes if `watching`.
    pub(crate) fn begin(db: &mut impl Database, watching: bool) -> Batch {
        let broken = db.begin().err();
        Batch {
            answers: Vec::new(),
            began: broken.is_none(),
            broken,
            changed: Changed::new(watching),
        }
    }

    /// How many commands the transaction holds.
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether it broke: it could not begin, or a failure rolled it back (or will).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Breaks the transaction for `why` (unless it broke already): it is rolled back, not
    /// committed, and every command in it is answered with why.
    pub(crate) fn refuse(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }

    /// Runs `command` in the transaction; its answer waits for the commit.
    pub(crate) fn execute<D: Database>(&mut self, db: &mut D, command: D::Command) {
        let answer = db.execute(command, &mut self.broken, &mut self.changed);
        self.answers.push(answer);
    }

    /// Commits the transaction (or rolls it back if it broke), without waiting for the disk.
    pub(crate) fn commit(self, db: &mut impl Database, timed: bool) -> Committed {
        let began_commit = (timed && self.began && self.broken.is_none()).then(Instant::now);
        let Batch {
            answers,
            mut broken,
            began,
            changed,
        } = self;
        db.end(began, &mut broken);
        Committed {
            answers,
            broken,
            changed,
            began: began_commit,
        }
    }
}
