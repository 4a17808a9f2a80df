//! A batch of one command that is one statement (a step's append, a run's common end, a
//! plain create) runs alone, in autocommit: no `BEGIN`, no `COMMIT`, its notifications sent
//! by `pg_notify` calls inside the statement, conditional on what it wrote. One round trip per
//! commit instead of three (see `batch` for the transaction every other batch takes).
//!
//! **Refusals** write nothing: each statement decides the fence before it inserts, and a
//! refused command neither writes nor announces anything.
//!
//! **Failures.** A statement that failed with the server's own error before it completed did
//! not commit: a lost `seq` race (see `append`) runs it again, a lost connection (the server
//! said it is terminating the session) runs it again on a new connection, anything else is the
//! command's answer. A statement whose answer broke off otherwise (the connection failed,
//! or failed after the server said the statement completed, when the implicit transaction
//! commits) may or may not have committed: it is never run again here, and its caller gets
//! `MaybeCommitted`, as for a `COMMIT` that failed ([`Error::Unsure`]).
//!
//! **A connection idle for a while** (more than [`RECENTLY`]) may have died meanwhile (a
//! server restart, an idle timeout), and a statement sent on it would be answered by a
//! broken connection, which is ambiguous. So a batch on such a connection takes the
//! transaction, whose `BEGIN` finds a dead connection before anything that could commit was
//! sent; busy writers, whose connection answered moments ago, run alone.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::{Either, Execute, Executor, PgConnection, Postgres, postgres::PgRow};

use crate::{
    append::StepAppend,
    batch::{Attempt, Batch, SEQ_RACE_RETRIES},
    end,
    error::{Error, Result},
    ops,
    writer::{Notes, Op},
};

/// How recently the writer's connection must have answered for a lone command to run alone.
pub(crate) const RECENTLY: Duration = Duration::from_secs(1);

/// What a statement run alone announces itself with: this store's schema and instance (see
/// `notify`). A statement given none (`None`) is part of a transaction, which announces at
/// `COMMIT`.
pub(crate) struct Announce<'a> {
    pub(crate) schema: &'a str,
    pub(crate) instance: &'a str,
}

/// Whether `op` is one statement, so that alone it may run in autocommit.
pub(crate) fn is_one_statement(op: &Op) -> bool {
    match op {
        Op::CreateRun(run) => ops::is_plain(run),
        Op::Append { events, .. } => StepAppend::of(op).is_some() || end::is_end(events),
        _ => false,
    }
}

/// Runs `query` and returns its rows. A failure is [`Error::Sql`] when the server answered
/// with an error before the statement completed (it did not commit), else [`Error::Unsure`].
pub(crate) async fn fetch_rows<'q, E>(conn: &mut PgConnection, query: E) -> Result<Vec<PgRow>>
where
    E: 'q + Execute<'q, Postgres>,
{
    let mut rows = Vec::new();
    let mut completed = false;
    let mut answers = conn.fetch_many(query);
    loop {
        match answers.try_next().await {
            Ok(Some(Either::Left(_))) => completed = true,
            Ok(Some(Either::Right(row))) => rows.push(row),
            Ok(None) => return Ok(rows),
            Err(error @ sqlx::Error::Database(_)) if !completed => return Err(error.into()),
            Err(error) => return Err(Error::Unsure(error)),
        }
    }
}

impl Batch<'_> {
    /// Runs `op` (one statement) alone in autocommit on `conn`, as the module docs say.
    pub(crate) async fn alone(&self, conn: &mut PgConnection, op: &Op) -> Attempt {
        let announce = Announce {
            schema: self.schema,
            instance: self.instance,
        };
        let mut races = 0;
        loop {
            let mut notes = Notes::default();
            let began = Instant::now();
            match op.run(conn, &mut notes, Some(&announce)).await {
                Ok(output) => {
                    self.timer.record_since(began);
                    self.changes.publish(&notes.runs);
                    return Attempt::Done(vec![Ok(output)]);
                }
                Err(error) if error.is_unsure() => {
                    self.changes.publish_unknown();
                    return Attempt::Broken {
                        error,
                        committed_maybe: true,
                    };
                }
                Err(error) if error.is_connection_lost() => {
                    return Attempt::Broken {
                        error,
                        committed_maybe: false,
                    };
                }
                Err(error) if error.is_seq_race() && races < SEQ_RACE_RETRIES => races += 1,
                Err(error) => return Attempt::Done(vec![Err(error.into())]),
            }
        }
    }
}

#[cfg(test)]
#[path = "alone_tests.rs"]
mod tests;
