//! How the writer thread runs one command inside a batch's transaction: in a savepoint of
//! its own (undone alone if it fails), or unguarded on the hot path (an operation that refuses
//! only before it writes); an SQL failure of either breaks the batch, rolled back whole.

use cairn_store::{StoreError, StoreResult};

use crate::{
    codec::{Error, Result, sql_error},
    held::{Hot, Sql},
};

/// Runs one of the writer's fixed statements (`BEGIN`, `SAVEPOINT`, …).
pub(crate) fn run_statement(conn: &Sql<'_>, which: Hot) -> rusqlite::Result<()> {
    conn.execute(which, []).map(drop)
}

/// Runs `op` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint if it fails.
/// If the savepoint machinery itself fails, the transaction can no longer be trusted:
/// `broken` is set and the batch will be rolled back whole.
pub(crate) fn in_savepoint<T>(
    conn: &Sql<'_>,
    broken: &mut Option<String>,
    op: impl FnOnce(&Sql<'_>) -> Result<T>,
) -> StoreResult<T> {
    still_whole(broken)?;
    let mut fail = |error: rusqlite::Error| break_batch(broken, error);
    run_statement(conn, Hot::Savepoint).map_err(&mut fail)?;
    match op(conn) {
        Ok(value) => {
            run_statement(conn, Hot::Release).map_err(&mut fail)?;
            Ok(value)
        }
        Err(error) => {
            let undone = run_statement(conn, Hot::RollbackTo)
                .and_then(|()| run_statement(conn, Hot::Release));
            if let Err(undo) = undone {
                fail(undo);
            }
            Err(error.into())
        }
    }
}

/// Runs `op` without a savepoint, for an operation that refuses (a contract error such as
/// `LeaseLost`) only before it writes anything: a refusal needs no undo, and an SQL failure
/// part-way — I/O, a full disk — breaks the batch, which is rolled back whole and every
/// caller told `Unavailable` (writers retry that). The hot path (appends, creates) saves a
/// savepoint's statements and its copy of every page it touches.
pub(crate) fn unguarded<T>(
    conn: &Sql<'_>,
    broken: &mut Option<String>,
    op: impl FnOnce(&Sql<'_>) -> Result<T>,
) -> StoreResult<T> {
    still_whole(broken)?;
    match op(conn) {
        Ok(value) => Ok(value),
        Err(Error::Store(refusal)) => Err(refusal),
        Err(Error::Sql(error)) => Err(break_batch(broken, error)),
    }
}

/// Refuses every command of a batch once it is broken.
fn still_whole(broken: &Option<String>) -> StoreResult<()> {
    match broken {
        Some(why) => Err(StoreError::Unavailable(why.clone())),
        None => Ok(()),
    }
}

/// Marks the batch broken by `error` (it will be rolled back whole) and returns the error
/// for the command that met it.
fn break_batch(broken: &mut Option<String>, error: rusqlite::Error) -> StoreError {
    let error = sql_error(error);
    *broken = Some(format!("the write batch was rolled back: {error}"));
    error
}
