//! Tests of migrations against a real server: concurrent first connects, reconnecting, a
//! schema newer than this build, and the indexes the hot queries go through.

use cairn_core::{Owner, RunStatus, Scope};
use cairn_store::{CredentialRecord, NewRun, RunFilter, RunId, Store, StoreError};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::MIGRATIONS;
use crate::{PostgresStore, common::TestSchema, read};

async fn version_of(conn: &mut PgConnection, schema: &str) -> i64 {
    let sql = format!("SELECT version FROM {schema}.cairn_schema_version");
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .expect("the version row")
}

fn run() -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: "w".into(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_at_once_migrate_the_schema_once() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let opens: Vec<_> = (0..6)
        .map(|n| {
            let (url, options) = (schema.url.clone(), schema.options(&format!("opener-{n}")));
            tokio::spawn(async move { PostgresStore::connect_with(&url, options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        let store = open
            .await
            .expect("an opener panicked")
            .expect("every concurrent connect succeeds");
        stores.push(store);
    }
    let mut raw = schema.raw().await;
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        MIGRATIONS.len() as i64
    );
    let created = stores[0].create_run(run()).await.expect("create");
    let again = schema.store().await;
    assert!(
        again
            .get_run(created.run_id)
            .await
            .expect("get_run")
            .is_some(),
        "connecting to an up-to-date schema keeps its data"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&schema.name)
    .fetch_one(&mut raw)
    .await
    .expect("count tables");
    assert_eq!(
        tables, 10,
        "runs, events, hooks, credentials, schedules, schedule_misses, webhook_deliveries, \
         poll_sources, poll_items and the version"
    );
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    drop(schema.store().await);
    let mut raw = schema.raw().await;
    let sql = format!(
        "UPDATE {}.cairn_schema_version SET version = 99",
        schema.name
    );
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("pretend a newer Cairn migrated it");
    let error = PostgresStore::connect_with(&schema.url, schema.options("newer"))
        .await
        .expect_err("a newer schema must be refused");
    assert!(
        matches!(&error, StoreError::Corrupt(message) if message.contains("upgrade Cairn")),
        "{error}"
    );
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        99,
        "left as it was"
    );
}

#[tokio::test]
async fn bad_urls_and_schema_names_are_refused_before_connecting() {
    let bad_url = PostgresStore::connect("mysql://nope").await;
    assert!(
        matches!(bad_url, Err(StoreError::Unavailable(_))),
        "{bad_url:?}"
    );
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mut options = schema.options("bad-name");
    options.schema = Some("Robert'); DROP TABLE runs;--".into());
    let bad_name = PostgresStore::connect_with(&schema.url, options).await;
    assert!(
        matches!(&bad_name, Err(error) if error.to_string().contains("lowercase")),
        "{bad_name:?}"
    );
}

/// The plan of `sql` on `conn` (its `params` typed placeholders bound to sample values).
pub(super) async fn plan(conn: &mut PgConnection, sql: &str, params: &str) -> String {
    let explain = format!("DEALLOCATE PREPARE ALL; PREPARE q({params}) AS {sql}");
    sqlx::raw_sql(AssertSqlSafe(explain))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let values = params
        .split(',')
        .map(|kind| match kind.trim() {
            "bigint" => "1000",
            "bigint[]" => "'{1}'",
            "text[]" => "'{w}'",
            "uuid" => "'00000000-0000-0000-0000-000000000000'",
            "uuid[]" => "'{00000000-0000-0000-0000-000000000000}'",
            _ => "'w'",
        })
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::raw_sql(AssertSqlSafe(format!("EXPLAIN EXECUTE q({values})")))
        .fetch_all(&mut *conn)
        .await
        .expect("explain");
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).expect("a plan line"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn listings_go_through_indexes() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    drop(schema.store().await);
    let mut raw = schema.raw().await;
    // Sequential scans discouraged, so that an unusable index shows as a scan.
    let search = format!(
        "SET search_path TO {}; SET enable_seqscan = off",
        schema.name
    );
    sqlx::raw_sql(AssertSqlSafe(search))
        .execute(&mut raw)
        .await
        .expect("search_path");
    let filters = [
        (RunFilter::default(), "bigint", "runs_by_created"),
        (
            RunFilter {
                workflow: Some("w".into()),
                ..RunFilter::default()
            },
            "bigint, text",
            "runs_by_workflow",
        ),
        (
            RunFilter {
                status: Some(RunStatus::Failed),
                ..RunFilter::default()
            },
            "bigint, text",
            "runs_by_status",
        ),
        (
            RunFilter {
                parent_run_id: Some(RunId::new()),
                ..RunFilter::default()
            },
            "bigint, uuid",
            "runs_by_parent",
        ),
    ];
    for (filter, types, index) in filters {
        let listing = plan(&mut raw, &read::list_sql(&filter), types).await;
        assert!(listing.contains(index), "{filter:?}: {listing}");
        assert!(!listing.contains("Sort"), "{filter:?} sorts: {listing}");
    }
    let credentials = cairn_store::CredentialFilter {
        key: Some("slack".into()),
        org: Some("acme".into()),
        ..cairn_store::CredentialFilter::default()
    };
    let (sql, values) = crate::credentials::list_sql(&credentials);
    assert_eq!(values, ["slack", "acme"]);
    let listing = plan(&mut raw, &sql, "text, text").await;
    assert!(listing.contains("credentials_by_key"), "{listing}");
}

#[tokio::test]
async fn pooled_connections_carry_the_schema_and_the_statement_timeout() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mut options = schema.options("settings");
    options.statement_timeout = std::time::Duration::from_millis(1_500);
    let store = PostgresStore::connect_with(&schema.url, options)
        .await
        .expect("connect");
    let mut conn = store.pool.acquire().await.expect("a pooled connection");
    let search_path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&mut *conn)
        .await
        .expect("search_path");
    assert_eq!(search_path, schema.name);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *conn)
        .await
        .expect("statement_timeout");
    assert_eq!(timeout, "1500ms");
    assert_eq!(store.schema(), schema.name);
}

/// A v1 schema holding a run as v1 wrote it: a stored `RunCreated` (at 5, not the row's
/// `created_at` 1), a step's start (seq 2), `last_seq` 2, leased to `w`.
async fn v1_schema_with_a_run(schema: &TestSchema, id: RunId) {
    let mut raw = schema.raw().await;
    let name = &schema.name;
    let created = serde_json::to_string(&cairn_core::Event::RunCreated {
        workflow: "w".into(),
        input: json!({"v": 1}),
    })
    .expect("encode");
    let started = serde_json::to_string(&started(0)).expect("encode");
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {v1}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (1);
         INSERT INTO runs (id, workflow, status, input, trigger, executions, lease_owner, lease_expires_at, \
             ready_at, created_at, updated_at, last_seq) \
             VALUES ('{id}', 'w', 'running', '{{\"v\":1}}', 'test', 1, 'w', 99999, 99999, 1, 7, 2);
         INSERT INTO events (run_id, seq, at, type, step_key, payload) VALUES \
             ('{id}', 1, 5, 'run_created', NULL, '{created}'), \
             ('{id}', 2, 7, 'step_started', 'step#0', '{started}');",
        v1 = MIGRATIONS[0],
        id = id.0,
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v1 schema");
}

fn started(n: u32) -> cairn_core::Event {
    cairn_core::Event::StepStarted {
        call: None,
        key: cairn_core::StepKey::numbered("step", n),
        kind: cairn_core::StepKind::Action,
        slug: "step".into(),
        input: json!(n),
        attempt: 1,
        credentials: Vec::new(),
    }
}

#[tokio::test]
async fn a_v1_schema_is_upgraded_and_its_runs_read_and_grow_as_before() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let id = RunId::new();
    v1_schema_with_a_run(&schema, id).await;
    let store = schema.store().await;
    let mut raw = schema.raw().await;
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        MIGRATIONS.len() as i64
    );
    let log = store.events(id).await.expect("events");
    let seqs: Vec<(u64, i64)> = log
        .iter()
        .map(|record| (record.seq, record.at_ms))
        .collect();
    assert_eq!(
        seqs,
        [(1, 5), (2, 7)],
        "the stored RunCreated is read, not made"
    );
    let worker = cairn_store::WorkerId("w".into());
    store
        .append(id, &worker, &[started(1)], 11)
        .await
        .expect("append after the upgrade");
    let log = store.events(id).await.expect("events");
    assert_eq!(log.len(), 3);
    assert_eq!((log[2].seq, &log[2].event), (3, &started(1)));
    let run = store.get_run(id).await.expect("get_run").expect("the run");
    assert_eq!(run.updated_at_ms, 11, "the last event's time");
    assert_eq!(
        run.owner,
        Owner::default(),
        "a v1 run has the default owner"
    );
}

/// A v2 schema holding a queued run, as v2 wrote it (no `RunCreated` row).
async fn v2_schema_with_a_run(schema: &TestSchema, id: RunId) {
    let mut raw = schema.raw().await;
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {v1} {v2}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (2);
         INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at) \
             VALUES ('{id}', 'w', 'queued', '{{}}', 'test', 1, 1, 1);",
        name = schema.name,
        v1 = MIGRATIONS[0],
        v2 = MIGRATIONS[1],
        id = id.0,
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v2 schema");
}

#[tokio::test]
async fn a_v2_schema_is_upgraded_to_owners_and_credentials() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let id = RunId::new();
    v2_schema_with_a_run(&schema, id).await;
    let store = schema.store().await;
    let mut raw = schema.raw().await;
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        MIGRATIONS.len() as i64
    );
    let listed = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list_runs");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].owner,
        Owner::default(),
        "a v2 run has the default owner"
    );
    let worker = cairn_store::WorkerId("w".into());
    let lease = cairn_store::Lease {
        worker,
        expires_at_ms: 99_999,
    };
    let claimed = store.claim_run(id, &lease, 2).await.expect("claim_run");
    let cairn_store::ClaimOutcome::Claimed(claimed) = claimed else {
        panic!("the run is claimable: {claimed:?}");
    };
    assert_eq!(claimed.run.owner, Owner::default());

    let owner = Owner {
        org: "acme".into(),
        project: "web".into(),
        user: None,
    };
    let owned = store
        .create_run(NewRun {
            owner: owner.clone(),
            ..run()
        })
        .await
        .expect("create")
        .run_id;
    let plain = store.create_run(run()).await.expect("create").run_id;
    let stored_owner = format!("SELECT owner FROM {}.runs WHERE id = $1", schema.name);
    let stored = async |id: RunId, raw: &mut PgConnection| -> Option<String> {
        sqlx::query_scalar(AssertSqlSafe(stored_owner.clone()))
            .bind(id.0)
            .fetch_one(raw)
            .await
            .expect("the run's row")
    };
    assert_eq!(
        stored(plain, &mut raw).await,
        None,
        "the default owner is a NULL"
    );
    let json = stored(owned, &mut raw).await.expect("an owner");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON"),
        json!({ "org": "acme", "project": "web" })
    );
    let read = store.get_run(owned).await.expect("get_run").expect("there");
    assert_eq!(read.owner, owner);

    let credential = CredentialRecord {
        id: "cred_1".into(),
        key: "slack".into(),
        holder: owner.holder(Scope::Project).expect("a project"),
        is_default: true,
        fields: vec!["botToken".into()],
        sealed: vec![0, 255, 1],
        expires_at_ms: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    store.put_credential(credential.clone()).await.expect("put");
    assert_eq!(
        store.get_credential("cred_1").await.expect("get"),
        Some(credential)
    );
}

#[tokio::test]
async fn a_step_append_writes_only_events_and_a_new_run_stores_no_run_created() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let worker = cairn_store::WorkerId("w".into());
    let id = RunId::new();
    let new = NewRun {
        id,
        history: vec![started(0)],
        lease: Some(cairn_store::Lease {
            worker: worker.clone(),
            expires_at_ms: 99_999,
        }),
        ..run()
    };
    store.create_run(new).await.expect("create");
    let mut raw = schema.raw().await;
    let row_version = format!(
        "SELECT xmin::text || updated_at::text FROM {}.runs WHERE id = $1",
        schema.name
    );
    let before: String = sqlx::query_scalar(AssertSqlSafe(row_version.clone()))
        .bind(id.0)
        .fetch_one(&mut raw)
        .await
        .expect("the run's row");
    store
        .append(id, &worker, &[started(1)], 50)
        .await
        .expect("append");
    let after: String = sqlx::query_scalar(AssertSqlSafe(row_version))
        .bind(id.0)
        .fetch_one(&mut raw)
        .await
        .expect("the run's row");
    assert_eq!(
        before, after,
        "a step's append does not rewrite the run's row"
    );
    let stored: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT seq FROM {}.events WHERE run_id = $1 ORDER BY seq",
        schema.name
    )))
    .bind(id.0)
    .fetch_all(&mut raw)
    .await
    .expect("events rows");
    assert_eq!(stored, [2, 3], "no RunCreated row");
    let log = store.events(id).await.expect("events");
    assert!(
        matches!(&log[0].event, cairn_core::Event::RunCreated { workflow, .. } if workflow == "w"),
        "{log:?}"
    );
    assert_eq!(
        (log[0].seq, log[0].at_ms),
        (1, 1),
        "made at the run's created_at"
    );
    assert_eq!(log.len(), 3);
    let after_one = store.events_after(id, 1).await.expect("events_after");
    assert_eq!(after_one.len(), 2, "no made RunCreated after seq 1");
    let run = store.get_run(id).await.expect("get_run").expect("the run");
    assert_eq!(run.updated_at_ms, 50, "the last event's time");
}

#[tokio::test]
async fn a_v3_schema_is_upgraded_to_schedules_and_its_keys_still_decide() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let id = RunId::new();
    let mut raw = schema.raw().await;
    let sql = format!(
        "CREATE SCHEMA {name}; SET search_path TO {name}; {v1} {v2} {v3}
         CREATE TABLE cairn_schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version BIGINT NOT NULL);
         INSERT INTO cairn_schema_version (version) VALUES (3);
         INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, created_at, \
             updated_at) VALUES ('{id}', 'w', 'queued', '{{}}', 'sched:s:1', 'test', 1, 1, 1);",
        name = schema.name,
        v1 = MIGRATIONS[0],
        v2 = MIGRATIONS[1],
        v3 = MIGRATIONS[2],
        id = id.0,
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut raw)
        .await
        .expect("make a v3 schema");
    let store = schema.store().await;
    assert_eq!(
        version_of(&mut raw, &schema.name).await,
        MIGRATIONS.len() as i64
    );
    let spec = cairn_store::ScheduleSpec {
        workflow: "w".into(),
        input: json!({}),
        expression: "* * * * * *".into(),
        timezone: "UTC".into(),
        catch_up: cairn_store::CatchUpPolicy::None,
        overlap: cairn_store::OverlapPolicy::AllowAll,
    };
    let schedule = cairn_store::ScheduleRecord {
        id: "s".into(),
        spec,
        paused: false,
        next_fire_at_ms: 1,
        last_fire_at_ms: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    store.put_schedule(schedule).await.expect("put");
    let fire = cairn_store::ScheduleFire {
        schedule_id: "s".into(),
        expected_next_fire_at_ms: 1,
        runs: vec![NewRun {
            idempotency_key: Some("sched:s:1".into()),
            ..run()
        }],
        next_fire_at_ms: 1_000,
        last_fire_at_ms: Some(1),
        misses: Vec::new(),
        now_ms: 1,
    };
    let fired = store.fire_schedule(fire).await.expect("fire");
    assert_eq!(
        fired,
        cairn_store::FireOutcome::Fired(vec![cairn_store::CreateOutcome {
            run_id: id,
            created: false
        }]),
        "the v3 run under the key is the fire's run"
    );
    let stored = store.get_schedule("s").await.expect("get").expect("there");
    assert_eq!(stored.next_fire_at_ms, 1_000);
}
