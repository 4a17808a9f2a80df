//! The crate's internal error type and how PostgreSQL's errors map onto [`StoreError`]:
//! connection trouble and lock/serialization conflicts are `Unavailable` (retrying helps),
//! violated constraints and values that do not read back are `Corrupt`.

use cairn_store::StoreError;

/// An operation's failure inside this crate: a contract outcome or a database error, so `?`
/// works on both. Converted to [`StoreError`] at the crate's edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A contract outcome (`LeaseLost`, `RunEnded`, …) or an already mapped failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// PostgreSQL (or the way to it) refused or failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A statement's answer broke off when it may have completed: the connection failed
    /// (rather than the server answering with an error) or failed after the server said the
    /// statement completed. Outside a transaction, its write may or may not have committed.
    #[error(transparent)]
    Unsure(sqlx::Error),
}

/// Results inside this crate.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<Error> for StoreError {
    fn from(error: Error) -> StoreError {
        match error {
            Error::Store(error) => error,
            Error::Sql(error) | Error::Unsure(error) => sql_error(error),
        }
    }
}

impl Error {
    /// Whether the connection this error came from is gone (so the transaction on it is gone
    /// too, uncommitted, and a new connection may succeed).
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            Error::Store(_) => false,
            Error::Sql(error) => connection_lost(error),
            Error::Unsure(_) => true,
        }
    }

    /// Whether the statement may have completed although it failed (see [`Error::Unsure`]).
    pub(crate) fn is_unsure(&self) -> bool {
        matches!(self, Error::Unsure(_))
    }
}

impl Error {
    /// Whether this is the `events` key refusing a `seq` that another process took while the
    /// statement waited for its run's row (see `append`): running the command again, in a
    /// new statement, succeeds.
    pub(crate) fn is_seq_race(&self) -> bool {
        match self {
            Error::Sql(sqlx::Error::Database(error)) => {
                error.code().as_deref() == Some("23505")
                    && error.constraint() == Some("events_pkey")
            }
            _ => false,
        }
    }
}

/// The SQLSTATE of a database error, if it is one.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Whether `error` means the connection is gone: I/O and protocol failures, and the server
/// closing it (class 08, administrator shutdown/termination, crash, not accepting yet).
pub(crate) fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(_) => sqlstate(error).is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Maps a database error: connection trouble, exhausted resources, conflicts between
/// concurrent transactions (deadlock, serialization, lock and statement timeouts) are
/// `Unavailable`, since the same call may succeed later; violated constraints, bad data and
/// values that do not read back are `Corrupt`, since retrying cannot help.
pub(crate) fn sql_error(error: sqlx::Error) -> StoreError {
    if connection_lost(&error) {
        return StoreError::Unavailable(format!(
            "cannot reach PostgreSQL ({error}); retry once the database is back"
        ));
    }
    match &error {
        sqlx::Error::Database(_) => {
            let code = sqlstate(&error).unwrap_or_default();
            if code.starts_with("23") || code.starts_with("22") {
                StoreError::Corrupt(format!("PostgreSQL refused the data ({code}): {error}"))
            } else if code.starts_with("40") || code.starts_with("53") || code.starts_with("55") {
                StoreError::Unavailable(format!(
                    "PostgreSQL could not complete the operation now ({code}): {error}; retry"
                ))
            } else {
                StoreError::Unavailable(format!("PostgreSQL ({code}): {error}"))
            }
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(format!("a stored value does not read back: {error}"))
        }
        _ => StoreError::Unavailable(format!("PostgreSQL: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_transient_and_mean_a_lost_connection() {
        let error = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(connection_lost(&error));
        let mapped = sql_error(error);
        assert!(mapped.is_transient(), "{mapped}");
        assert!(mapped.to_string().contains("retry"), "{mapped}");
        assert!(sql_error(sqlx::Error::PoolTimedOut).is_transient());
    }

    #[test]
    fn decode_failures_are_corrupt() {
        let mapped = sql_error(sqlx::Error::ColumnNotFound("status".into()));
        assert!(matches!(mapped, StoreError::Corrupt(_)), "{mapped}");
        assert!(!Error::Sql(sqlx::Error::RowNotFound).is_connection_lost());
        assert!(!Error::Store(StoreError::HookNotFound).is_connection_lost());
    }
}
