//! Credentials in SQLite (schema v10): the writes, which the writer thread runs like every
//! other write, each in its own savepoint of the batch's transaction (so the default rule's
//! check and its writes, or a rotation's check and its writes, commit together or not at
//! all), and the reads, on the read pool.

use std::collections::{HashMap, HashSet};

use cairn_core::{Holder, Scope};
use cairn_store::{
    CredentialFilter, CredentialRecord, Reseal, StoreError, StoreResult, first_is_default,
    listing_order,
};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};

use crate::{
    codec::{Result, from_json, to_json},
    held::Sql,
    writer::{Answer, Reply, answer, in_savepoint},
};

/// A credential write for the writer thread, one variant per `Store` method.
pub(crate) enum CredentialWrite {
    Put {
        /// Boxed: the other writes are a few words.
        credential: Box<CredentialRecord>,
        /// `credential.fields` as JSON, encoded on the caller's task.
        fields: String,
        reply: Reply<()>,
    },
    Delete {
        id: String,
        reply: Reply<bool>,
    },
    SetDefault {
        id: String,
        now_ms: i64,
        reply: Reply<()>,
    },
    Reseal {
        reseals: Vec<Reseal>,
        now_ms: i64,
        reply: Reply<()>,
    },
}

impl CredentialWrite {
    /// Runs the write in its own savepoint of the open transaction (touching no run).
    pub(crate) fn execute(self, conn: &Sql<'_>, broken: &mut Option<String>) -> Answer {
        match self {
            CredentialWrite::Put {
                credential,
                fields,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| put(c, &credential, &fields)),
            ),
            CredentialWrite::Delete { id, reply } => {
                answer(reply, in_savepoint(conn, broken, |c| delete(c, &id)))
            }
            CredentialWrite::SetDefault { id, now_ms, reply } => answer(
                reply,
                in_savepoint(conn, broken, |c| set_default(c, &id, now_ms)),
            ),
            CredentialWrite::Reseal {
                reseals,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| reseal(c, &reseals, now_ms)),
            ),
        }
    }
}

/// `credential`'s field names as stored: JSON, encoded on the caller's task.
pub(crate) fn field_names(credential: &CredentialRecord) -> StoreResult<String> {
    to_json(&credential.fields, "a credential's field names")
}

/// The columns a [`RawCredential`] is read from, in [`RawCredential::from_row`]'s order.
const COLUMNS: &str = "id, key, scope, org, project, user_name, is_default, fields, sealed, \
                       expires_at, created_at, updated_at";

/// Takes the default flag of the key and holder of credential `?1` from every other
/// credential of them.
const CLEAR_OTHER_DEFAULTS: &str = "\
    UPDATE credentials SET is_default = 0 WHERE is_default = 1 AND id <> ?1 AND EXISTS ( \
        SELECT 1 FROM credentials AS chosen WHERE chosen.id = ?1 AND chosen.key = credentials.key \
        AND chosen.scope = credentials.scope AND chosen.org = credentials.org \
        AND chosen.project IS credentials.project AND chosen.user_name IS credentials.user_name)";

/// Inserts `credential` or replaces the one with its id (keeping its `created_at`), applying
/// the default rule ([`first_is_default`]): checked and written in one savepoint.
fn put(conn: &Connection, credential: &CredentialRecord, fields: &str) -> Result<()> {
    let holder = &credential.holder;
    let others: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM credentials WHERE key = ?1 AND org = ?2 AND scope = ?3 \
             AND project IS ?4 AND user_name IS ?5 AND id <> ?6",
        )?
        .query_row(
            params![
                credential.key,
                holder.org,
                holder.scope.as_str(),
                holder.project,
                holder.user,
                credential.id
            ],
            |row| row.get(0),
        )?;
    let is_default = first_is_default(
        credential.is_default,
        usize::try_from(others).unwrap_or(usize::MAX),
    );
    conn.prepare_cached(
        "INSERT INTO credentials (id, key, scope, org, project, user_name, is_default, fields, sealed, \
         expires_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (id) DO UPDATE SET key = excluded.key, scope = excluded.scope, org = excluded.org, \
         project = excluded.project, user_name = excluded.user_name, is_default = excluded.is_default, \
         fields = excluded.fields, sealed = excluded.sealed, expires_at = excluded.expires_at, \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        credential.id,
        credential.key,
        holder.scope.as_str(),
        holder.org,
        holder.project,
        holder.user,
        is_default,
        fields,
        credential.sealed,
        credential.expires_at_ms,
        credential.created_at_ms,
        credential.updated_at_ms,
    ])?;
    if is_default {
        conn.prepare_cached(CLEAR_OTHER_DEFAULTS)?
            .execute([&credential.id])?;
    }
    Ok(())
}

fn delete(conn: &Connection, id: &str) -> Result<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM credentials WHERE id = ?1")?
        .execute([id])?;
    Ok(deleted > 0)
}

/// Makes credential `id` its holder's default for its key, the others losing the flag.
fn set_default(conn: &Connection, id: &str, now_ms: i64) -> Result<()> {
    let found = conn
        .prepare_cached("UPDATE credentials SET is_default = 1, updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now_ms])?;
    if found == 0 {
        return Err(StoreError::CredentialNotFound(id.to_owned()).into());
    }
    conn.prepare_cached(CLEAR_OTHER_DEFAULTS)?.execute([id])?;
    Ok(())
}

/// Replaces every credential's sealed fields, or refuses (writing nothing) unless `reseals`
/// names each stored credential exactly once with the bytes it holds.
fn reseal(conn: &Connection, reseals: &[Reseal], now_ms: i64) -> Result<()> {
    let stored = conn
        .prepare_cached("SELECT id, sealed FROM credentials")?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<rusqlite::Result<HashMap<_, _>>>()?;
    if !names_every_one_as_stored(reseals, &stored) {
        return Err(StoreError::CredentialsChanged.into());
    }
    let mut update =
        conn.prepare_cached("UPDATE credentials SET sealed = ?2, updated_at = ?3 WHERE id = ?1")?;
    for one in reseals {
        update.execute(params![one.id, one.new, now_ms])?;
    }
    Ok(())
}

/// Whether `reseals` names every credential of `stored` (id → sealed bytes), once each, with
/// the bytes stored: nothing was saved or deleted since they were read.
fn names_every_one_as_stored(reseals: &[Reseal], stored: &HashMap<String, Vec<u8>>) -> bool {
    let mut named = HashSet::with_capacity(reseals.len());
    reseals.len() == stored.len()
        && reseals.iter().all(|one| {
            named.insert(one.id.as_str()) && stored.get(&one.id).is_some_and(|old| *old == one.old)
        })
}

/// One credential by id.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<CredentialRecord>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM credentials WHERE id = ?1"))?
        .query_row([id], RawCredential::from_row)
        .optional()?;
    Ok(raw.map(RawCredential::decode).transpose()?)
}

/// Credentials matching `filter`, in [`listing_order`] (sorted here: there are few, and the
/// order of scopes is not their names').
pub(crate) fn list(conn: &Connection, filter: &CredentialFilter) -> Result<Vec<CredentialRecord>> {
    let (sql, values) = list_query(filter);
    let raw = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(values), RawCredential::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut listed = raw
        .into_iter()
        .map(RawCredential::decode)
        .collect::<StoreResult<Vec<_>>>()?;
    listed.sort_by(listing_order);
    Ok(listed)
}

/// The `list` query for `filter`, and its parameters.
pub(crate) fn list_query(filter: &CredentialFilter) -> (String, Vec<Value>) {
    let conditions = [
        ("key", filter.key.clone()),
        ("org", filter.org.clone()),
        ("scope", filter.scope.map(|scope| scope.as_str().to_owned())),
        ("project", filter.project.clone()),
        ("user_name", filter.user.clone()),
    ];
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (column, value) in conditions {
        if let Some(value) = value {
            values.push(Value::Text(value));
            clauses.push(format!("{column} = ?{}", values.len()));
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

/// A `credentials` row as read.
struct RawCredential {
    id: String,
    key: String,
    scope: String,
    org: String,
    project: Option<String>,
    user: Option<String>,
    is_default: bool,
    fields: String,
    sealed: Vec<u8>,
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl RawCredential {
    /// Reads the columns of [`COLUMNS`] in order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawCredential> {
        Ok(RawCredential {
            id: row.get(0)?,
            key: row.get(1)?,
            scope: row.get(2)?,
            org: row.get(3)?,
            project: row.get(4)?,
            user: row.get(5)?,
            is_default: row.get(6)?,
            fields: row.get(7)?,
            sealed: row.get(8)?,
            expires_at: row.get(9)?,
            created_at: row.get(10)?,
            updated_at: row.get(11)?,
        })
    }

    fn decode(self) -> StoreResult<CredentialRecord> {
        let scope = Scope::parse(&self.scope).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "credential {} has the unknown scope {:?}",
                self.id, self.scope
            ))
        })?;
        Ok(CredentialRecord {
            fields: from_json(&self.fields, "credential field names")?,
            id: self.id,
            key: self.key,
            holder: Holder {
                scope,
                org: self.org,
                project: self.project,
                user: self.user,
            },
            is_default: self.is_default,
            sealed: self.sealed,
            expires_at_ms: self.expires_at,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
        })
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
