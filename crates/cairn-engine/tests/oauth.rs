//! OAuth connect and refresh against a fake authorization server on loopback (real HTTP, a
//! real SQLite file, no environment variables): the authorize URL carries the client, the
//! scopes, the redirect URI, an S256 challenge and a sealed state; the callback's code is
//! exchanged with the verifier (the fake server checks it hashes to the challenge) and the
//! tokens become the user's credential; a step pinned to the user scope gets the access token;
//! a token about to lapse is refreshed first and saved; a provider that cannot be reached
//! leaves a still-valid token in use, and is retryable once it has lapsed; a refused refresh
//! fails the step once with `CredentialExpired`; forged, altered and expired states are
//! refused.

mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use cairn_core::{ErrorKind, Owner, RunStatus, Scope};
use cairn_engine::{
    Action, ActionCtx, Clock, Credential, Engine, EngineError, ErrorClass, Field, KeySource,
    ManualClock, MasterKey, OAuth, OAuthError, Registry, Retry, StartOptions, Url, Workflow,
    WorkflowCtx,
};
use cairn_store::{CredentialRecord, RunRecord, Store};
use cairn_store_sqlite::SqliteStore;
use cairn_test_support::oauth::{FakeProvider, TOKEN_MARKER, TokenRequest};
use serde_json::json;
use support::Text;
use tempfile::TempDir;

const CLIENT_ID: &str = "cairn-test-client";
const CLIENT_SECRET: &str = "client-s3cret";
const LIFETIME_S: u64 = 3600;

struct Fixture {
    engine: Engine,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    provider: FakeProvider,
    workflow: Workflow<Text, Text>,
    _dir: TempDir,
}

/// A `chat` credential type connected with OAuth at `provider`, an action that answers with
/// the access token it was given (less the marker), and a workflow calling it for the user.
async fn fixture() -> Fixture {
    let provider = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, LIFETIME_S).await;
    let chat = Credential::new("chat")
        .field("botToken", Field::secret())
        .field("refreshToken", Field::secret().optional())
        .oauth(
            OAuth::new(provider.authorize_url(), provider.token_url())
                .scopes(["chat:write", "channels:read"])
                .access_token_field("botToken")
                .client_id(CLIENT_ID)
                .client_secret(CLIENT_SECRET),
        );
    let declared = chat.clone();
    let post = Action::new("post")
        .credential_in(&chat, [Scope::User])
        .retry(Retry::none())
        .run(move |_input: Text, ctx: ActionCtx| {
            let chat = declared.clone();
            async move {
                let token = ctx.credential(&chat)?.field("botToken")?.expose();
                Ok(Text {
                    text: token.replace(TOKEN_MARKER, ""),
                })
            }
        });
    let step = post.clone();
    let workflow = Workflow::new("post-as-user").run(move |input: Text, _ctx: WorkflowCtx| {
        let post = step.clone();
        async move { Ok(post.run(input).scope(Scope::User).await?) }
    });
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open store"));
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let registry = Registry::new().workflow(&workflow).action(&post);
    let engine = Engine::builder(store.clone(), registry)
        .clock(clock.clone())
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .expect("valid registry");
    Fixture {
        engine,
        store,
        clock,
        provider,
        workflow,
        _dir: dir,
    }
}

impl Fixture {
    fn redirect_uri(&self) -> String {
        self.engine.oauth_redirect_uri("chat")
    }

    fn authorize(&self) -> Url {
        self.engine
            .oauth_authorize_url("chat", "acme", "ada", &self.redirect_uri())
            .expect("an authorize URL")
    }

    /// Sends the person to the provider, who approves: the code and state it redirects with.
    async fn approve(&self, authorize: &Url) -> (String, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let answer = client
            .get(authorize.as_str())
            .send()
            .await
            .expect("authorize");
        assert_eq!(answer.status(), 302, "{:?}", answer.text().await);
        let location = answer.headers()["location"].to_str().expect("text");
        let back = Url::parse(location).expect("a URL");
        assert!(
            location.starts_with(&format!("{}?", self.redirect_uri())),
            "{location}"
        );
        let query: HashMap<_, _> = back.query_pairs().into_owned().collect();
        (query["code"].clone(), query["state"].clone())
    }

    async fn connect(&self) -> String {
        let (code, state) = self.approve(&self.authorize()).await;
        let view = self
            .engine
            .oauth_callback("chat", &code, &state, &self.redirect_uri())
            .await
            .expect("connected");
        view.id
    }

    async fn run(&self) -> RunRecord {
        let options = StartOptions {
            owner: Some(Owner {
                org: "acme".into(),
                project: "web".into(),
                user: Some("ada".into()),
            }),
            ..StartOptions::default()
        };
        let input = Text { text: "hi".into() };
        self.engine
            .run(&self.workflow, &input, options)
            .await
            .expect("the run executes")
    }

    async fn row(&self, id: &str) -> CredentialRecord {
        self.store
            .get_credential(id)
            .await
            .expect("read")
            .expect("stored")
    }

    fn grants(&self) -> Vec<(String, u16)> {
        self.provider
            .requests()
            .into_iter()
            .map(
                |TokenRequest {
                     grant_type, status, ..
                 }| (grant_type, status),
            )
            .collect()
    }

    fn advance_s(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }
}

fn grant(kind: &str, status: u16) -> (String, u16) {
    (kind.to_owned(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_token_is_used_refreshed_before_it_lapses_and_a_refused_refresh_is_expired() {
    let fx = fixture().await;
    let authorize = fx.authorize();
    let query: HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert!(authorize.as_str().starts_with(&fx.provider.authorize_url()));
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        "http://127.0.0.1:3000/credentials/callback/chat"
    );
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["scope"], "chat:write channels:read");
    assert!(query["code_challenge"].len() >= 43);
    assert!(!query.contains_key("client_secret"));

    // The callback exchanges the code (the fake server checks the verifier) and stores the
    // tokens as ada's credential, her default, expiring when the provider said.
    let (code, state) = fx.approve(&authorize).await;
    let connected_at = fx.clock.now_ms();
    let view = fx
        .engine
        .oauth_callback("chat", &code, &state, &fx.redirect_uri())
        .await
        .expect("connected");
    assert_eq!(fx.grants(), [grant("authorization_code", 200)]);
    assert_eq!(view.holder.user.as_deref(), Some("ada"));
    assert_eq!(view.holder.scope, Scope::User);
    assert!(view.is_default);
    assert_eq!(view.fields, ["botToken", "refreshToken"]);
    let id = view.id;
    let lapses_at = connected_at + 1000 * LIFETIME_S as i64;
    assert_eq!(fx.row(&id).await.expires_at_ms, Some(lapses_at));
    let stored = serde_json::to_string(&fx.engine.credential(&id).await.unwrap()).unwrap();
    assert!(!stored.contains(TOKEN_MARKER), "{stored}");

    // The code is good once.
    let again = fx
        .engine
        .oauth_callback("chat", &code, &state, &fx.redirect_uri())
        .await
        .unwrap_err();
    assert!(
        matches!(again, EngineError::OAuth(OAuthError::Refused { .. })),
        "{again}"
    );
    assert_eq!(again.class(), ErrorClass::Invalid);

    let first = fx.run().await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    assert_eq!(first.output, Some(json!({"text": "access-2"})));
    assert_eq!(fx.grants().len(), 2, "a fresh token is not refreshed");

    // Within a minute of lapsing, with the provider down: the still-valid token is used.
    fx.advance_s(LIFETIME_S - 30);
    fx.provider.fail_with(Some(503));
    let down = fx.run().await;
    assert_eq!(
        down.output,
        Some(json!({"text": "access-2"})),
        "{:?}",
        down.error
    );
    assert_eq!(fx.grants().last(), Some(&grant("refresh_token", 503)));

    // The provider back: refreshed first, saved under the same id with the new expiry.
    fx.provider.fail_with(None);
    let refreshed = fx.run().await;
    assert_eq!(
        refreshed.output,
        Some(json!({"text": "access-3"})),
        "{:?}",
        refreshed.error
    );
    assert_eq!(fx.grants().last(), Some(&grant("refresh_token", 200)));
    let row = fx.row(&id).await;
    assert_eq!(
        row.expires_at_ms,
        Some(fx.clock.now_ms() + 1000 * LIFETIME_S as i64)
    );
    assert!(row.is_default);
    let count = fx.grants().len();
    let fresh = fx.run().await;
    assert_eq!(fresh.output, Some(json!({"text": "access-3"})));
    assert_eq!(fx.grants().len(), count, "refreshed once");

    // Lapsed, the provider down: retryable (here the policy allows one attempt).
    fx.advance_s(LIFETIME_S + 1);
    fx.provider.fail_with(Some(503));
    let unreachable = fx.run().await;
    let error = unreachable.error.expect("failed");
    assert_eq!(
        error.kind,
        ErrorKind::CredentialUnavailable,
        "{}",
        error.message
    );
    assert!(error.retryable, "{}", error.message);
    assert!(error.message.contains("503"), "{}", error.message);

    // The provider refuses the refresh token: CredentialExpired, fatal, once.
    fx.provider.fail_with(None);
    fx.provider.refuse_refresh();
    let refused = fx.run().await;
    assert_eq!(refused.status, RunStatus::Failed);
    let error = refused.error.expect("failed");
    assert_eq!(
        error.kind,
        ErrorKind::CredentialExpired,
        "{}",
        error.message
    );
    assert!(!error.retryable);
    for needle in [
        "invalid_grant",
        "/credentials/connect/chat?user=ada&org=acme",
        &id,
    ] {
        assert!(
            error.message.contains(needle),
            "{needle:?} in {}",
            error.message
        );
    }
    let detail = fx.engine.get_run(refused.run_id).await.expect("detail");
    assert_eq!(detail.steps[0].attempts, 1);
    let events = serde_json::to_string(&fx.store.events(refused.run_id).await.unwrap()).unwrap();
    assert!(!events.contains(TOKEN_MARKER), "a token leaked: {events}");
    assert!(!format!("{error:?}").contains(CLIENT_SECRET));

    // Connecting again replaces her credential (same id), and its token works at once.
    assert_eq!(fx.connect().await, id);
    let reconnected = fx.run().await;
    assert_eq!(
        reconnected.status,
        RunStatus::Succeeded,
        "{:?}",
        reconnected.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_altered_foreign_and_expired_states_are_refused() {
    let fx = fixture().await;
    let redirect = fx.redirect_uri();
    let callback = |state: String| {
        let engine = fx.engine.clone();
        let redirect = redirect.clone();
        async move {
            engine
                .oauth_callback("chat", "code-1", &state, &redirect)
                .await
                .unwrap_err()
        }
    };
    let (_, state) = fx.approve(&fx.authorize()).await;
    let mut altered = state.clone().into_bytes();
    let middle = altered.len() / 2;
    altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
    for forged in [
        "not base64!".to_owned(),
        "AAAA".to_owned(),
        String::from_utf8(altered).unwrap(),
    ] {
        let refused = callback(forged).await;
        assert!(
            matches!(refused, EngineError::OAuth(OAuthError::BadState { .. })),
            "{refused}"
        );
        assert_eq!(refused.class(), ErrorClass::Invalid);
        assert!(
            refused.to_string().contains("/credentials/connect/chat"),
            "{refused}"
        );
    }
    // A state of another engine's master key does not open here.
    let foreign = fixture().await;
    let (_, foreign_state) = foreign.approve(&foreign.authorize()).await;
    let refused = callback(foreign_state).await;
    assert!(
        matches!(refused, EngineError::OAuth(OAuthError::BadState { .. })),
        "{refused}"
    );

    fx.advance_s(11 * 60);
    let expired = callback(state).await;
    assert!(
        matches!(expired, EngineError::OAuth(OAuthError::StateExpired { .. })),
        "{expired}"
    );
    assert_eq!(fx.grants(), [], "no code was exchanged");
    assert!(
        fx.engine
            .list_credentials(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_declaration_without_its_token_fields_or_a_client_id_is_a_clear_error() {
    let broken = Credential::new("mail")
        .field("token", Field::secret())
        .oauth(OAuth::new(
            "https://a.example/authorize",
            "https://a.example/token",
        ));
    let refused = Registry::new().credential(&broken).check().unwrap_err();
    assert!(refused.to_string().contains("\"accessToken\""), "{refused}");

    // No client id given, and none in the environment (this test sets no variable).
    let mail = Credential::new("cairn-test-no-client")
        .field("accessToken", Field::secret())
        .field("refreshToken", Field::secret().optional())
        .oauth(OAuth::new(
            "https://a.example/authorize",
            "https://a.example/token",
        ));
    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).unwrap());
    let engine = Engine::builder(store, Registry::new().credential(&mail))
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .unwrap();
    let missing = engine
        .oauth_authorize_url("cairn-test-no-client", "acme", "ada", "https://x/cb")
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("CAIRN_OAUTH_CAIRN_TEST_NO_CLIENT_CLIENT_ID"),
        "{missing}"
    );
    let not_oauth = Engine::builder(
        Arc::new(SqliteStore::open_in_dir(dir.path().join("b")).unwrap()),
        Registry::new().credential(&Credential::new("plain").field("t", Field::secret())),
    )
    .build()
    .unwrap()
    .oauth_authorize_url("plain", "acme", "ada", "https://x/cb")
    .unwrap_err();
    assert!(
        matches!(not_oauth, EngineError::OAuth(OAuthError::NotOAuth { .. })),
        "{not_oauth}"
    );
}

#[tokio::test]
async fn an_expired_token_of_a_type_without_oauth_is_credential_expired() {
    let plain = Credential::new("plain").field("token", Field::secret());
    let declared = plain.clone();
    let use_it =
        Action::new("use-plain")
            .credential(&plain)
            .run(move |input: Text, ctx: ActionCtx| {
                let plain = declared.clone();
                async move {
                    ctx.credential(&plain)?;
                    Ok(input)
                }
            });
    let step = use_it.clone();
    let workflow = Workflow::new("plain").run(move |input: Text, _ctx: WorkflowCtx| {
        let use_it = step.clone();
        async move { Ok(use_it.run(input).await?) }
    });
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open store"));
    let engine = Engine::builder(store, Registry::new().workflow(&workflow).action(&use_it))
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .expect("valid registry");
    let now_ms = cairn_engine::SystemClock.now_ms();
    let holder = cairn_core::Holder {
        scope: Scope::Organization,
        org: "default".into(),
        project: None,
        user: None,
    };
    for (expires_at_ms, expired) in [(now_ms + 3_600_000, false), (now_ms - 1, true)] {
        engine
            .set_credential(cairn_engine::SetCredential {
                key: "plain".into(),
                holder: holder.clone(),
                fields: [("token".to_owned(), cairn_engine::Secret::new("t"))].into(),
                is_default: true,
                id: None,
                expires_at_ms: Some(expires_at_ms),
            })
            .await
            .unwrap();
        let run = engine
            .run(
                &workflow,
                &Text { text: "x".into() },
                StartOptions::default(),
            )
            .await
            .unwrap();
        if expired {
            let error = run.error.expect("failed");
            assert_eq!(
                error.kind,
                ErrorKind::CredentialExpired,
                "{}",
                error.message
            );
            assert!(
                !error.retryable && error.message.contains("cannot be refreshed"),
                "{}",
                error.message
            );
        } else {
            assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
        }
    }
}
