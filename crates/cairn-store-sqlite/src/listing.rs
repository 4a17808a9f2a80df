//! Listing runs (`list_runs`, `list_run_summaries`): the queries a [`RunFilter`] makes, each
//! read newest first off one index and stopped at the limit, never sorting more than a few
//! rows (the query-plan tests in `schema_tests` check each filter the web UI makes).
//!
//! Newest first means, by the filter:
//! - a search (`q`: a run-id prefix or an idempotency key) lists by id, descending: ids are
//!   UUIDv7, in creation order to the millisecond, and the id's index reads a prefix's runs
//!   in that order (the key's runs, one per workflow at most, are merged in);
//! - else a creation time range lists by `created_at`, then `rowid` (schema v14's
//!   `runs_by_created`);
//! - else by `rowid`, the order the store created the runs in (schema v9); several statuses
//!   are one query each, merged, as each status reads its own index in that order.
//!
//! The cursor (`before`) is the last run of the previous page, compared in the same order.

use cairn_core::RunStatus;
use cairn_store::RunFilter;
use rusqlite::{Connection, Row, params_from_iter, types::Value};

use crate::codec::Result;

/// How a listing is ordered (descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// By `rowid`: creation by the store.
    Rowid,
    /// By `created_at`, then `rowid`.
    Created,
    /// By id (UUIDv7).
    Id,
}

/// The statements of one listing (merged in its order when several) and their parameters
/// (`?1` is the limit in each).
pub(crate) struct Listing {
    pub(crate) order: Order,
    pub(crate) queries: Vec<(String, Vec<Value>)>,
}

/// The columns each statement selects after the caller's: what orders the merge.
const ORDER_COLUMNS: &str = "rowid, created_at, id";

/// The statements listing `filter`, selecting `columns` (then [`ORDER_COLUMNS`]).
pub(crate) fn listing(filter: &RunFilter, columns: &str) -> Listing {
    if let Some(search) = &filter.search {
        let mut queries = Vec::new();
        if let Some(prefix) = id_prefix(search) {
            let mut query = Query::new(filter, Order::Id);
            query.push_clause(|at| format!("id >= ?{at}"), Value::Text(prefix.clone()));
            query.push_clause(
                |at| format!("id < ?{at}"),
                Value::Text(format!("{prefix}~")),
            );
            query.statuses(&filter.statuses);
            queries.push(query.finish(columns, ""));
        }
        let mut query = Query::new(filter, Order::Id);
        query.push_clause(
            |at| format!("idempotency_key = ?{at}"),
            Value::Text(search.clone()),
        );
        query.statuses(&filter.statuses);
        queries.push(query.finish(columns, ""));
        return Listing {
            order: Order::Id,
            queries,
        };
    }
    if filter.created_after_ms.is_some() || filter.created_before_ms.is_some() {
        let mut query = Query::new(filter, Order::Created);
        query.statuses(&filter.statuses);
        return Listing {
            order: Order::Created,
            queries: vec![query.finish(columns, "")],
        };
    }
    // By `rowid`: one statement per status asked for, each on that status's index.
    let asked: Vec<Option<RunStatus>> = match (filter.status, filter.statuses.as_slice()) {
        (status, []) => vec![status],
        (None, statuses) => statuses.iter().copied().map(Some).collect(),
        (Some(status), statuses) if statuses.contains(&status) => vec![Some(status)],
        (Some(_), _) => Vec::new(),
    };
    let queries = asked
        .into_iter()
        .map(|status| {
            let mut query = Query::new(filter, Order::Rowid);
            let mut index = "";
            if let Some(status) = status {
                query.push_clause(
                    |at| format!("status = ?{at}"),
                    Value::Text(status.as_str().to_owned()),
                );
                // `runs_by_status` holds ended runs only: say which side of `finished_at`
                // the status is on (the table's `CHECK` makes it true anyway), so SQLite uses
                // the partial index that matches; an unended status is listed from
                // `runs_claimable`, the work in flight (few), sorted there.
                if status.is_terminal() {
                    query.clauses.push("finished_at IS NOT NULL".into());
                } else if !filter.unended {
                    query.clauses.push("finished_at IS NULL".into());
                    if filter.parent_run_id.is_none() {
                        index = " INDEXED BY runs_claimable";
                    }
                }
            }
            if filter.unended && filter.parent_run_id.is_none() {
                index = " INDEXED BY runs_claimable";
            }
            query.finish(columns, index)
        })
        .collect();
    Listing {
        order: Order::Rowid,
        queries,
    }
}

/// The runs `filter` lists, newest first, each made by `decode` from a row of `columns`.
pub(crate) fn list<T>(
    conn: &Connection,
    filter: &RunFilter,
    columns: &str,
    decode: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let listing = listing(filter, columns);
    let mut rows: Vec<(Key, String, T)> = Vec::new();
    for (sql, values) in &listing.queries {
        let mut statement = conn.prepare_cached(sql)?;
        // The order columns follow the caller's.
        let width = statement.column_count() - 3;
        let found = statement.query_map(params_from_iter(values), |row| {
            let key = match listing.order {
                Order::Rowid => Key::Numbers(0, row.get(width)?),
                Order::Created => Key::Numbers(row.get(width + 1)?, row.get(width)?),
                Order::Id => Key::Text(row.get(width + 2)?),
            };
            Ok((key, row.get(width + 2)?, decode(row)?))
        })?;
        for row in found {
            rows.push(row?);
        }
    }
    if listing.queries.len() > 1 {
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        rows.dedup_by(|a, b| a.1 == b.1);
        rows.truncate(filter.effective_limit());
    }
    Ok(rows.into_iter().map(|(_, _, row)| row).collect())
}

/// A row's place in its listing's order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Numbers(i64, i64),
    Text(String),
}

/// `search` as the start of a run id (hex digits and dashes), if it can be one. (Ids are
/// stored in lowercase: an uppercase prefix matches none, as in every backend.)
fn id_prefix(search: &str) -> Option<String> {
    (search.len() <= 36 && search.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| search.to_owned())
}

/// One statement being made: its `WHERE` clauses and parameters.
struct Query {
    order: Order,
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Query {
    /// The clauses every statement of `filter` has (not its statuses or search).
    fn new(filter: &RunFilter, order: Order) -> Query {
        let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
        let mut query = Query {
            order,
            clauses: Vec::new(),
            values: vec![Value::Integer(limit)],
        };
        // Off `rowid` order, the workflow and status are filters on the order's index, never
        // an index of their own (`+column`): that would sort all of a workflow's runs.
        let plain = if order == Order::Rowid { "" } else { "+" };
        if let Some(workflow) = &filter.workflow {
            query.push_clause(
                |at| format!("{plain}workflow = ?{at}"),
                Value::Text(workflow.clone()),
            );
        }
        if let Some(parent) = filter.parent_run_id {
            query.push_clause(
                |at| format!("parent_run_id = ?{at}"),
                Value::Text(parent.to_string()),
            );
        }
        if order != Order::Rowid
            && let Some(status) = filter.status
        {
            query.push_clause(
                |at| format!("+status = ?{at}"),
                Value::Text(status.as_str().to_owned()),
            );
        }
        if let Some(before) = filter.before {
            // A run that does not exist compares as NULL: nothing is listed.
            let cursor = Value::Text(before.to_string());
            query.push_clause(
                |at| match order {
                    Order::Rowid => format!("rowid < (SELECT rowid FROM runs WHERE id = ?{at})"),
                    Order::Created => format!(
                        "(created_at, rowid) < (SELECT created_at, rowid FROM runs WHERE id = ?{at})"
                    ),
                    Order::Id => format!("id < ?{at} AND EXISTS (SELECT 1 FROM runs WHERE id = ?{at})"),
                },
                cursor,
            );
        }
        for (bound, comparison) in [
            (filter.created_after_ms, ">="),
            (filter.created_before_ms, "<"),
        ] {
            if let Some(ms) = bound {
                query.push_clause(
                    |at| format!("created_at {comparison} ?{at}"),
                    Value::Integer(ms),
                );
            }
        }
        if filter.unended {
            query.clauses.push("finished_at IS NULL".into());
        }
        if let Some(prefix) = &filter.trigger_prefix {
            // `instr` has no wildcards to escape; the first occurrence at 1 is a prefix.
            query.push_clause(
                |at| format!("instr(trigger, ?{at}) = 1"),
                Value::Text(prefix.clone()),
            );
        }
        if let Some(patch) = &filter.patch {
            // A marker may share its events row with other events (schema v3), so the row's
            // JSON is searched; `instr` has no wildcards to escape.
            let exists = if patch.wants_marker() { "" } else { "NOT " };
            query.push_clause(
                |at| {
                    format!(
                        "{exists}EXISTS (SELECT 1 FROM events WHERE events.run_id = runs.id \
                         AND instr(events.payload, ?{at}) > 0)"
                    )
                },
                Value::Text(patch.marker_json()),
            );
        }
        query
    }

    /// Adds the clause `make` writes for the parameter number it is given, and the value.
    fn push_clause(&mut self, make: impl FnOnce(usize) -> String, value: Value) {
        self.values.push(value);
        self.clauses.push(make(self.values.len()));
    }

    /// `+status IN (…)` for `statuses`, unless empty (for the orders not split by status: a
    /// filter on the order's index).
    fn statuses(&mut self, statuses: &[RunStatus]) {
        if statuses.is_empty() {
            return;
        }
        let mut listed = Vec::new();
        for status in statuses {
            self.values.push(Value::Text(status.as_str().to_owned()));
            listed.push(format!("?{}", self.values.len()));
        }
        self.clauses
            .push(format!("+status IN ({})", listed.join(", ")));
    }

    /// The statement selecting `columns` (through `index`, if named), and its parameters.
    fn finish(self, columns: &str, index: &str) -> (String, Vec<Value>) {
        let filter_sql = if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        };
        let order = match self.order {
            Order::Rowid => "rowid DESC",
            Order::Created => "created_at DESC, rowid DESC",
            Order::Id => "id DESC",
        };
        let sql = format!(
            "SELECT {columns}, {ORDER_COLUMNS} FROM runs{index}{filter_sql} ORDER BY {order} LIMIT ?1"
        );
        (sql, self.values)
    }
}

/// The one statement listing `filter` (a filter that makes one), and its parameters.
#[cfg(test)]
pub(crate) fn list_query(filter: &RunFilter) -> (String, Vec<Value>) {
    let mut listing = listing(filter, "id");
    assert_eq!(listing.queries.len(), 1, "{filter:?} makes one statement");
    listing.queries.remove(0)
}
