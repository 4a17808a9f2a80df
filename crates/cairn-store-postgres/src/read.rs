//! Reads, on any pooled connection (they never wait for the writer): one run, a log, listings
//! and the next wake-up time.

use cairn_core::EventRecord;
use cairn_store::{RunFilter, RunId, RunRecord, RunSummary, StoreResult};
use sqlx::{AssertSqlSafe, PgExecutor, Postgres, postgres::PgArguments, query::Query};
use uuid::Uuid;

use crate::{
    codec::{
        LOG_COLUMNS, SUMMARY_COLUMNS, decode_event, decode_run, decode_summary, made_run_created,
        run_columns,
    },
    error::Result,
};

/// A `WHERE` clause of equality conditions on the columns that are set, numbered from `$2`
/// (`$1` is the limit), so each filter combination is its own statement and the planner can
/// pick the index for it (a catch-all `($n IS NULL OR …)` would defeat the indexes).
pub(crate) fn where_clause(conditions: &[(&str, bool)]) -> String {
    let mut clauses = Vec::new();
    for (column, set) in conditions {
        if *set {
            clauses.push(format!("{column} = ${}", clauses.len() + 2));
        }
    }
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

/// A run's row by id.
pub(crate) const RUN_BY_ID: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");

pub(crate) async fn get_run<'c>(conn: impl PgExecutor<'c>, id: RunId) -> Result<Option<RunRecord>> {
    let row = sqlx::query(RUN_BY_ID)
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(decode_run).transpose()?)
}

/// A run's whole log, in order, in one query.
pub(crate) async fn events<'c>(conn: impl PgExecutor<'c>, id: RunId) -> Result<Vec<EventRecord>> {
    events_after(conn, id, 0).await
}

/// The run's events with `seq > after`, in order, in one query (with the `RunCreated` made
/// from the run's row when `after` is 0, see `codec::made_run_created`).
pub(crate) async fn events_after<'c>(
    conn: impl PgExecutor<'c>,
    id: RunId,
    after: u64,
) -> Result<Vec<EventRecord>> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let sql = if after == 0 {
        format!(
            "SELECT {LOG_COLUMNS} FROM events WHERE run_id = ANY($1) AND seq > $2 \
             UNION ALL {} ORDER BY seq",
            made_run_created!()
        )
    } else {
        format!("SELECT {LOG_COLUMNS} FROM events WHERE run_id = ANY($1) AND seq > $2 ORDER BY seq")
    };
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind([id.0])
        .bind(after)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(decode_event).collect::<StoreResult<_>>()?)
}

/// The `list_runs` statement for `filter`: newest first, ties broken by insertion order.
/// Parameters: `$1` the limit, then the equalities' values, the trigger prefix, the patch
/// marker, the statuses, the creation bounds, the search, the cursor run.
pub(crate) fn list_sql(filter: &RunFilter) -> String {
    list_sql_of(filter, run_columns!())
}

/// The listing statement for `filter` selecting `columns` (see [`list_sql`]).
pub(crate) fn list_sql_of(filter: &RunFilter, columns: &str) -> String {
    let equalities = [
        ("workflow", filter.workflow.is_some()),
        ("status", filter.status.is_some()),
        ("parent_run_id", filter.parent_run_id.is_some()),
    ];
    let mut clauses = where_clause(&equalities);
    let mut next_param = 2 + equalities.iter().filter(|(_, set)| *set).count();
    let mut and = |clause: &str| {
        clauses.push_str(if clauses.is_empty() {
            "WHERE "
        } else {
            " AND "
        });
        clauses.push_str(clause);
    };
    if filter.unended {
        and("finished_at IS NULL");
    }
    if filter.trigger_prefix.is_some() {
        and(&format!("starts_with(trigger, ${next_param})"));
        next_param += 1;
    }
    if let Some(patch) = &filter.patch {
        let exists = if patch.wants_marker() { "" } else { "NOT " };
        and(&format!(
            "{exists}EXISTS (SELECT 1 FROM events e WHERE e.run_id = runs.id \
             AND strpos(e.payload, ${next_param}) > 0)"
        ));
        next_param += 1;
    }
    if !filter.statuses.is_empty() {
        and(&format!("status = ANY(${next_param})"));
        next_param += 1;
    }
    if filter.created_after_ms.is_some() {
        and(&format!("created_at >= ${next_param}"));
        next_param += 1;
    }
    if filter.created_before_ms.is_some() {
        and(&format!("created_at < ${next_param}"));
        next_param += 1;
    }
    if filter.search.is_some() {
        // An id prefix is the range of the ids it starts (the primary key's index reads it).
        and(&format!(
            "(id BETWEEN ${} AND ${} OR idempotency_key = ${next_param})",
            next_param + 1,
            next_param + 2
        ));
        next_param += 3;
    }
    if filter.before.is_some() {
        // A run that does not exist compares as NULL, so nothing is listed.
        and(&format!(
            "(created_at, n) < (SELECT created_at, n FROM runs WHERE id = ${next_param})"
        ));
    }
    format!("SELECT {columns} FROM runs {clauses} ORDER BY created_at DESC, n DESC LIMIT $1")
}

/// The ids a search's text starts, as a range (the first and the last), or an empty range
/// when no id starts so (`search` is not the start of a UUID's text).
fn id_range(search: &str) -> (Uuid, Uuid) {
    const LOWEST: &str = "00000000-0000-0000-0000-000000000000";
    const HIGHEST: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";
    let bound = |pad: &str| {
        let rest = pad.get(search.len()..)?;
        Uuid::try_parse(&format!("{search}{rest}"))
            .ok()
            .filter(|id| id.hyphenated().to_string().starts_with(search))
    };
    match (bound(LOWEST), bound(HIGHEST)) {
        (Some(low), Some(high)) => (low, high),
        _ => (Uuid::max(), Uuid::nil()),
    }
}

/// Runs matching `filter`, newest first.
pub(crate) async fn list_runs<'c>(
    conn: impl PgExecutor<'c>,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>> {
    let sql = list_sql(filter);
    let rows = bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(decode_run).collect::<StoreResult<_>>()?)
}

/// The runs [`list_runs`] lists, as summaries: no payload column is read.
pub(crate) async fn list_run_summaries<'c>(
    conn: impl PgExecutor<'c>,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>> {
    let sql = list_sql_of(filter, SUMMARY_COLUMNS);
    let rows = bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .iter()
        .map(decode_summary)
        .collect::<StoreResult<_>>()?)
}

/// `query` (a listing statement of `filter`) with its parameters bound, in order.
pub(crate) fn bind_filter<'q>(mut query: PgQuery<'q>, filter: &RunFilter) -> PgQuery<'q> {
    let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
    query = query.bind(limit);
    if let Some(workflow) = &filter.workflow {
        query = query.bind(workflow.clone());
    }
    if let Some(status) = filter.status {
        query = query.bind(status.as_str());
    }
    if let Some(parent) = filter.parent_run_id {
        query = query.bind(parent.0);
    }
    if let Some(prefix) = &filter.trigger_prefix {
        query = query.bind(prefix.clone());
    }
    if let Some(patch) = &filter.patch {
        query = query.bind(patch.marker_json());
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter
            .statuses
            .iter()
            .map(|status| status.as_str())
            .collect();
        query = query.bind(statuses);
    }
    if let Some(after) = filter.created_after_ms {
        query = query.bind(after);
    }
    if let Some(before) = filter.created_before_ms {
        query = query.bind(before);
    }
    if let Some(search) = &filter.search {
        let (low, high) = id_range(search);
        query = query.bind(search.clone()).bind(low).bind(high);
    }
    if let Some(before) = filter.before {
        query = query.bind(before.0);
    }
    query
}

/// A statement to bind parameters to.
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The `next_ready_at` statement: the front of the `runs_claimable` index, read by a function
/// whose plan follows the index's order (schema v8); NULL if no run is unended.
pub(crate) const NEXT_READY_SQL: &str = "SELECT cairn_next_ready_at($1)";

/// The earliest `ready_at` among unended runs of `workflows` (a leased run's `ready_at` is
/// its lease's expiry).
pub(crate) async fn next_ready_at<'c>(
    conn: impl PgExecutor<'c>,
    workflows: &[String],
) -> Result<Option<i64>> {
    if workflows.is_empty() {
        return Ok(None);
    }
    Ok(sqlx::query_scalar(NEXT_READY_SQL)
        .bind(workflows)
        .fetch_one(conn)
        .await?)
}

/// The server's clock, in unix milliseconds: the time every worker judges leases by
/// (decision 0046).
pub(crate) async fn server_clock_ms<'c>(conn: impl PgExecutor<'c>) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
            .fetch_one(conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use cairn_core::RunStatus;

    use super::*;

    #[test]
    fn each_filter_is_an_equality_numbered_after_the_limit() {
        assert_eq!(where_clause(&[("a", false), ("b", false)]), "");
        assert_eq!(
            where_clause(&[("a", false), ("b", true), ("c", true)]),
            "WHERE b = $2 AND c = $3"
        );
        let filter = RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        };
        assert!(list_sql(&filter).contains("WHERE status = $2 ORDER BY"));
        let page = RunFilter {
            before: Some(RunId::new()),
            ..filter
        };
        assert!(
            list_sql(&page).contains("WHERE status = $2 AND (created_at, n) < (SELECT created_at, n FROM runs WHERE id = $3) ORDER BY"),
            "{}",
            list_sql(&page)
        );
    }

    #[test]
    fn a_search_is_the_range_of_the_ids_it_starts() {
        let id = Uuid::now_v7();
        let text = id.hyphenated().to_string();
        for end in [0, 1, 8, 9, 20, 36] {
            let (low, high) = id_range(&text[..end]);
            assert!(low <= id && id <= high, "{}", &text[..end]);
            assert!(low.to_string().starts_with(&text[..end]));
            assert!(high.to_string().starts_with(&text[..end]));
        }
        for not_an_id in ["order-42", "0190-", "g", &format!("{text}0")] {
            let (low, high) = id_range(not_an_id);
            assert!(low > high, "{not_an_id} starts no id");
        }
    }
}
