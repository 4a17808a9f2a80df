//! The writer's hot statements, prepared once and held for the connection's life.
//!
//! `prepare_cached` hashes the SQL text, takes the statement out of an LRU map and puts it
//! back, allocating the map's node, at every use: measured at about 1,400 instructions a
//! statement, 7% of the writer thread's instructions when a 3-step workflow ran eight.
//! [`Sql`] holds the statements of the hot path (transactions, creates, appends, ends) in an
//! array indexed by [`Hot`]; everything else goes through `prepare_cached` on the connection
//! `Sql` dereferences to.

use std::{cell::RefCell, ops::Deref};

use rusqlite::{Connection, Params, Row, Statement};

/// A statement the writer holds prepared. Keep `EndRun` last: [`Hot::COUNT`] counts up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hot {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackTo,
    /// Tells whether another connection committed (see `RunCache::revalidate`).
    DataVersion,
    InsertRun,
    InsertEvents,
    /// An event that ends the run.
    EndRun,
}

impl Hot {
    /// How many there are.
    const COUNT: usize = Hot::EndRun as usize + 1;

    fn sql(self) -> &'static str {
        match self {
            Hot::Begin => "BEGIN IMMEDIATE",
            Hot::Commit => "COMMIT",
            Hot::Rollback => "ROLLBACK",
            Hot::Savepoint => "SAVEPOINT command",
            Hot::Release => "RELEASE command",
            Hot::RollbackTo => "ROLLBACK TO command",
            Hot::DataVersion => "PRAGMA data_version",
            Hot::InsertRun => {
                "INSERT INTO runs (id, workflow, status, input, idempotency_key, parent_run_id, forked_from_run, \
                 forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at, created_at, updated_at, \
                 owner) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15) ON CONFLICT DO NOTHING"
            }
            Hot::InsertEvents => {
                "INSERT INTO events (run_id, seq, at, type, step_key, count, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
            Hot::EndRun => {
                "UPDATE runs SET status = ?2, output = ?3, error = ?4, finished_at = ?5, updated_at = ?5, \
                 lease_owner = NULL, lease_expires_at = NULL WHERE rowid = ?1"
            }
        }
    }
}

/// The writer's connection with its [`Hot`] statements, each prepared at its first use.
pub(crate) struct Sql<'c> {
    conn: &'c Connection,
    held: RefCell<[Option<Statement<'c>>; Hot::COUNT]>,
}

impl<'c> Sql<'c> {
    /// Holds statements of `conn`, none prepared yet.
    pub(crate) fn new(conn: &'c Connection) -> Sql<'c> {
        Sql {
            conn,
            held: RefCell::new(std::array::from_fn(|_| None)),
        }
    }

    /// Runs `which` with `params`; returns how many rows it changed.
    pub(crate) fn execute(&self, which: Hot, params: impl Params) -> rusqlite::Result<usize> {
        self.with(which, |statement| statement.execute(params))
    }

    /// Runs `which` with `params` and maps its first row with `map`.
    pub(crate) fn query_row<T>(
        &self,
        which: Hot,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.with(which, |statement| statement.query_row(params, map))
    }

    fn with<T>(
        &self,
        which: Hot,
        run: impl FnOnce(&mut Statement<'c>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut held = self.held.borrow_mut();
        let slot = &mut held[which as usize];
        let statement = match slot {
            Some(statement) => statement,
            None => slot.insert(self.conn.prepare(which.sql())?),
        };
        // `execute` and `query_row` reset the statement before returning, even on failure,
        // so no held statement keeps a transaction from committing.
        run(statement)
    }
}

impl Deref for Sql<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::{Hot, Sql};
    use crate::writer::tests::writer_connection;

    fn event_row(sql: &Sql<'_>, seq: i64) -> rusqlite::Result<usize> {
        sql.execute(
            Hot::InsertEvents,
            rusqlite::params!["run", seq, 0, "step_completed", "a#0", 1, "{}"],
        )
    }

    #[test]
    fn a_held_statement_that_failed_neither_blocks_the_commit_nor_its_next_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = writer_connection(&dir);
        let sql = Sql::new(&conn);
        sql.execute(Hot::Begin, []).expect("begin");
        assert_eq!(event_row(&sql, 1).expect("inserted"), 1);
        event_row(&sql, 1).expect_err("(run_id, seq) is taken");
        sql.execute(Hot::Commit, [])
            .expect("the failed statement was reset, so the transaction commits");

        // A schema change (another process's migration) expires every prepared statement:
        // a held one is prepared again at its next use.
        conn.execute_batch("CREATE TABLE schema_changed (x)")
            .expect("change the schema");
        sql.execute(Hot::Begin, []).expect("begin again");
        assert_eq!(event_row(&sql, 2).expect("inserted"), 1);
        sql.execute(Hot::Commit, []).expect("commit");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 2);
    }
}
