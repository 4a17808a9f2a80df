//! One batch of the write queue in one transaction, on the writer's own connection, in as
//! few round trips as the protocol allows (see `writer` for the queue and its guarantees); a
//! batch of one command that is one statement runs alone in autocommit instead (`alone`).
//!
//! **Round trips.** `BEGIN` (one), the commands' statements, then the notifications and
//! `COMMIT` together in one simple query (one): a step's append, the common command, is one
//! statement, so a batch of appends costs three round trips whatever their number
//! (consecutive appends of different runs share one statement, steps and runs' common ends
//! alike, see `append`; a child's end adds one). The connection is the writer's own, kept
//! between batches: no pool, so no liveness ping before each batch (a dead connection fails
//! at `BEGIN`, before anything was sent that could commit, and the batch runs again on a new
//! one).
//!
//! **Failures.** A batch first runs without savepoints. If a command fails, the transaction
//! is rolled back and the batch runs again with one savepoint per command, so the failing
//! command fails alone; nothing was answered in between. A refused step append wrote
//! nothing (its statement decides the refusal before inserting), so it needs no rerun.

use std::time::Instant;

use cairn_store::{CommitTimer, StoreError, StoreResult, watch::ChangeHub};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, postgres::PgConnectOptions};

use crate::{
    alone,
    append::{Appended, StepAppend, append_steps},
    error::{Error, Result},
    notify::{CHANGES_CHANNEL, CHANNEL, changes_payloads, payload, unwatched},
    writer::{Notes, Op, Output},
};

/// How many times a command is run again when another process appended to its run between
/// its statement's snapshot and its row lock (see `Error::is_seq_race`).
pub(crate) const SEQ_RACE_RETRIES: usize = 5;

/// How one try at a batch ended.
pub(crate) enum Attempt {
    /// Committed (or, for a lone failed command, rolled back): one result per command.
    Done(Vec<StoreResult<Output>>),
    /// A command failed in a batch without savepoints; the batch was rolled back.
    CommandFailed,
    /// The transaction itself failed. `committed_maybe` when it was `COMMIT` that failed.
    Broken { error: Error, committed_maybe: bool },
}

/// The writer's own connection, kept between batches, and when it last answered.
#[derive(Default)]
pub(crate) struct Link {
    conn: Option<PgConnection>,
    answered: Option<Instant>,
}

impl Link {
    /// A link starting with `conn`, not known to be alive.
    #[cfg(test)]
    pub(crate) fn adopt(conn: Option<PgConnection>) -> Link {
        Link {
            conn,
            answered: None,
        }
    }

    /// A link starting with `conn`, which answered just now: taken out of the store's pool,
    /// which pings a connection before handing it out (sqlx's `test_before_acquire`, left on).
    pub(crate) fn pinged(conn: Option<PgConnection>) -> Link {
        Link {
            answered: conn.as_ref().map(|_| Instant::now()),
            conn,
        }
    }

    /// Whether a lone command may run alone on this link: its connection is yet to be made,
    /// or answered recently (see `alone`).
    fn fresh(&self) -> bool {
        self.conn.is_none()
            || self
                .answered
                .is_some_and(|at| at.elapsed() < alone::RECENTLY)
    }

    /// The connection, made now if there is none.
    async fn live(&mut self, connect: &PgConnectOptions) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let conn = connect.connect().await?;
            self.answered = Some(Instant::now());
            return Ok(self.conn.insert(conn));
        }
        Ok(self.conn.as_mut().expect("checked above"))
    }
}

/// The writer's connection and what a batch needs to send its wake-ups and changes.
pub(crate) struct Batch<'a> {
    /// How to (re)connect.
    pub(crate) connect: &'a PgConnectOptions,
    pub(crate) schema: &'a str,
    /// This store's id in change notifications.
    pub(crate) instance: &'a str,
    /// This store's change watches.
    pub(crate) changes: &'a ChangeHub,
    /// Where each `COMMIT`'s round trip is recorded.
    pub(crate) timer: &'a CommitTimer,
}

/// Why a whole batch failed.
#[derive(Debug)]
pub(crate) struct BatchFailed {
    /// What went wrong.
    pub(crate) why: String,
    /// Whether its transaction (or lone statement) may have committed nonetheless.
    pub(crate) maybe_committed: bool,
}

impl BatchFailed {
    /// The answer of each of the batch's commands: `MaybeCommitted` if the batch may have
    /// committed, else `Unavailable`.
    pub(crate) fn error(&self) -> StoreError {
        if self.maybe_committed {
            StoreError::MaybeCommitted(self.why.clone())
        } else {
            StoreError::Unavailable(self.why.clone())
        }
    }
}

impl Batch<'_> {
    /// Runs `ops` in one transaction on `link` (connecting if it has no connection), or a
    /// lone command that is one statement alone (see `alone`), retrying as the module docs
    /// describe. `Err` says why the whole batch failed, and so every command (see
    /// [`BatchFailed::error`]). A connection that failed is dropped.
    pub(crate) async fn run(
        &self,
        link: &mut Link,
        ops: &[&Op],
    ) -> std::result::Result<Vec<StoreResult<Output>>, BatchFailed> {
        if ops.iter().all(|op| op.is_flush()) {
            return Ok(ops.iter().map(|_| Ok(().into())).collect());
        }
        let mut savepoints = false;
        let mut reconnected = false;
        loop {
            let fresh = link.fresh();
            let attempt = match link.live(self.connect).await {
                Err(error) => Attempt::Broken {
                    error,
                    committed_maybe: false,
                },
                Ok(conn) => match ops {
                    [op] if fresh && !savepoints && alone::is_one_statement(op) => {
                        self.alone(conn, op).await
                    }
                    _ => self.attempt(conn, ops, savepoints).await,
                },
            };
            match &attempt {
                Attempt::Broken { .. } => link.conn = None,
                _ => link.answered = Some(Instant::now()),
            }
            match attempt {
                Attempt::Done(results) => return Ok(results),
                Attempt::CommandFailed => savepoints = true,
                Attempt::Broken {
                    error,
                    committed_maybe: false,
                } if !reconnected && error.is_connection_lost() => {
                    tracing::info!(%error, "the write connection was lost; retrying the batch on a new one");
                    reconnected = true;
                }
                Attempt::Broken {
                    error,
                    committed_maybe,
                } => {
                    let error = match StoreError::from(error) {
                        StoreError::Unavailable(why) | StoreError::Corrupt(why) => why,
                        other => other.to_string(),
                    };
                    return Err(if committed_maybe {
                        BatchFailed {
                            why: error,
                            maybe_committed: true,
                        }
                    } else {
                        BatchFailed {
                            why: format!("the write was not committed: {error}"),
                            maybe_committed: false,
                        }
                    });
                }
            }
        }
    }

    async fn attempt(&self, conn: &mut PgConnection, ops: &[&Op], savepoints: bool) -> Attempt {
        let broken = |error: Error| Attempt::Broken {
            error,
            committed_maybe: false,
        };
        if let Err(error) = sqlx::raw_sql("BEGIN").execute(&mut *conn).await {
            return broken(error.into());
        }
        let mut results = Vec::with_capacity(ops.len());
        let mut notes = Notes::default();
        let mut steps: Vec<(&Op, StepAppend<'_>)> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            if !savepoints && let Some(step) = StepAppend::gathered(op) {
                // Appends of different runs gather into one statement, run before the next
                // command that is not one (or a second append of a run already gathered).
                if !steps.iter().any(|(_, gathered)| gathered.id == step.id) {
                    steps.push((op, step));
                    if ops.get(index + 1).is_some_and(|next| {
                        StepAppend::gathered(next).is_some_and(|next| {
                            !steps.iter().any(|(_, gathered)| gathered.id == next.id)
                        })
                    }) {
                        continue;
                    }
                    let gathered = std::mem::take(&mut steps);
                    if let Err(error) = gather(conn, gathered, &mut results, &mut notes).await {
                        return self.failed(conn, ops, error).await;
                    }
                    continue;
                }
            }
            let mut noted = Notes::default();
            let result = if savepoints {
                match in_savepoint(conn, op, &mut noted).await {
                    Ok(result) => result,
                    Err(error) => return broken(error),
                }
            } else {
                op.run(conn, &mut noted, None).await
            };
            match result {
                Ok(output) => {
                    notes.extend(noted);
                    results.push(Ok(output));
                }
                Err(error) if savepoints && !error.is_connection_lost() => {
                    results.push(Err(error.into()))
                }
                Err(error) => return self.failed(conn, ops, error).await,
            }
        }
        if ops.len() == 1 && !savepoints && results.iter().any(|result| result.is_err()) {
            // A refused lone command: nothing to keep (and usually nothing written).
            return match rollback(conn).await {
                Ok(()) => Attempt::Done(results),
                Err(error) => broken(error),
            };
        }
        let commit = commit_sql(self.schema, self.instance, &notes);
        let began = Instant::now();
        match sqlx::raw_sql(AssertSqlSafe(commit))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {
                self.timer.record_since(began);
                self.changes.publish(&notes.runs);
                Attempt::Done(results)
            }
            Err(error) => {
                self.changes.publish_unknown();
                Attempt::Broken {
                    error: error.into(),
                    committed_maybe: true,
                }
            }
        }
    }

    /// A command failed without savepoints: a lone command's contract refusal is its answer;
    /// anything else rolls the batch back to be run again with savepoints (or breaks it).
    async fn failed(&self, conn: &mut PgConnection, ops: &[&Op], error: Error) -> Attempt {
        if error.is_connection_lost() {
            return Attempt::Broken {
                error,
                committed_maybe: false,
            };
        }
        if let Err(rolled) = rollback(conn).await {
            return Attempt::Broken {
                error: rolled,
                committed_maybe: false,
            };
        }
        if ops.len() == 1 && !error.is_seq_race() {
            Attempt::Done(vec![Err(error.into())])
        } else {
            Attempt::CommandFailed
        }
    }
}

/// The notifications of `notes` and `COMMIT`, as one simple query (one round trip). The
/// payloads are JSON (schema names, workflow names, run ids) written as escape-string
/// literals, which read the same whatever `standard_conforming_strings` is.
pub(crate) fn commit_sql(schema: &str, instance: &str, notes: &Notes) -> String {
    let mut sql = String::new();
    let mut notify = |channel: &str, payload: &str, condition: &str| {
        let text = payload.replace('\\', "\\\\").replace('\'', "''");
        sql.push_str(&format!(
            "SELECT pg_notify('{channel}', E'{text}'){condition}; "
        ));
    };
    for workflow in &notes.workflows {
        notify(CHANNEL, &payload(schema, workflow), "");
    }
    // A checked schema name needs no escaping (see `schema::check_schema_name`).
    let watched = format!(" WHERE NOT {}", unwatched!("'$'").replace('$', schema));
    for changes in changes_payloads(schema, instance, &notes.runs) {
        notify(CHANGES_CHANNEL, &changes, &watched);
    }
    sql.push_str("COMMIT");
    sql
}

/// Runs gathered appends (`append`) in one statement, then each child's end it deferred,
/// pushing their answers to `results` in order.
async fn gather(
    conn: &mut PgConnection,
    gathered: Vec<(&Op, StepAppend<'_>)>,
    results: &mut Vec<StoreResult<Output>>,
    notes: &mut Notes,
) -> Result<()> {
    let (ops, steps): (Vec<&Op>, Vec<StepAppend<'_>>) = gathered.into_iter().unzip();
    let outcomes = append_steps(conn, &steps, notes, None).await?;
    for (op, outcome) in ops.into_iter().zip(outcomes) {
        results.push(match outcome {
            Appended::Done(outcome) => outcome.map(Into::into),
            Appended::Deferred => Ok(op.run(conn, notes, None).await?),
        });
    }
    Ok(())
}

async fn rollback(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("ROLLBACK").execute(conn).await?;
    Ok(())
}

/// Runs `op` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint if it fails
/// (and running it again if it lost a race for its run's next `seq`). The outer error means
/// the savepoint machinery itself failed: the transaction is broken.
async fn in_savepoint(
    conn: &mut PgConnection,
    op: &Op,
    notes: &mut Notes,
) -> Result<Result<Output>> {
    let mut races = 0;
    loop {
        sqlx::raw_sql("SAVEPOINT command")
            .execute(&mut *conn)
            .await?;
        let mut noted = Notes::default();
        let result = op.run(conn, &mut noted, None).await;
        match result {
            Ok(output) => {
                sqlx::raw_sql("RELEASE command").execute(&mut *conn).await?;
                notes.extend(noted);
                return Ok(Ok(output));
            }
            Err(error) if error.is_connection_lost() => return Err(error),
            Err(error) => {
                sqlx::raw_sql("ROLLBACK TO command; RELEASE command")
                    .execute(&mut *conn)
                    .await?;
                if error.is_seq_race() && races < SEQ_RACE_RETRIES {
                    races += 1;
                    continue;
                }
                return Ok(Err(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_and_commit_go_in_one_query_with_escaped_payloads() {
        let mut notes = Notes::default();
        notes.ready("it's a \\ test");
        let sql = commit_sql("cairn_a", "me", &notes);
        assert_eq!(
            sql,
            "SELECT pg_notify('cairn_ready', E'[\"cairn_a\",\"it''s a \\\\\\\\ test\"]'); COMMIT"
        );
        assert_eq!(commit_sql("cairn_a", "me", &Notes::default()), "COMMIT");
    }
}
