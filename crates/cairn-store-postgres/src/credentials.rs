//! Credentials in PostgreSQL (schema v3). They touch no run, so they are written apart from
//! the run write queue: each write is its own transaction on a pooled connection that first
//! takes `LOCK TABLE credentials IN SHARE ROW EXCLUSIVE MODE`. That mode conflicts with
//! itself and with every `INSERT`, `UPDATE` and `DELETE`, and not with reads: credential
//! writes of every process run one at a time, and each statement after the lock (read
//! committed) sees every write committed before it. So the default rule's count and its
//! writes, and a rotation's check and its writes, see no concurrent save or deletion slip
//! in between.

use cairn_core::{Holder, Scope};
use cairn_store::{
    CredentialFilter, CredentialRecord, Reseal, StoreError, StoreResult, first_is_default,
    listing_order,
};
use sqlx::{
    PgConnection, PgPool, Postgres, Row,
    postgres::{PgArguments, PgRow},
    query::Query,
};

use crate::{
    codec::{from_json, to_json},
    error::Result,
};

/// The columns [`decode`] reads.
const COLUMNS: &str = "id, key, scope, org, project, user_name, is_default, fields, sealed, \
                       expires_at, created_at, updated_at";

/// Takes the default flag of the key and holder of credential `$1` from every other
/// credential of them.
const CLEAR_OTHER_DEFAULTS: &str = "\
    UPDATE credentials SET is_default = false FROM credentials AS chosen \
    WHERE chosen.id = $1 AND credentials.id <> $1 AND credentials.is_default \
    AND credentials.key = chosen.key AND credentials.scope = chosen.scope \
    AND credentials.org = chosen.org \
    AND credentials.project IS NOT DISTINCT FROM chosen.project \
    AND credentials.user_name IS NOT DISTINCT FROM chosen.user_name";

/// Runs `write` in a transaction holding the credentials' write lock, committing if it
/// succeeds (rolled back, when dropped, if not).
async fn locked<T>(
    pool: &PgPool,
    write: impl AsyncFnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE credentials IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let value = write(&mut tx).await?;
    tx.commit().await?;
    Ok(value)
}

/// Inserts `credential` or replaces the one with its id (keeping its `created_at`), applying
/// the default rule ([`first_is_default`]) in the same transaction.
pub(crate) async fn put(pool: &PgPool, credential: &CredentialRecord) -> Result<()> {
    let fields = to_json(&credential.fields, "a credential's field names")?;
    let holder = &credential.holder;
    locked(pool, async |conn| {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM credentials WHERE key = $1 AND org = $2 AND scope = $3 \
             AND project IS NOT DISTINCT FROM $4 AND user_name IS NOT DISTINCT FROM $5 AND id <> $6",
        )
        .bind(&credential.key)
        .bind(&holder.org)
        .bind(holder.scope.as_str())
        .bind(&holder.project)
        .bind(&holder.user)
        .bind(&credential.id)
        .fetch_one(&mut *conn)
        .await?;
        let is_default = first_is_default(
            credential.is_default,
            usize::try_from(others).unwrap_or(usize::MAX),
        );
        sqlx::query(
            "INSERT INTO credentials (id, key, scope, org, project, user_name, is_default, fields, sealed, \
             expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, scope = EXCLUDED.scope, org = EXCLUDED.org, \
             project = EXCLUDED.project, user_name = EXCLUDED.user_name, is_default = EXCLUDED.is_default, \
             fields = EXCLUDED.fields, sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(&credential.id)
        .bind(&credential.key)
        .bind(holder.scope.as_str())
        .bind(&holder.org)
        .bind(&holder.project)
        .bind(&holder.user)
        .bind(is_default)
        .bind(&fields)
        .bind(&credential.sealed)
        .bind(credential.expires_at_ms)
        .bind(credential.created_at_ms)
        .bind(credential.updated_at_ms)
        .execute(&mut *conn)
        .await?;
        if is_default {
            sqlx::query(CLEAR_OTHER_DEFAULTS)
                .bind(&credential.id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    })
    .await
}

/// Deletes a credential; `false` if there was none. (One statement: its row lock's table
/// mode conflicts with the write lock, so a rotation in progress sees it before or after.)
pub(crate) async fn delete(pool: &PgPool, id: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM credentials WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Makes credential `id` its holder's default for its key, the others losing the flag.
pub(crate) async fn set_default(pool: &PgPool, id: &str, now_ms: i64) -> Result<()> {
    locked(pool, async |conn| {
        let found =
            sqlx::query("UPDATE credentials SET is_default = true, updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::CredentialNotFound(id.to_owned()).into());
        }
        sqlx::query(CLEAR_OTHER_DEFAULTS)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    })
    .await
}

/// Replaces every credential's sealed fields, or refuses (writing nothing) unless `reseals`
/// names each stored credential exactly once with the bytes it holds: checked in SQL, under
/// the write lock, then written in one statement.
pub(crate) async fn reseal(pool: &PgPool, reseals: &[Reseal], now_ms: i64) -> Result<()> {
    let ids: Vec<&str> = reseals.iter().map(|one| one.id.as_str()).collect();
    let old: Vec<&[u8]> = reseals.iter().map(|one| one.old.as_slice()).collect();
    let new: Vec<&[u8]> = reseals.iter().map(|one| one.new.as_slice()).collect();
    locked(pool, async |conn| {
        let unchanged: bool = sqlx::query_scalar(
            "SELECT (SELECT count(DISTINCT id) FROM unnest($1::text[]) AS named(id)) = cardinality($1::text[]) \
             AND NOT EXISTS ( \
                 SELECT 1 FROM credentials FULL JOIN unnest($1::text[], $2::bytea[]) AS named(id, old) \
                 ON credentials.id = named.id \
                 WHERE credentials.id IS NULL OR named.id IS NULL OR credentials.sealed <> named.old)",
        )
        .bind(&ids)
        .bind(&old)
        .fetch_one(&mut *conn)
        .await?;
        if !unchanged {
            return Err(StoreError::CredentialsChanged.into());
        }
        sqlx::query(
            "UPDATE credentials SET sealed = named.new, updated_at = $3 \
             FROM unnest($1::text[], $2::bytea[]) AS named(id, new) WHERE credentials.id = named.id",
        )
        .bind(&ids)
        .bind(&new)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
    .await
}

/// One credential by id.
pub(crate) async fn get(pool: &PgPool, id: &str) -> Result<Option<CredentialRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM credentials WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(decode).transpose()?)
}

/// Credentials matching `filter`, in [`listing_order`] (sorted here: there are few, and the
/// order of scopes is not their names').
pub(crate) async fn list(
    pool: &PgPool,
    filter: &CredentialFilter,
) -> Result<Vec<CredentialRecord>> {
    let (sql, values) = list_sql(filter);
    let query: Query<'_, Postgres, PgArguments> = values
        .into_iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, value| {
            query.bind(value)
        });
    let rows = query.fetch_all(pool).await?;
    let mut listed = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
    listed.sort_by(listing_order);
    Ok(listed)
}

/// The `list` query for `filter`, and its parameters (all text).
pub(crate) fn list_sql(filter: &CredentialFilter) -> (String, Vec<&str>) {
    let conditions = [
        ("key", filter.key.as_deref()),
        ("org", filter.org.as_deref()),
        ("scope", filter.scope.map(Scope::as_str)),
        ("project", filter.project.as_deref()),
        ("user_name", filter.user.as_deref()),
    ];
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (column, value) in conditions {
        if let Some(value) = value {
            values.push(value);
            clauses.push(format!("{column} = ${}", values.len()));
        }
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (
        format!("SELECT {COLUMNS} FROM credentials{filter_sql}"),
        values,
    )
}

fn get_column<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|error| {
        StoreError::Corrupt(format!("credentials.{column} does not read back: {error}"))
    })
}

/// Decodes a row of [`COLUMNS`].
fn decode(row: &PgRow) -> StoreResult<CredentialRecord> {
    let id: String = get_column(row, "id")?;
    let scope: String = get_column(row, "scope")?;
    let scope = Scope::parse(&scope).ok_or_else(|| {
        StoreError::Corrupt(format!("credential {id} has the unknown scope {scope:?}"))
    })?;
    Ok(CredentialRecord {
        key: get_column(row, "key")?,
        holder: Holder {
            scope,
            org: get_column(row, "org")?,
            project: get_column(row, "project")?,
            user: get_column(row, "user_name")?,
        },
        is_default: get_column(row, "is_default")?,
        fields: from_json(
            &get_column::<String>(row, "fields")?,
            "credential field names",
        )?,
        sealed: get_column(row, "sealed")?,
        expires_at_ms: get_column(row, "expires_at")?,
        created_at_ms: get_column(row, "created_at")?,
        updated_at_ms: get_column(row, "updated_at")?,
        id,
    })
}
