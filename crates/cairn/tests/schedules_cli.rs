//! `schedules list|get|pause|resume` through the embedded CLI on a real SQLite data
//! directory: the exit codes, and what each command changed in the store.
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
