//! Tests of schema version 5 against a real server: a version 4 schema (with a schedule in
//! it) upgrades to the webhook deliveries log, keeps its schedule, and logs a delivery.

use cairn_store::{RunId, Store, WebhookDelivery};
use sqlx::AssertSqlSafe;

use super::MIGRATIONS;
use crate::common::TestSchema;

#[tokio::test]
async fn a_v4_schema_is_upgraded_to_the_deliveries_log() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mut raw = schema.raw().await;
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {older}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (4);
         INSERT INTO schedules (id, spec, paused, next_fire_at, created_at, updated_at) \
             VALUES ('s', '{{}}', false, 1, 1, 1);",
        name = schema.name,
        older = MIGRATIONS[..4].join("\n"),
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v4 schema");
    let store = schema.store().await;
    let version: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {}.cairn_schema_version",
        schema.name
    )))
    .fetch_one(&mut raw)
    .await
    .expect("the version row");
    assert_eq!(version, MIGRATIONS.len() as i64);
    let kept: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.schedules",
        schema.name
    )))
    .fetch_one(&mut raw)
    .await
    .expect("count");
    assert_eq!(kept, 1, "the v4 schedule is kept");
    let delivery = WebhookDelivery {
        endpoint: "github".into(),
        received_at_ms: 1,
        status: 202,
        outcome: "started".into(),
        reason: String::new(),
        delivery_id: Some("d-1".into()),
        run_id: Some(RunId::new()),
    };
    store
        .record_webhook_delivery(delivery.clone())
        .await
        .expect("record");
    let listed = store.webhook_deliveries("github", 5).await.expect("list");
    assert_eq!(listed, vec![delivery]);
}
