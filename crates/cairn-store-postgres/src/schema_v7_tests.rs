//! Tests of schema version 7 against a real server: a version 6 schema upgrades to the
//! idempotency constraint keyed by the key first (a key stays unique per workflow), and each
//! listing the web UI makes reads an index on a table of 20,000 runs, never the whole table.

use cairn_core::RunStatus;
use cairn_store::{NewRun, RunFilter, RunId, Store};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use super::MIGRATIONS;
use crate::{common::TestSchema, read};

/// A run of `workflow` under `key`.
fn keyed(workflow: &str, key: &str) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.into(),
        input: json!({}),
        idempotency_key: Some(key.into()),
        parent_run_id: None,
        forked_from: None,
        trigger: "api".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: 5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v6_schema_upgrades_and_its_keys_stay_unique_per_workflow() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let id = RunId::new();
    let mut raw = schema.raw().await;
    let scripts = MIGRATIONS[..6].join("\n");
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {scripts}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (6);
         INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, created_at, \
             updated_at) VALUES ('{id}', 'w', 'queued', '{{}}', 'order-42', 'test', 1, 1, 1);",
        name = schema.name,
        id = id.0,
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v6 schema");
    let store = schema.store().await;
    let again = store
        .create_run(keyed("w", "order-42"))
        .await
        .expect("create");
    assert_eq!((again.run_id, again.created), (id, false), "the key's run");
    let other = store
        .create_run(keyed("v", "order-42"))
        .await
        .expect("create");
    assert!(
        other.created,
        "the same key in another workflow is another run"
    );
    let found: Vec<RunId> = store
        .list_run_summaries(&RunFilter {
            search: Some("order-42".into()),
            ..RunFilter::default()
        })
        .await
        .expect("list")
        .iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(found, [other.run_id, id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_of_the_web_ui_reads_an_index() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    drop(store);
    let mut raw = schema.raw().await;
    // 20,000 runs as `ui_scale` makes them: mostly ended, a key on every hundredth.
    let fill = format!(
        "SET search_path TO {name};
         INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, \
             created_at, updated_at, finished_at)
         SELECT (lpad(to_hex(1700000000000 + g), 12, '0') || '70008000' || lpad(to_hex(g), 12, '0'))::uuid,
             'bulk-' || (g % 4),
             CASE WHEN g % 100 < 90 THEN 'succeeded' WHEN g % 100 < 95 THEN 'failed' \
                  WHEN g % 100 < 98 THEN 'canceled' ELSE 'queued' END,
             repeat('x', 300), CASE WHEN g % 100 = 7 THEN 'order-' || g END, 'api', 0,
             1700000000000 + g * 1000, 1700000000000 + g * 1000,
             CASE WHEN g % 100 < 98 THEN 1700000000000 + g * 1000 END
         FROM generate_series(0, 19999) g;
         ANALYZE runs;",
        name = schema.name
    );
    sqlx::raw_sql(AssertSqlSafe(fill))
        .execute(&mut raw)
        .await
        .expect("fill");
    let some = "0000018b-cfe6-7000-8000-000000002710";
    let filters = [
        RunFilter::default(),
        RunFilter {
            workflow: Some("bulk-1".into()),
            ..RunFilter::default()
        },
        RunFilter {
            statuses: vec![RunStatus::Failed, RunStatus::Canceled],
            ..RunFilter::default()
        },
        RunFilter {
            statuses: vec![RunStatus::Queued],
            ..RunFilter::default()
        },
        RunFilter {
            created_after_ms: Some(1_700_000_000_000 + 5_000_000),
            created_before_ms: Some(1_700_000_000_000 + 5_600_000),
            ..RunFilter::default()
        },
        RunFilter {
            search: Some("order-507".into()),
            ..RunFilter::default()
        },
        RunFilter {
            search: Some(some[..8].into()),
            ..RunFilter::default()
        },
        RunFilter {
            search: Some(some.into()),
            ..RunFilter::default()
        },
    ];
    for filter in filters {
        for before in [None, Some(RunId::new())] {
            let filter = RunFilter {
                before,
                ..filter.clone()
            };
            let sql = format!("EXPLAIN {}", read::list_sql_of(&filter, "id"));
            let rows = read::bind_filter(sqlx::query(AssertSqlSafe(sql)), &filter)
                .fetch_all(&mut raw)
                .await
                .expect("explain");
            let plan: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            assert!(
                !plan.iter().any(|step| step.contains("Seq Scan on runs")),
                "{filter:?} scans the runs: {plan:#?}"
            );
            if filter.search.as_deref() == Some("order-507") {
                assert!(
                    plan.iter().any(|step| step.contains("runs_idempotency")),
                    "{filter:?} reads the key's index: {plan:#?}"
                );
            }
        }
    }
}
