//! Tests of schema version 6 against a real server: a version 5 schema upgrades to poll
//! sources, and a run it holds under an item's key is the one a poll's commit answers.

use cairn_store::{
    CreateOutcome, Lease, NewRun, PollCommit, PollCommitOutcome, PollItem, PollResult,
    PollSourceRecord, RunId, Store, WorkerId,
};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection};

use super::MIGRATIONS;
use crate::common::TestSchema;

async fn version_of(conn: &mut PgConnection, schema: &str) -> i64 {
    let sql = format!("SELECT version FROM {schema}.cairn_schema_version");
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .expect("the version row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_schema_is_upgraded_to_poll_sources_and_its_keys_still_decide() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let id = RunId::new();
    let mut raw = schema.raw().await;
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {v1} {v2} {v3} {v4} {v5}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (5);
         INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, created_at, \
             updated_at) VALUES ('{id}', 'w', 'queued', '{{}}', 'poll:issues:42', 'test', 1, 1, 1);",
        name = schema.name,
        v1 = MIGRATIONS[0],
        v2 = MIGRATIONS[1],
        v3 = MIGRATIONS[2],
        v4 = MIGRATIONS[3],
        v5 = MIGRATIONS[4],
        id = id.0,
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v5 schema");
    let store = schema.store().await;
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        MIGRATIONS.len() as i64
    );
    store
        .declare_poll_source(PollSourceRecord::new("issues", "w", 1))
        .await
        .expect("declare");
    let lease = Lease {
        worker: WorkerId("w1".into()),
        expires_at_ms: 30_001,
    };
    let claim = store
        .claim_poll_source("issues", &lease, 1)
        .await
        .expect("claim")
        .expect("due at once");
    let run = NewRun {
        id: RunId::new(),
        workflow: "w".into(),
        input: json!({}),
        idempotency_key: Some("poll:issues:42".into()),
        parent_run_id: None,
        forked_from: None,
        trigger: "poll:issues:42".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: 1,
    };
    let commit = PollCommit {
        lease: claim.lease,
        result: PollResult::Items {
            items: vec![PollItem {
                key: "42".into(),
                run: Some(run),
            }],
            cursor: Some(json!({"since": 42})),
        },
        next_poll_at_ms: 60_001,
        now_ms: 1,
    };
    assert_eq!(
        store.commit_poll(commit).await.expect("commit"),
        PollCommitOutcome::Committed {
            runs: vec![CreateOutcome {
                run_id: id,
                created: false
            }],
            seen_before: 0
        },
        "the v5 run under the key is the item's run"
    );
    let stored = store
        .get_poll_source("issues")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(stored.cursor, Some(json!({"since": 42})));
    assert!(stored.seeded);
}
