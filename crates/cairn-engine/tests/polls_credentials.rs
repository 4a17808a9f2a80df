//! A poll source's credential, resolved for its owner before each poll as a step's is: a
//! source whose owner has no such credential fails its poll with the missing credential
//! named (never a value) and backs off; once the project's token is set, the poll function
//! reads it through `PollCtx::credential` and its items start runs.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock, Mutex},
};

use cairn_core::{Holder, Owner, Scope};
use cairn_engine::{
    Clock, Credential, Engine, Field, KeySource, ManualClock, MasterKey, PollCtx, PollError,
    PollSource, Polled, Registry, Secret, SetCredential, StartFrom, Workflow, WorkflowCtx,
};
use cairn_store::RunFilter;
use cairn_store_sqlite::SqliteStore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

const T0: i64 = 1_772_409_600_000;
const TOKEN: &str = "tracker-t0ken-s3cret";

static TRACKER: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("tracker").field("token", Field::secret()));

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Issue {
    id: u64,
}

fn owner() -> Owner {
    Owner {
        org: "acme".into(),
        project: "support".into(),
        user: None,
    }
}

/// Answers issue 7 to a caller with the right token, like an API checking its bearer token.
async fn list_issues(
    ctx: PollCtx,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Polled<u64>, PollError> {
    let token = ctx
        .credential(&TRACKER)?
        .field("token")?
        .expose()
        .to_owned();
    let granted = token == TOKEN;
    seen.lock().expect("seen").push(token);
    if !granted {
        return Err(PollError::new("the tracker refused the token (HTTP 401)"));
    }
    Ok(Polled::new(vec![7], None))
}

#[tokio::test]
async fn the_poll_function_reads_its_owners_credential() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let triage: Workflow<Issue, Issue> =
        Workflow::new("triage").run(|input: Issue, _ctx: WorkflowCtx| async move { Ok(input) });
    let poll = PollSource::new("tracker")
        .every("1m")
        .owner(owner())
        .credential(&TRACKER)
        .start_from(StartFrom::Beginning)
        .poll(move |ctx, _cursor| list_issues(ctx, shared.clone()))
        .item_key(|id: &u64| id.to_string())
        .attach(&triage, |id: u64| Ok(Some(Issue { id })));
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let clock = Arc::new(ManualClock::new(T0));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let engine = Engine::builder(store, Registry::new().poll(poll))
        .clock(dyn_clock)
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .expect("a valid registry");
    assert!(
        engine
            .registry()
            .credentials()
            .any(|c| c.key() == "tracker"),
        "a source's credential type is registered with it"
    );
    engine.declare_poll_sources().await.expect("declare");

    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    let source = engine.list_poll_sources().await.expect("list").remove(0);
    let error = source.last_error.expect("the missing credential");
    assert!(
        error.contains("tracker"),
        "names the credential type: {error}"
    );
    assert_eq!(source.consecutive_errors, 1);
    assert!(
        seen.lock().expect("seen").is_empty(),
        "not polled without it"
    );

    engine
        .set_credential(SetCredential {
            key: "tracker".into(),
            holder: Holder {
                scope: Scope::Project,
                org: "acme".into(),
                project: Some("support".into()),
                user: None,
            },
            fields: BTreeMap::from([("token".to_owned(), Secret::new(TOKEN.to_owned()))]),
            is_default: true,
            id: None,
            expires_at_ms: None,
        })
        .await
        .expect("the project's token is saved");
    clock.advance_to(source.next_poll_at_ms);
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 1);
    assert_eq!(*seen.lock().expect("seen"), [TOKEN]);
    let runs = engine.list_runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, "poll:tracker:7");
    assert_eq!(
        runs[0].owner,
        owner(),
        "the run executes for the source's owner"
    );
    let source = engine.list_poll_sources().await.expect("list").remove(0);
    assert_eq!(source.consecutive_errors, 0);
}
