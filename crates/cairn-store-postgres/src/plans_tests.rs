//! The plans a store's connection caches while its tables are small stay right as they grow:
//! a generic plan, made once per statement from the tables' size at the time, reads the rows
//! of the hot path by key even when it was made on an empty table (decision 0049), and the
//! front of a long queue in index order, whatever the planner expected (decision 0052); and
//! a statement that scans is not compiled at every execution (decision 0053).

use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, Row};

use super::tests::plan;
use crate::{
    append::{APPEND_AND_END, APPEND_STEPS},
    common::TestSchema,
    end::END_RUN,
    ops::CLAIM_READY_SQL,
    read::{NEXT_READY_SQL, RUN_BY_ID},
    schema::UP_TO_DATE_SQL,
};

#[tokio::test]
async fn generic_plans_made_on_empty_tables_read_by_key() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    // A connection with the store's own settings; the plan cache's choice of the generic plan
    // (after five executions) made at once.
    let mut conn = store.connect.connect().await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe("SET plan_cache_mode = force_generic_plan"))
        .execute(&mut conn)
        .await
        .expect("plan_cache_mode");
    let statements = [
        (
            "a step's append",
            APPEND_STEPS,
            "uuid[], text[], bigint[], bigint[], bigint[], text[], text[], text[], text, text",
        ),
        (
            "steps and ends appended in a batch",
            APPEND_AND_END,
            "uuid[], text[], bigint[], bigint[], bigint[], text[], text[], text[], text, text, \
             text[], text[], text[], uuid[]",
        ),
        (
            "a run's end",
            END_RUN,
            "uuid, bigint, text[], text[], text[], text, text, text, text, text, text",
        ),
        ("a run's read", RUN_BY_ID, "uuid"),
    ];
    for (what, sql, params) in statements {
        let plan = plan(&mut conn, sql, params).await;
        assert!(
            !plan.contains("Seq Scan on runs") && !plan.contains("Seq Scan on events"),
            "{what} scans a table on an empty schema, and would go on scanning it as it \
             grows:\n{plan}"
        );
        assert!(plan.contains("runs_pkey"), "{what}:\n{plan}");
    }
}

#[tokio::test]
async fn a_claim_from_a_long_unanalyzed_queue_reads_only_its_front() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let mut conn = store.connect.connect().await.expect("connect");
    // A burst of runs queued faster than autovacuum analyzes the table: the planner, without
    // statistics, expects few of them to be unended (a null test's default selectivity) and,
    // left to itself, collects every ready run and sorts them at each claim.
    sqlx::raw_sql(AssertSqlSafe(
        "INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at) \
         SELECT gen_random_uuid(), 'w', 'queued', '{}', 'api', i, i, i \
         FROM generate_series(1, 10000) AS i; \
         SET plan_cache_mode = force_generic_plan",
    ))
    .execute(&mut conn)
    .await
    .expect("queue runs");
    let queue_pages: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size('runs') / current_setting('block_size')::bigint",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the table's size");
    let statements = [
        (
            "a claim of one run",
            CLAIM_READY_SQL,
            "bigint, text[], bigint, text, bigint",
            "20000, '{w}', 1, 'worker', 90000",
        ),
        ("the next ready time", NEXT_READY_SQL, "text[]", "'{w}'"),
    ];
    for (what, sql, params, values) in statements {
        let pages = pages_read(&mut conn, sql, params, values).await;
        assert!(
            pages < queue_pages / 2,
            "{what} read {pages} pages of a queue of {queue_pages}"
        );
    }
}

#[tokio::test]
async fn a_statement_that_scans_is_not_compiled() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let mut conn = store.connect.connect().await.expect("connect");
    // The version check reads a one-row table that has no index to use for it, so with
    // `enable_seqscan = off` its plan costs more than any `jit_*_above_cost`: unless the store
    // turns JIT off, a server built with LLVM compiles it at every store's start (100-200 ms).
    let (plan, text) = explain_json(
        &mut conn,
        &format!("EXPLAIN (ANALYZE, FORMAT JSON) {UP_TO_DATE_SQL}"),
    )
    .await;
    let jit_above_cost: f64 =
        sqlx::query_scalar("SELECT current_setting('jit_above_cost')::float8")
            .fetch_one(&mut conn)
            .await
            .expect("jit_above_cost");
    let cost = plan[0]["Plan"]["Total Cost"].as_f64().expect("a cost");
    assert!(
        cost > jit_above_cost,
        "the version check costs {cost}: it no longer shows what JIT would do to a scan"
    );
    assert!(
        plan[0].get("JIT").is_none(),
        "the version check was compiled:\n{text}"
    );
}

/// The pages (shared buffers hit or read) that `sql`'s second execution with `values` reads,
/// in a transaction rolled back after: the first one makes the plans (the functions' too).
async fn pages_read(conn: &mut PgConnection, sql: &str, params: &str, values: &str) -> i64 {
    let prepare = format!("DEALLOCATE PREPARE ALL; PREPARE q({params}) AS {sql}; BEGIN");
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({values})");
    explain_json(conn, &explain).await;
    let (plan, _) = explain_json(conn, &explain).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *conn)
        .await
        .expect("rollback");
    let top = &plan[0]["Plan"];
    let blocks = |name: &str| top[name].as_i64().expect("buffer counts");
    blocks("Shared Hit Blocks") + blocks("Shared Read Blocks")
}

/// The plan `explain` (an `EXPLAIN (FORMAT JSON)` statement) prints, parsed and as text.
async fn explain_json(conn: &mut PgConnection, explain: &str) -> (serde_json::Value, String) {
    let row = sqlx::raw_sql(AssertSqlSafe(explain.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .expect("explain");
    let text: String = row.try_get_unchecked(0).expect("a plan");
    (serde_json::from_str(&text).expect("a JSON plan"), text)
}
