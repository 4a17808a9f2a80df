//! Webhook sources through `Engine::deliver_webhook`: timestamps judged on the engine's clock
//! (a `ManualClock`), a Standard Webhooks delivery named by its `webhook-id`, a project's own
//! signing secret for a source with an owner, Slack's `url_verification` challenge, a source
//! that names its deliveries from the body, and the declarations a registry refuses.

use std::{collections::BTreeMap, sync::Arc, sync::LazyLock, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use cairn_core::{Holder, Owner, Scope};
use cairn_engine::{
    Credential, Delivered, Engine, Field, Headers, KeySource, ManualClock, MasterKey, Registry,
    Secret, SetCredential, SlackSignature, StandardWebhooks, VerifyError, WebhookError,
    WebhookSource, Workflow, WorkflowCtx,
};
use cairn_store_sqlite::SqliteStore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

const START_MS: i64 = 1_780_000_000_000;
const KEY: &[u8] = b"standard-webhooks-key-32-bytes!!";

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Note {
    text: String,
}

static NOTE: LazyLock<Workflow<Note, Note>> = LazyLock::new(|| {
    Workflow::new("note").run(|input: Note, _ctx: WorkflowCtx| async move { Ok(input) })
});

static SIGNING: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("resend-signing").field("secret", Field::secret()));

fn source() -> WebhookSource {
    WebhookSource::new("resend")
        .verify(StandardWebhooks::new(&SIGNING))
        .owner(owner())
}

fn owner() -> Owner {
    Owner {
        org: "acme".into(),
        project: "mail".into(),
        user: None,
    }
}

fn secret() -> String {
    format!("whsec_{}", BASE64.encode(KEY))
}

struct Fixture {
    engine: Engine,
    clock: Arc<ManualClock>,
    _dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open store"));
    let clock = Arc::new(ManualClock::new(START_MS));
    let slack = WebhookSource::new("slack")
        .verify(SlackSignature::new(&SIGNING))
        .owner(owner())
        .attach(&NOTE, |request| request.json().map(Some));
    let registry = Registry::new()
        .webhook(source().attach(&NOTE, |request| request.json().map(Some)))
        .webhook(slack);
    let engine = Engine::builder(store, registry)
        .clock(clock.clone())
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .expect("valid registry");
    engine
        .set_credential(SetCredential {
            key: "resend-signing".into(),
            holder: Holder {
                scope: Scope::Project,
                org: "acme".into(),
                project: Some("mail".into()),
                user: None,
            },
            fields: BTreeMap::from([("secret".to_owned(), Secret::new(secret()))]),
            is_default: true,
            id: None,
            expires_at_ms: None,
        })
        .await
        .expect("the project's signing secret is saved");
    Fixture {
        engine,
        clock,
        _dir: dir,
    }
}

/// A delivery `id` signed at `ts` (unix seconds) the Standard Webhooks way.
fn delivery(id: &str, ts: i64, body: &[u8]) -> Headers {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY).expect("a key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let signature = BASE64.encode(mac.finalize().into_bytes());
    Headers::from([
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), ts.to_string()),
        ("webhook-signature".to_owned(), format!("v1,{signature}")),
    ])
}

#[tokio::test]
async fn timestamps_are_judged_on_the_engines_clock() {
    let fx = fixture().await;
    let body = br#"{"text": "delivered"}"#.to_vec();
    let signed_at = START_MS / 1000;
    fx.clock.advance(Duration::from_secs(299));
    let on_time = fx
        .engine
        .deliver_webhook("resend", delivery("msg_1", signed_at, &body), body.clone())
        .await
        .expect("accepted within five minutes");
    fx.clock.advance(Duration::from_secs(2));
    let late = fx
        .engine
        .deliver_webhook("resend", delivery("msg_2", signed_at, &body), body.clone())
        .await;
    assert!(
        matches!(
            late,
            Err(WebhookError::Verify(VerifyError::TimestampOutOfTolerance { timestamp, .. }))
                if timestamp == signed_at
        ),
        "{late:?}"
    );
    let Delivered::Run {
        run_id,
        created,
        delivery_id,
    } = on_time
    else {
        panic!("{on_time:?}");
    };
    assert!(created);
    assert_eq!(delivery_id, "msg_1", "the webhook-id header names it");
    let run = fx.engine.get_run(run_id).await.expect("the run");
    assert_eq!(run.run.idempotency_key.as_deref(), Some("wh:resend:msg_1"));
    assert_eq!(run.run.owner.project, "mail", "the source's owner runs it");
}

#[tokio::test]
async fn slack_url_verification_is_answered_with_its_challenge_and_starts_nothing() {
    use hmac::{Hmac, KeyInit, Mac};
    let fx = fixture().await;
    let body = br#"{"type": "url_verification", "challenge": "3eZbrw1aB"}"#.to_vec();
    let ts = (START_MS / 1000).to_string();
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret().as_bytes()).expect("a key");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(&body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let headers = Headers::from([
        ("x-slack-request-timestamp".to_owned(), ts),
        ("x-slack-signature".to_owned(), format!("v0={hex}")),
    ]);
    let answer = fx
        .engine
        .deliver_webhook("slack", headers.clone(), body.clone())
        .await
        .expect("verified");
    assert_eq!(answer, Delivered::Challenge("3eZbrw1aB".into()));
    let forged = fx
        .engine
        .deliver_webhook("slack", Headers::new(), body)
        .await;
    assert!(matches!(
        forged,
        Err(WebhookError::Verify(VerifyError::MissingSignature { .. }))
    ));
    let runs = fx
        .engine
        .list_runs(&cairn_store::RunFilter::default())
        .await
        .expect("runs");
    assert!(runs.is_empty(), "{runs:?}");
}

#[test]
fn registries_refuse_unusable_sources() {
    let attach = |source: WebhookSource| source.attach(&NOTE, |request| request.json().map(Some));
    let cases = [
        (
            Registry::new().webhook(attach(WebhookSource::new("open"))),
            "has no verifier",
        ),
        (
            Registry::new().webhook(attach(
                WebhookSource::new("Has Space").insecure_unverified(),
            )),
            "not usable in a URL path",
        ),
        (
            Registry::new()
                .webhook(attach(source()))
                .webhook(attach(source())),
            "two webhook sources",
        ),
    ];
    for (registry, expected) in cases {
        let problem = registry.check().expect_err("refused").to_string();
        assert!(problem.contains(expected), "{problem}");
    }
    let unverified =
        Registry::new().webhook(attach(WebhookSource::new("open").insecure_unverified()));
    assert!(unverified.check().is_ok());
}

#[tokio::test]
async fn a_source_names_its_deliveries_as_told() {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open store"));
    // A provider that puts its event id in the body (and resends it with a new timestamp).
    let events = WebhookSource::new("events")
        .insecure_unverified()
        .delivery_id(|request| {
            let id = request.value().pointer("/event/id")?.as_str()?;
            Some(id.to_owned())
        })
        .attach(&NOTE, |request| {
            let text = request
                .value()
                .pointer("/event/text")
                .and_then(|v| v.as_str());
            Ok(text.map(|text| Note { text: text.into() }))
        });
    let engine = Engine::new(store, Registry::new().webhook(events)).expect("valid registry");
    let deliver = |body: &'static str| {
        engine.deliver_webhook("events", Headers::new(), body.as_bytes().to_vec())
    };
    let first = deliver(r#"{"sent": 1, "event": {"id": "ev_7", "text": "hi"}}"#)
        .await
        .expect("started");
    let again = deliver(r#"{"sent": 2, "event": {"id": "ev_7", "text": "hi"}}"#)
        .await
        .expect("a duplicate");
    let (
        Delivered::Run {
            run_id,
            delivery_id,
            created,
        },
        Delivered::Run {
            run_id: same,
            created: twice,
            ..
        },
    ) = (first, again)
    else {
        panic!("both name a run");
    };
    assert_eq!(delivery_id, "ev_7");
    assert!(created && !twice, "the second copy is a duplicate");
    assert_eq!(run_id, same);
    // No usable id in the body: the body's SHA-256 names it.
    let unnamed = deliver(r#"{"event": {"id": "", "text": "ho"}}"#)
        .await
        .expect("started");
    let Delivered::Run { delivery_id, .. } = unnamed else {
        panic!("{unnamed:?}");
    };
    assert!(delivery_id.starts_with("sha256:"), "{delivery_id}");
}
