//! Credentials seen from a workflow: which one each step gets (pinned id, pinned scope,
//! project default, organization default), `MissingCredentials` (fatal, then a retry after
//! setting one succeeds), what a step records (id and scope, never a value), owners inherited
//! by child runs, the master key (a wrong one is a clear error; rotation re-encrypts).

mod support;

use std::{collections::BTreeMap, sync::Arc, sync::LazyLock};

use cairn_core::{ErrorKind, Holder, Owner, RunStatus, Scope, UsedCredential};
use cairn_engine::{
    Action, ActionCtx, Credential, Engine, EngineError, Field, KeySource, MasterKey, Registry,
    Secret, SetCredential, StartOptions, Workflow, WorkflowCtx,
};
use cairn_store::{RunRecord, Store};
use cairn_store_sqlite::SqliteStore;
use serde_json::json;
use support::{Num, Text};
use tempfile::TempDir;

static TOKEN: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("chat")
        .description("a chat bot")
        .field("token", Field::secret())
});

/// Returns which token it was given, less the marker `s3cr3t-` (the leak test searches for
/// the marker: a value that keeps it has leaked; one this action returns has not).
static WHO: LazyLock<Action<Text, Text>> = LazyLock::new(|| {
    Action::new("who")
        .credential(&TOKEN)
        .run(|_input: Text, ctx: ActionCtx| async move {
            let token = ctx.credential(&TOKEN)?.field("token")?.expose();
            let token = token.replace("s3cr3t-", "");
            Ok(Text { text: token })
        })
});

/// Calls `who` three ways: unpinned, pinned to the user scope, pinned to an id (input.text).
static WORKFLOW: LazyLock<Workflow<Text, Num>> = LazyLock::new(|| {
    Workflow::new("uses-credentials").run(|input: Text, _ctx: WorkflowCtx| async move {
        let plain = WHO
            .run(Text {
                text: "plain".into(),
            })
            .key("plain")
            .await?;
        let mine = WHO
            .run(Text {
                text: "user".into(),
            })
            .key("user")
            .scope(Scope::User)
            .await?;
        let pinned = WHO
            .run(Text { text: "id".into() })
            .key("id")
            .credential_id(input.text)
            .await?;
        let joined = [plain.text, mine.text, pinned.text].join(",");
        Ok(Num {
            n: i64::try_from(joined.len()).unwrap_or(0),
        })
    })
});

/// Calls `who` once, unpinned, and hands its answer to a child run of itself when asked.
static ONCE: LazyLock<Workflow<Text, Text>> = LazyLock::new(|| {
    Workflow::new("once").run(|input: Text, _ctx: WorkflowCtx| async move {
        if input.text == "parent" {
            return ONCE
                .run(Text {
                    text: "child".into(),
                })
                .await
                .map_err(Into::into);
        }
        Ok(WHO.run(input).await?)
    })
});

struct Fixture {
    engine: Engine,
    store: Arc<SqliteStore>,
    _dir: TempDir,
}

fn fixture(key: MasterKey) -> Fixture {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open store"));
    let engine = engine_on(store.clone(), key);
    Fixture {
        engine,
        store,
        _dir: dir,
    }
}

fn engine_on(store: Arc<SqliteStore>, key: MasterKey) -> Engine {
    let registry = Registry::new()
        .workflow(&WORKFLOW)
        .workflow(&ONCE)
        .action(&WHO);
    Engine::builder(store, registry)
        .master_key(KeySource::Key(key))
        .build()
        .expect("valid registry")
}

fn holder(scope: Scope) -> Holder {
    Holder {
        scope,
        org: "acme".into(),
        project: (scope == Scope::Project).then(|| "web".into()),
        user: (scope == Scope::User).then(|| "ada".into()),
    }
}

fn owner() -> Owner {
    Owner {
        org: "acme".into(),
        project: "web".into(),
        user: Some("ada".into()),
    }
}

async fn set(engine: &Engine, scope: Scope, token: &str, is_default: bool) -> String {
    let fields = BTreeMap::from([("token".to_owned(), Secret::new(token))]);
    let set = SetCredential {
        key: "chat".into(),
        holder: holder(scope),
        fields,
        is_default,
        id: None,
        expires_at_ms: None,
    };
    engine.set_credential(set).await.expect("set").id
}

fn as_owner(owner: Owner) -> StartOptions {
    StartOptions {
        owner: Some(owner),
        ..StartOptions::default()
    }
}

async fn run(
    engine: &Engine,
    workflow: &Workflow<Text, impl cairn_engine::Payload>,
    text: &str,
    owner: Owner,
) -> RunRecord {
    engine
        .run(workflow, &Text { text: text.into() }, as_owner(owner))
        .await
        .expect("the run executes")
}

#[tokio::test]
async fn each_step_gets_the_credential_its_pin_or_the_defaults_name() {
    let fx = fixture(MasterKey::generate());
    let engine = &fx.engine;
    let org = set(engine, Scope::Organization, "org-token", false).await;
    let user = set(engine, Scope::User, "user-token", false).await;
    let pinned = set(engine, Scope::Organization, "pinned-token", false).await;

    // No project credential yet: the organization's default (its first) for the plain step.
    let first = run(engine, &WORKFLOW, &pinned, owner()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let detail = engine.get_run(first.run_id).await.expect("detail");
    let outputs: Vec<_> = detail
        .steps
        .iter()
        .map(|step| step.output.clone().expect("completed"))
        .collect();
    assert_eq!(
        outputs,
        [
            json!({"text": "org-token"}),
            json!({"text": "user-token"}),
            json!({"text": "pinned-token"})
        ]
    );
    let used: Vec<Vec<UsedCredential>> = detail
        .steps
        .iter()
        .map(|step| step.credentials.clone())
        .collect();
    let expect = |id: &str, scope| {
        vec![UsedCredential {
            key: "chat".into(),
            id: id.to_owned(),
            scope,
        }]
    };
    assert_eq!(
        used,
        [
            expect(&org, Scope::Organization),
            expect(&user, Scope::User),
            expect(&pinned, Scope::Organization)
        ],
        "each step records the id and scope it used"
    );
    assert_eq!(detail.run.owner, owner(), "the run keeps its owner");

    // A project default wins over the organization's.
    let project = set(engine, Scope::Project, "project-token", false).await;
    let second = run(engine, &ONCE, "x", owner()).await;
    let detail = engine.get_run(second.run_id).await.expect("detail");
    assert_eq!(
        detail.steps[0].credentials,
        expect(&project, Scope::Project)
    );

    // A child run inherits its parent's owner, so it resolves the same way.
    let parent = run(engine, &ONCE, "parent", owner()).await;
    assert_eq!(parent.output, Some(json!({"text": "project-token"})));

    // Another project of the organization gets the organization's default.
    let other = Owner {
        project: "api".into(),
        ..owner()
    };
    let third = run(engine, &ONCE, "x", other).await;
    assert_eq!(third.output, Some(json!({"text": "org-token"})));
}

#[tokio::test]
async fn a_missing_credential_fails_the_step_once_and_a_retry_after_setting_one_succeeds() {
    let fx = fixture(MasterKey::generate());
    let engine = &fx.engine;
    let failed = run(engine, &ONCE, "x", owner()).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.expect("an error");
    assert_eq!(error.kind, ErrorKind::MissingCredentials);
    assert!(!error.retryable, "missing credentials are fatal");
    for needle in [
        "\"chat\"",
        "project default",
        "organization default",
        "credentials set chat",
        "runs retry",
    ] {
        assert!(
            error.message.contains(needle),
            "{needle:?} in {}",
            error.message
        );
    }
    let detail = engine.get_run(failed.run_id).await.expect("detail");
    assert_eq!(detail.steps[0].attempts, 1, "no retry storm");

    // A user-pinned step of a run without a user says so.
    let userless = Owner {
        user: None,
        ..owner()
    };
    let pinned = run(engine, &WORKFLOW, "cred_x", userless).await;
    set(engine, Scope::Organization, "org-token", true).await;

    engine.retry(failed.run_id).await.expect("retry");
    let retried = engine.execute(failed.run_id).await.expect("executes");
    assert_eq!(retried.status, RunStatus::Succeeded, "{:?}", retried.error);
    assert_eq!(retried.output, Some(json!({"text": "org-token"})));

    let error = pinned.error.expect("failed");
    assert_eq!(
        error.kind,
        ErrorKind::MissingCredentials,
        "{}",
        error.message
    );
}

#[tokio::test]
async fn values_never_reach_the_log_and_a_foreign_id_is_refused() {
    let fx = fixture(MasterKey::generate());
    let engine = &fx.engine;
    set(engine, Scope::Organization, "s3cr3t-org", true).await;
    set(engine, Scope::User, "s3cr3t-user", true).await;
    // A credential of another organization cannot be pinned.
    let foreign = engine
        .set_credential(SetCredential {
            key: "chat".into(),
            holder: Holder {
                org: "globex".into(),
                ..holder(Scope::Organization)
            },
            fields: BTreeMap::from([("token".to_owned(), Secret::new("s3cr3t-globex"))]),
            is_default: true,
            id: None,
            expires_at_ms: None,
        })
        .await
        .expect("set")
        .id;
    let refused = run(engine, &WORKFLOW, &foreign, owner()).await;
    let error = refused.error.expect("failed");
    assert_eq!(error.kind, ErrorKind::MissingCredentials);
    assert!(
        error.message.contains("cannot be used by this run"),
        "{}",
        error.message
    );

    let listed =
        serde_json::to_string(&engine.list_credentials(&Default::default()).await.unwrap())
            .unwrap();
    let events = serde_json::to_string(&fx.store.events(refused.run_id).await.unwrap()).unwrap();
    for text in [&listed, &events, &format!("{error:?}")] {
        assert!(!text.contains("s3cr3t"), "a value leaked: {text}");
    }
    assert!(
        events.contains(r#""output":{"text":"org"}"#),
        "the steps ran with the values"
    );
    let row = fx.store.get_credential(&foreign).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&row.sealed).contains("s3cr3t"));
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error_and_rotation_moves_every_credential_to_the_new_key() {
    let old = MasterKey::generate();
    let fx = fixture(old.clone());
    set(&fx.engine, Scope::Organization, "org-token", true).await;
    set(&fx.engine, Scope::User, "user-token", true).await;

    let stranger = engine_on(fx.store.clone(), MasterKey::generate());
    let failed = run(&stranger, &ONCE, "x", owner()).await;
    let error = failed.error.expect("failed");
    assert_eq!(error.kind, ErrorKind::CredentialUnavailable);
    assert!(error.message.contains("rotate-key"), "{}", error.message);

    let new = MasterKey::generate();
    assert_eq!(fx.engine.rotate_master_key(&new).await.expect("rotate"), 2);
    let after = run(&fx.engine, &ONCE, "x", owner()).await;
    assert_eq!(
        after.output,
        Some(json!({"text": "org-token"})),
        "the rotating engine uses the new key"
    );
    let with_new = engine_on(fx.store.clone(), new);
    assert_eq!(
        run(&with_new, &ONCE, "x", owner()).await.status,
        RunStatus::Succeeded
    );
    let with_old = engine_on(fx.store.clone(), old);
    let error = run(&with_old, &ONCE, "x", owner())
        .await
        .error
        .expect("failed");
    assert_eq!(error.kind, ErrorKind::CredentialUnavailable);
}

#[tokio::test]
async fn setting_checks_the_type_fields_and_holder() {
    let fx = fixture(MasterKey::generate());
    let engine = &fx.engine;
    let attempt = |key: &str, fields: &[(&str, &str)], holder: Holder| SetCredential {
        key: key.into(),
        holder,
        fields: fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Secret::new(*value)))
            .collect(),
        is_default: false,
        id: None,
        expires_at_ms: None,
    };
    let unknown = engine
        .set_credential(attempt(
            "slak",
            &[("token", "x")],
            holder(Scope::Organization),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, EngineError::UnknownCredentialType { .. }),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("chat"), "{unknown}");
    let missing = engine
        .set_credential(attempt("chat", &[], holder(Scope::Organization)))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("token"), "{missing}");
    let no_project = Holder {
        project: None,
        ..holder(Scope::Project)
    };
    let bad_holder = engine
        .set_credential(attempt("chat", &[("token", "x")], no_project))
        .await
        .unwrap_err();
    assert!(bad_holder.to_string().contains("--project"), "{bad_holder}");
    assert!(
        engine
            .list_credentials(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    let no_key = Engine::builder(fx.store.clone(), Registry::new().action(&WHO))
        .build()
        .unwrap();
    let error = no_key
        .set_credential(attempt(
            "chat",
            &[("token", "x")],
            holder(Scope::Organization),
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no master key"), "{error}");
}
