//! The kill storm's workflow: `marked` runs three `mark` steps. Each execution of `mark` writes
//! `<run>|<step>|start <nonce>|<pid>` to the ledger before it does anything else, takes a few
//! milliseconds (a window for a kill; `$FIXTURE_MARK_MS` makes it longer), and returns its
//! nonce in its output. So after a storm of `kill -9`s, the ledger says which executions of a
//! step began, in order, and the run's log says which one's result was recorded: it must be
//! the last to begin (an execution that began after a result was durable would be a completed
//! step run again).

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn::{Action, ActionCtx, Registry, Workflow, WorkflowCtx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Tag, ledger};

/// What `mark` returns: the tag, and the nonce of the execution that produced it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Marked {
    /// The input's tag.
    pub(crate) tag: String,
    /// `<pid>.<start nanos>.<count>`: unique to one execution of one step.
    pub(crate) nonce: String,
}

/// A nonce no other execution of this or another process has.
fn nonce() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{}.{nanos}.{count}", std::process::id())
}

/// How long `mark` works: `$FIXTURE_MARK_MS` milliseconds, 3 by default.
fn mark_time() -> Duration {
    let ms = std::env::var("FIXTURE_MARK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(3);
    Duration::from_millis(ms)
}

static MARK: LazyLock<Action<Tag, Marked>> = LazyLock::new(|| {
    Action::new("mark")
        .description("Writes a ledger line naming this execution, takes 3 ms ($FIXTURE_MARK_MS), returns its nonce")
        .run(|input: Tag, ctx: ActionCtx| async move {
            let nonce = nonce();
            ledger(&ctx, &format!("start {nonce}"))?;
            tokio::time::sleep(mark_time()).await;
            Ok(Marked {
                tag: input.tag,
                nonce,
            })
        })
});

static MARKED: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("marked").description("mark three times").run(
        |input: Tag, _ctx: WorkflowCtx| async move {
            let mut tag = input;
            for _ in 0..3 {
                let marked = MARK.run(tag).await?;
                tag = Tag { tag: marked.tag };
            }
            Ok(tag)
        },
    )
});

/// Adds `marked` and `mark`.
pub(crate) fn register(registry: Registry) -> Registry {
    registry.workflow(&MARKED).action(&MARK)
}
