//! The plans a store's connection caches while its tables are small stay right as they grow:
//! a generic plan, made once per statement from the tables' size at the time, reads the rows
//! of the hot path by key even when it was made on an empty table (decision 0049).

use sqlx::{AssertSqlSafe, ConnectOptions};

use super::tests::plan;
use crate::{
    append::{APPEND_AND_END, APPEND_STEPS},
    common::TestSchema,
    end::END_RUN,
    read::RUN_BY_ID,
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
