//! Lone commands in autocommit: a refused one writes and announces nothing, one whose answer
//! was lost is reported as maybe committed and not run again, and one on a connection that
//! died while idle runs again on a new one.

use std::time::Duration;

use cairn_core::Event;
use cairn_store::{RunId, Store, StoreError, StoreResult, WorkerId};
use serde_json::json;
use sqlx::{ConnectOptions, postgres::PgListener};

use crate::{
    PostgresStore,
    batch::{Batch, Link},
    common::TestSchema,
    notify::{CHANGES_CHANNEL, hold_watch_keys},
    writer::{
        Op, Output,
        tests::{append, completed, leased_run},
    },
};

#[path = "../tests/common/proxy.rs"]
mod proxy;

/// What the tests' batches announce themselves as.
const INSTANCE: &str = "alone-tests";

/// Runs `op` as a batch of its own on `link`, as the write task would.
async fn lone(
    store: &PostgresStore,
    link: &mut Link,
    op: Op,
) -> Result<StoreResult<Output>, StoreError> {
    let changes = cairn_store::watch::ChangeHub::new();
    let batch = Batch {
        connect: &store.connect,
        schema: &store.schema,
        instance: INSTANCE,
        changes: &changes,
        timer: &cairn_store::CommitTimer::default(),
    };
    let mut results = batch
        .run(link, &[&op])
        .await
        .map_err(|failed| failed.error())?;
    Ok(results.remove(0))
}

fn ended(id: RunId, worker: &WorkerId) -> Op {
    append(
        id,
        worker,
        &[completed(0), Event::RunCompleted { output: json!(0) }],
    )
}

#[tokio::test]
async fn a_refused_lone_append_or_end_writes_and_announces_nothing() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let (w, stranger) = (WorkerId("w".into()), WorkerId("stranger".into()));
    let (first, second) = (leased_run(&w), leased_run(&w));
    let (a, b) = (first.id, second.id);
    let mut link = Link::default();
    for run in [first, second] {
        lone(&store, &mut link, Op::CreateRun(run))
            .await
            .expect("committed")
            .expect("created");
    }
    let mut listener = PgListener::connect(&schema.url).await.expect("connect");
    listener.listen(CHANGES_CHANNEL).await.expect("listen");
    hold_watch_keys(&mut listener, &schema.name)
        .await
        .expect("watch: writers announce");

    for refused in [append(a, &stranger, &[completed(0)]), ended(a, &stranger)] {
        let result = lone(&store, &mut link, refused).await.expect("answered");
        assert!(
            matches!(&result, Err(StoreError::LeaseLost { worker, .. }) if *worker == stranger),
            "fenced off: {:?}",
            result.err()
        );
    }
    assert_eq!(
        store.events(a).await.expect("events").len(),
        1,
        "nothing appended"
    );
    let run = store.get_run(a).await.expect("read").expect("exists");
    assert_eq!(run.status, cairn_core::RunStatus::Running, "not ended");

    lone(&store, &mut link, append(b, &w, &[completed(0)]))
        .await
        .expect("committed")
        .expect("appended");
    // Notifications arrive in commit order: the first of this schema's is the accepted
    // append's, sent by its statement (the server's JSON, with spaces), none for `a`.
    let heard = loop {
        let notification = tokio::time::timeout(Duration::from_secs(20), listener.recv())
            .await
            .expect("a notification within 20 s")
            .expect("listening");
        let (of, by, runs): (String, String, Vec<RunId>) =
            serde_json::from_str(notification.payload()).expect("a change payload");
        if of == schema.name {
            assert_eq!(by, INSTANCE);
            assert!(
                notification.payload().contains("\", \""),
                "{}",
                notification.payload()
            );
            break runs;
        }
    };
    assert_eq!(heard, [b], "the refused appends announced nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_whose_answer_is_lost_is_maybe_committed_and_not_run_again() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let proxy = proxy::Proxy::start(&schema.url).await;
    let store = PostgresStore::connect_with(&proxy.url, schema.options("cairn-lost-answer"))
        .await
        .expect("connect through the proxy");
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    let mut link = Link::default();
    lone(&store, &mut link, Op::CreateRun(run))
        .await
        .expect("committed")
        .expect("created");
    // The first append also prepares the statement (a round trip of its own) on the link.
    lone(&store, &mut link, append(id, &w, &[completed(0)]))
        .await
        .expect("committed")
        .expect("appended");

    // The server commits the next append, then its answer is lost with the connection.
    proxy.lose_answers();
    let result = lone(&store, &mut link, append(id, &w, &[completed(1)])).await;
    assert!(
        matches!(&result, Err(StoreError::MaybeCommitted(_))),
        "{:?}",
        result.map(|_| ())
    );
    let direct = schema.store().await;
    let log = direct.events(id).await.expect("events");
    assert_eq!(
        log.len(),
        3,
        "committed once, never run again blindly: {log:?}"
    );
    assert_eq!(log[2].event, completed(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_on_a_connection_lost_while_idle_runs_again_on_a_new_one() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let proxy = proxy::Proxy::start(&schema.url).await;
    let app = format!("cairn-idle-{}", &schema.name[11..23]);
    let store = PostgresStore::connect_with(&proxy.url, schema.options(&app))
        .await
        .expect("connect through the proxy");
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    lone(&store, &mut Link::default(), Op::CreateRun(run))
        .await
        .expect("committed")
        .expect("created");

    // A connection that has not answered lately (here: never) is lost while idle, with no
    // word from the server (a network failure, a server killed): the append must find out
    // before it sends anything that could commit, so that it may run again.
    let idle = store.connect.connect().await.expect("connect");
    proxy.down();
    let mut watcher = schema.raw().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut watcher)
                .await
                .expect("pg_stat_activity");
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never cut its connections"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.up();
    let mut link = Link::adopt(Some(idle));
    lone(&store, &mut link, append(id, &w, &[completed(0)]))
        .await
        .expect("committed on a new connection")
        .expect("appended");
    let log = store.events(id).await.expect("events");
    assert_eq!(log.len(), 2, "appended exactly once: {log:?}");
}
