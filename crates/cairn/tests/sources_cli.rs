//! `sources list|poll-now|pause|resume` through the embedded CLI on a real SQLite data
//! directory: the exit codes, and what each command changed in the store.
#![cfg(all(feature = "cli", feature = "sqlite"))]

use std::{process::ExitCode, sync::Arc};

use cairn::{
    Engine, PollCtx, PollError, PollSource, PollSourceRecord, PollState, Polled, Registry,
    SqliteStore, Store, Workflow, WorkflowCtx,
    cli::{Cli, run},
};
use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Empty {}

async fn nothing(_ctx: PollCtx) -> Result<Polled<u64>, PollError> {
    Ok(Polled::new(Vec::new(), None))
}

fn registry() -> Registry {
    let triage: Workflow<Empty, Empty> =
        Workflow::new("triage").run(|_: Empty, _ctx: WorkflowCtx| async move { Ok(Empty {}) });
    let issues = PollSource::new("issues")
        .every("1h")
        .poll(|ctx, _cursor| nothing(ctx))
        .item_key(|id: &u64| id.to_string())
        .attach(&triage, |_id| Ok(Some(Empty {})));
    Registry::new().poll(issues)
}

async fn cli(dir: &std::path::Path, args: &[&str]) -> ExitCode {
    let mut argv = vec!["app", "--data-dir", dir.to_str().expect("a UTF-8 path")];
    argv.extend_from_slice(args);
    run(Cli::parse_from(argv), registry()).await
}

async fn stored(dir: &std::path::Path) -> PollSourceRecord {
    let store = SqliteStore::open_in_dir(dir).expect("open");
    store
        .get_poll_source("issues")
        .await
        .expect("read")
        .expect("saved")
}

#[tokio::test]
async fn sources_commands_list_poll_now_pause_and_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let engine = Engine::new(store.clone(), registry()).expect("engine");
    engine.declare_poll_sources().await.expect("declare");
    engine.poll_due_sources().await.expect("the seeding poll");
    store.flush().await.expect("flush");
    drop(engine);
    let polled = stored(dir.path()).await;
    assert!(polled.seeded);

    for list in [&["sources", "list"][..], &["sources", "list", "--json"]] {
        assert_eq!(cli(dir.path(), list).await, ExitCode::SUCCESS);
    }
    assert_eq!(
        cli(dir.path(), &["sources", "pause", "issues"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(stored(dir.path()).await.state, PollState::Paused);
    assert_eq!(
        cli(dir.path(), &["sources", "resume", "issues", "--json"]).await,
        ExitCode::SUCCESS
    );
    let resumed = stored(dir.path()).await;
    assert_eq!(resumed.state, PollState::Active, "resume is stored");
    assert!(
        resumed.next_poll_at_ms < polled.next_poll_at_ms,
        "resumed: due now, not in an hour"
    );
    assert_eq!(
        cli(dir.path(), &["sources", "pause", "issues"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(dir.path(), &["sources", "poll-now", "issues"]).await,
        ExitCode::SUCCESS
    );
    let now = stored(dir.path()).await;
    assert_eq!(now.state, PollState::Paused, "poll-now does not resume");
    assert!(now.next_poll_at_ms < polled.next_poll_at_ms, "due now");
    for unknown in ["pause", "resume", "poll-now"] {
        assert_eq!(
            cli(dir.path(), &["sources", unknown, "nope"]).await,
            ExitCode::from(2),
            "an unknown name is the caller's mistake ({unknown})"
        );
    }
}
