//! `schedules list|get|pause|resume|trigger|backfill|delete` through the embedded CLI on a
//! real SQLite data directory: the exit codes, and what each command changed in the store.
#![cfg(all(feature = "cli", feature = "sqlite"))]

use std::{process::ExitCode, sync::Arc};

use cairn::{
    Engine, Registry, Schedule, SqliteStore, Store, Workflow, WorkflowCtx,
    cli::{Cli, run},
};
use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Empty {}

fn registry() -> Registry {
    let digest: Workflow<Empty, Empty> =
        Workflow::new("digest").run(|_: Empty, _ctx: WorkflowCtx| async move { Ok(Empty {}) });
    let nightly = Schedule::cron("nightly", "30 2 * * *")
        .and_then(|schedule| schedule.timezone("Europe/Berlin"))
        .expect("a valid schedule");
    Registry::new().schedule(nightly, &digest, Empty {})
}

async fn cli(dir: &std::path::Path, args: &[&str]) -> ExitCode {
    let mut argv = vec!["app", "--data-dir", dir.to_str().expect("a UTF-8 path")];
    argv.extend_from_slice(args);
    run(Cli::parse_from(argv), registry()).await
}

async fn paused(dir: &std::path::Path) -> bool {
    let store = SqliteStore::open_in_dir(dir).expect("open");
    store
        .get_schedule("nightly")
        .await
        .expect("read")
        .expect("saved")
        .paused
}

#[tokio::test]
async fn schedules_commands_list_get_pause_and_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let engine = Engine::new(store.clone(), registry()).expect("engine");
    engine.declare_schedules().await.expect("declare");
    store.flush().await.expect("flush");
    drop(engine);

    assert_eq!(
        cli(dir.path(), &["schedules", "list"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(dir.path(), &["schedules", "list", "--json"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(dir.path(), &["schedules", "get", "nightly"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(dir.path(), &["schedules", "get", "nope"]).await,
        ExitCode::from(2),
        "an unknown id is the caller's mistake"
    );
    assert!(!paused(dir.path()).await);
    assert_eq!(
        cli(dir.path(), &["schedules", "pause", "nightly"]).await,
        ExitCode::SUCCESS
    );
    assert!(paused(dir.path()).await, "pause is stored");
    assert_eq!(
        cli(dir.path(), &["schedules", "resume", "nightly", "--json"]).await,
        ExitCode::SUCCESS
    );
    assert!(!paused(dir.path()).await, "resume is stored");
    assert_eq!(
        cli(dir.path(), &["schedules", "pause", "nope"]).await,
        ExitCode::from(2)
    );
}

/// The idempotency keys of every run in the data directory, sorted.
async fn keys(dir: &std::path::Path) -> Vec<String> {
    let store = SqliteStore::open_in_dir(dir).expect("open");
    let mut keys: Vec<String> = store
        .list_runs(&Default::default())
        .await
        .expect("list")
        .into_iter()
        .filter_map(|run| run.idempotency_key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn schedules_commands_trigger_backfill_and_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let engine = Engine::new(store.clone(), registry()).expect("engine");
    engine.declare_schedules().await.expect("declare");
    store.flush().await.expect("flush");
    drop(engine);
    drop(store);

    assert_eq!(
        cli(dir.path(), &["schedules", "trigger", "nightly"]).await,
        ExitCode::SUCCESS
    );
    let manual = keys(dir.path()).await;
    assert_eq!(manual.len(), 1);
    assert!(manual[0].starts_with("sched:nightly:manual:"), "{manual:?}");
    let range = [
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-28T00:00:00Z",
        "--to",
        "2026-03-30T00:00:00Z",
    ];
    for _ in 0..2 {
        assert_eq!(cli(dir.path(), &range).await, ExitCode::SUCCESS);
        assert_eq!(
            keys(dir.path()).await[..2],
            [
                // 02:30 Berlin: CET on the 28th; on the 29th 02:30 does not exist (the
                // clocks jump to 03:00, CEST), so it fires at the first instant after.
                "sched:nightly:2026-03-28T01:30:00Z",
                "sched:nightly:2026-03-29T01:00:00Z",
            ],
            "the fire times' keys, once however often backfilled"
        );
        assert_eq!(keys(dir.path()).await.len(), 3);
    }
    let mut bad = range;
    bad[4] = "yesterday";
    assert_eq!(
        cli(dir.path(), &bad).await,
        ExitCode::from(2),
        "a --from that is no time is a usage error"
    );
    assert_eq!(
        cli(dir.path(), &["schedules", "delete", "nightly"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(dir.path(), &["schedules", "get", "nightly"]).await,
        ExitCode::from(2),
        "deleted"
    );
    assert_eq!(keys(dir.path()).await.len(), 3, "its runs stay");
}

#[tokio::test]
async fn schedules_create_saves_a_spec_once_and_refuses_another_under_its_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let create = |cron: &'static str, workflow: &'static str, input: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let args = [
                "schedules",
                "create",
                "weekly",
                "--workflow",
                workflow,
                "--cron",
                cron,
                "--timezone",
                "Europe/Berlin",
                "--input",
                input,
                "--catch-up",
                "all",
                "--catch-up-window",
                "2h",
                "--overlap",
                "skip",
            ];
            cli(&dir, &args).await
        }
    };
    assert_eq!(
        create("0 9 * * MON", "digest", "{}").await,
        ExitCode::SUCCESS
    );
    let store = SqliteStore::open_in_dir(dir.path()).expect("open");
    let saved = store
        .get_schedule("weekly")
        .await
        .expect("read")
        .expect("saved");
    drop(store);
    assert_eq!(saved.spec.timezone, "Europe/Berlin");
    assert_eq!(
        saved.spec.catch_up,
        cairn_store::CatchUpPolicy::All {
            window_ms: 7_200_000
        }
    );
    assert_eq!(saved.spec.overlap, cairn_store::OverlapPolicy::Skip);
    assert_eq!(
        create("0 9 * * MON", "digest", "{}").await,
        ExitCode::SUCCESS,
        "the same spec again changes nothing"
    );
    for (cron, workflow, input, why) in [
        ("0 10 * * MON", "digest", "{}", "another spec under the id"),
        ("61 * * * *", "digest", "{}", "a bad expression"),
        ("0 9 * * MON", "nope", "{}", "an unknown workflow"),
        ("0 9 * * MON", "digest", "{", "input that is not JSON"),
    ] {
        assert_eq!(
            create(cron, workflow, input).await,
            ExitCode::from(2),
            "{why} is the caller's mistake"
        );
    }
    let store = SqliteStore::open_in_dir(dir.path()).expect("open");
    let kept = store.get_schedule("weekly").await.expect("read");
    assert_eq!(kept, Some(saved), "no refusal changed it");
}

/// The same commands with `--server`, against a server on loopback over the data
/// directory: each one's effect is in the server's store.
#[cfg(feature = "server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_commands_work_over_the_server() {
    use cairn_server::{ServeOptions, Server};

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let engine = Engine::new(store.clone(), registry()).expect("engine");
    engine.declare_schedules().await.expect("declare");
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().expect("an address"),
        worker: false,
        ..ServeOptions::default()
    };
    let server = Server::bind(engine.clone(), options).await.expect("bind");
    let url = format!("http://{}", server.local_addr().expect("an address"));
    let shutdown = cairn::CancellationToken::new();
    let serving = tokio::spawn(server.run(shutdown.clone()));
    // The client's data directory is another one: a command that opened a store instead
    // of asking the server would find no schedule there (and make the directory).
    let client_side = dir.path().join("client-side");
    let remote = async |args: &[&str]| {
        let mut argv = vec!["--server", url.as_str()];
        argv.extend_from_slice(args);
        cli(&client_side, &argv).await
    };

    let create = [
        "schedules",
        "create",
        "remote-weekly",
        "--workflow",
        "digest",
        "--cron",
        "0 9 * * MON",
        "--json",
    ];
    assert_eq!(remote(&create).await, ExitCode::SUCCESS);
    let created = engine
        .get_schedule("remote-weekly")
        .await
        .expect("on the server");
    assert_eq!(created.schedule.spec.expression, "0 9 * * MON");
    assert_eq!(remote(&create).await, ExitCode::SUCCESS, "the same spec");
    let other = [&create[..6], &["0 10 * * MON"]].concat();
    assert_eq!(remote(&other).await, ExitCode::from(2), "another spec: 409");
    for args in [
        &["schedules", "list", "--json"][..],
        &["schedules", "get", "nightly"],
        &["schedules", "pause", "nightly"],
    ] {
        assert_eq!(remote(args).await, ExitCode::SUCCESS, "{args:?}");
    }
    let stored = |engine: Engine| async move {
        engine
            .get_schedule("nightly")
            .await
            .map(|detail| detail.schedule)
    };
    assert!(
        stored(engine.clone()).await.expect("stored").paused,
        "paused on the server"
    );
    assert_eq!(
        remote(&["schedules", "resume", "nightly"]).await,
        ExitCode::SUCCESS
    );
    assert!(!stored(engine.clone()).await.expect("stored").paused);
    assert_eq!(
        remote(&["schedules", "get", "nope"]).await,
        ExitCode::from(2)
    );
    assert_eq!(
        remote(&["schedules", "trigger", "nightly"]).await,
        ExitCode::SUCCESS
    );
    let range = [
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-28T00:00:00Z",
        "--to",
        "2026-03-30T00:00:00Z",
        "--json",
    ];
    assert_eq!(remote(&range).await, ExitCode::SUCCESS);
    assert_eq!(remote(&range).await, ExitCode::SUCCESS);
    assert_eq!(
        keys(dir.path()).await.len(),
        3,
        "a trigger and two fire times, once each"
    );
    assert_eq!(
        remote(&["schedules", "delete", "nightly"]).await,
        ExitCode::SUCCESS
    );
    assert!(
        stored(engine.clone()).await.is_err(),
        "deleted on the server"
    );
    assert_eq!(
        remote(&["schedules", "delete", "nightly"]).await,
        ExitCode::from(2)
    );
    assert!(!client_side.exists(), "no store was opened by the client");
    shutdown.cancel();
    serving.await.expect("the server task").expect("the server");
}
