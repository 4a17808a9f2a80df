//! Change notifications only while watched (decision 0050): writers of a schema that no store
//! watches send none, a watch makes every writer notify, and a watch arriving while a writer
//! holds a watch key (having decided not to notify) waits for that writer's commit.

use std::time::{Duration, Instant};

use cairn_store::{RunId, Store, WorkerId};
use sqlx::{Connection, PgConnection, postgres::PgListener};

use super::{CHANGES_CHANNEL, hold_watch_keys};
use crate::{
    common::TestSchema,
    writer::{
        Op,
        tests::{append, completed, leased_run, run_batch},
    },
};

/// The marker a test sends itself on the changes channel, as a change of no run.
fn marker(schema: &str) -> String {
    serde_json::json!([schema, "marker", []]).to_string()
}

/// The next change notification about `schema` that `listener` hears: its instance and runs.
async fn next_change(listener: &mut PgListener, schema: &str) -> (String, Vec<RunId>) {
    loop {
        let notification = tokio::time::timeout(Duration::from_secs(20), listener.recv())
            .await
            .expect("a notification within 20 s")
            .expect("listening");
        let Ok((of, by, runs)) =
            serde_json::from_str::<(String, String, Vec<RunId>)>(notification.payload())
        else {
            continue;
        };
        if of == schema {
            return (by, runs);
        }
    }
}

#[tokio::test]
async fn writers_notify_changes_only_while_a_watch_holds_the_keys() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let mut listener = PgListener::connect(&schema.url).await.expect("connect");
    listener.listen(CHANGES_CHANNEL).await.expect("listen");
    let w = WorkerId("w".into());

    // Nobody holds the keys: neither a batch nor a lone statement announces its changes.
    let (first, second) = (leased_run(&w), leased_run(&w));
    let (a, b) = (first.id, second.id);
    let created = run_batch(&store, &[Op::CreateRun(first), Op::CreateRun(second)]).await;
    assert!(created.iter().all(Result::is_ok));
    store
        .append(a, &w, &[completed(0)], 1)
        .await
        .expect("a lone append");
    // Notifications arrive in commit order: the marker, sent after both, comes first.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(marker(&schema.name))
        .execute(&mut listener)
        .await
        .expect("notify the marker");
    assert_eq!(
        next_change(&mut listener, &schema.name).await.0,
        "marker",
        "with no watch, the writes announced nothing"
    );

    // Watched: both announce again.
    hold_watch_keys(&mut listener, &schema.name)
        .await
        .expect("hold the keys");
    let batch = run_batch(
        &store,
        &[
            append(a, &w, &[completed(1)]),
            append(b, &w, &[completed(0)]),
        ],
    )
    .await;
    assert!(batch.iter().all(Result::is_ok));
    let (_, mut heard) = next_change(&mut listener, &schema.name).await;
    heard.sort_unstable();
    let mut both = vec![a, b];
    both.sort_unstable();
    assert_eq!(heard, both, "the batch's changes, announced at its commit");
    store
        .append(b, &w, &[completed(1)], 2)
        .await
        .expect("a lone append");
    assert_eq!(next_change(&mut listener, &schema.name).await.1, [b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_waits_for_the_writer_that_took_a_key_and_announced_nothing() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    // A writer's transaction that found no watch: it holds every key, so whichever one the
    // watch asks for first, it must wait.
    let mut writer = PgConnection::connect(&schema.url).await.expect("connect");
    sqlx::raw_sql("BEGIN")
        .execute(&mut writer)
        .await
        .expect("begin");
    let taken: i64 = sqlx::query_scalar(concat!(
        "SELECT count(*) FILTER (WHERE pg_try_advisory_xact_lock(",
        watch_lock_base!(),
        " + slot, hashtext($1))) FROM generate_series(0, ",
        watch_slots!(),
        " - 1) AS slot"
    ))
    .bind(&schema.name)
    .fetch_one(&mut writer)
    .await
    .expect("take the keys");
    assert_eq!(taken, 16, "no watch holds the keys yet");

    let watching = tokio::spawn(async move {
        let watch = store.watch_changes().await.map(|_| ());
        (store, watch)
    });
    let mut observer = PgConnection::connect(&schema.url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objid = hashtext($1)::oid)",
        )
        .bind(&schema.name)
        .fetch_one(&mut observer)
        .await
        .expect("pg_locks");
        if waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never asked for the keys"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !watching.is_finished(),
        "the watch waits for the writer's commit"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut writer)
        .await
        .expect("commit");
    let (_store, watch) = tokio::time::timeout(Duration::from_secs(20), watching)
        .await
        .expect("the watch starts once the writer committed")
        .expect("the watching task");
    watch.expect("watch_changes");
}
