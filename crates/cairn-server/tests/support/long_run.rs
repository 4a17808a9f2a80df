//! A run of many steps, for the pages that show them in windows: written straight to the
//! store (its history in the create), so no workflow has to run 5,000 steps.

use cairn_core::{Event, StepKey, StepKind};
use cairn_store::{NewRun, RunId};
use serde_json::json;

use super::TestServer;

/// A succeeded run of `steps` action steps (`fetch#0`, `fetch#1`, …), written to the store
/// in one create.
pub async fn long_run(server: &TestServer, steps: u32) -> RunId {
    let mut history = Vec::new();
    for n in 0..steps {
        let key = StepKey::numbered("fetch", n);
        history.push(Event::StepStarted {
            call: None,
            key: key.clone(),
            kind: StepKind::Action,
            slug: "fetch".into(),
            input: json!({ "page": n }),
            attempt: 1,
            credentials: Vec::new(),
        });
        history.push(Event::StepCompleted {
            call: None,
            key,
            kind: StepKind::Action,
            slug: "fetch".into(),
            output: json!({ "items": n % 7 }),
        });
    }
    history.push(Event::RunCompleted {
        output: json!({ "pages": steps }),
    });
    let id = RunId::new();
    let now_ms = cairn_engine::parse_timestamp("2026-12-04T09:00:00Z").expect("a time");
    server
        .engine
        .store()
        .create_run(NewRun {
            id,
            workflow: "greet".into(),
            input: json!({ "name": "many" }),
            idempotency_key: None,
            parent_run_id: None,
            forked_from: None,
            trigger: "api".into(),
            owner: Default::default(),
            history,
            lease: None,
            now_ms,
        })
        .await
        .expect("create the run");
    id
}
