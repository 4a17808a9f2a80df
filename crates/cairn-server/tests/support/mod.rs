//! What the API tests share: a real server on an ephemeral loopback port over a real SQLite
//! file, a real HTTP client, the test workflows, store row counts and polling with a deadline.

#![allow(dead_code)]

pub mod long_run;
pub mod screenshots;
pub mod spec;
pub mod ui;
pub mod webdriver;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Once},
    time::{Duration, Instant},
};

use cairn_engine::{
    Action, ActionCtx, ActionError, Credential, Engine, EngineConfig, Field, GitHubSignature,
    KeySource, MasterKey, Registry, Schedule, Scope, StripeSignature, TransformError,
    WebhookSource, Workflow, WorkflowCtx,
};
use cairn_server::{ServeOptions, Server, ServerError};
use cairn_store::{HookFilter, HookRecord, RunId};
use cairn_store_sqlite::SqliteStore;
use reqwest::{Client, Response, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A name to greet.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Name {
    /// Who.
    pub name: String,
}

/// A name, and a file whose existence matters to the action.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gated {
    /// Who.
    pub name: String,
    /// The file.
    pub file: String,
}

/// How many, at most ten.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Tally {
    /// The count.
    #[schemars(range(max = 10))]
    pub count: u32,
}

/// Echoes its tally (its input has bounds, for the UI's forms).
pub static TALLY: LazyLock<Workflow<Tally, Tally>> = LazyLock::new(|| {
    Workflow::new("tally")
        .description("Echoes a count")
        .run(|input: Tally, _ctx: WorkflowCtx| async move { Ok(input) })
});

/// A stand-in model call: an `llm` step that records what `cairn_llm`'s model calls record.
static MODEL: LazyLock<Action<Name, cairn_llm::LlmResponse>> = LazyLock::new(|| {
    Action::new("model").kind(cairn_engine::StepKind::Llm).run(
        |input: Name, _ctx: ActionCtx| async move {
            Ok(cairn_llm::LlmResponse {
                text: format!("hello {}", input.name),
                tool_calls: Vec::new(),
                model: "openai/test-model".into(),
                input_tokens: 120,
                output_tokens: 30,
                finish_reason: "stop".into(),
                latency_ms: 812,
            })
        },
    )
});

/// Asks the stand-in model twice.
pub static ASK: LazyLock<Workflow<Name, Name>> = LazyLock::new(|| {
    Workflow::new("ask").description("Two model calls").run(
        |input: Name, _ctx: WorkflowCtx| async move {
            let first = MODEL.run(input.clone()).await?;
            MODEL.run(input).await?;
            Ok(Name { name: first.text })
        },
    )
});

/// A person's answer.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// Yes or no.
    pub approved: bool,
}

static SHOUT: LazyLock<Action<Name, Name>> = LazyLock::new(|| {
    Action::new("shout").description("Upper-cases a name").run(
        |input: Name, _ctx: ActionCtx| async move {
            Ok(Name {
                name: input.name.to_uppercase(),
            })
        },
    )
});

static REFUSE_WHILE_FILE: LazyLock<Action<Gated, Name>> = LazyLock::new(|| {
    Action::new("refuse-while-file")
        .description("Fails, fatally, while its file exists")
        .run(|input: Gated, _ctx: ActionCtx| async move {
            if Path::new(&input.file).exists() {
                return Err(ActionError::fatal("the file exists"));
            }
            Ok(Name { name: input.name })
        })
});

static WAIT_FOR_FILE: LazyLock<Action<Gated, Name>> = LazyLock::new(|| {
    Action::new("wait-for-file")
        .description("Waits until its file exists")
        .run(|input: Gated, ctx: ActionCtx| async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !Path::new(&input.file).exists() {
                if Instant::now() > deadline || ctx.cancellation().is_cancelled() {
                    return Err(ActionError::fatal("the file never appeared"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Name { name: input.name })
        })
});

/// A chat bot's token, which `sign` needs.
pub static CHAT: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("chat").field("token", Field::secret()));

static SIGN: LazyLock<Action<Name, Name>> = LazyLock::new(|| {
    Action::new("sign")
        .description("Signs a name with the chat credential's id and its token's length")
        .credential(&CHAT)
        .run(|input: Name, ctx: ActionCtx| async move {
            let chat = ctx.credential(&CHAT)?;
            let length = chat.field("token")?.expose().len();
            Ok(Name {
                name: format!("{} via {} ({length})", input.name, chat.id()),
            })
        })
});

/// `sign`, pinned to the user scope.
pub static SIGNED: LazyLock<Workflow<Name, Name>> = LazyLock::new(|| {
    Workflow::new("signed")
        .description("Signs a name with the user's chat credential")
        .run(|input: Name, _ctx: WorkflowCtx| async move {
            Ok(SIGN.run(input).scope(Scope::User).await?)
        })
});

/// `shout`, then `shout` again.
pub static GREET: LazyLock<Workflow<Name, Name>> = LazyLock::new(|| {
    Workflow::new("greet")
        .description("Shouts a name twice")
        .run(|input: Name, _ctx: WorkflowCtx| async move {
            let loud = SHOUT.run(input).await?;
            Ok(SHOUT.run(loud).await?)
        })
});

/// `shout`, then fails while the file exists.
pub static CHECKED: LazyLock<Workflow<Gated, Name>> = LazyLock::new(|| {
    Workflow::new("checked")
        .description("Shouts, then fails while the file exists")
        .run(|input: Gated, _ctx: WorkflowCtx| async move {
            let loud = SHOUT.run(Name { name: input.name }).await?;
            let gated = Gated {
                name: loud.name,
                file: input.file,
            };
            Ok(REFUSE_WHILE_FILE.run(gated).await?)
        })
});

/// Waits for the file.
pub static SLOW: LazyLock<Workflow<Gated, Name>> = LazyLock::new(|| {
    Workflow::new("slow")
        .description("Waits until the file exists")
        .run(|input: Gated, _ctx: WorkflowCtx| async move { Ok(WAIT_FOR_FILE.run(input).await?) })
});

/// Shouts, waits for an approval hook, shouts.
pub static APPROVAL: LazyLock<Workflow<Name, Name>> = LazyLock::new(|| {
    Workflow::new("approval")
        .description("Waits for a person's approval")
        .run(|input: Name, ctx: WorkflowCtx| async move {
            let hook = ctx.hook::<Approval>();
            let loud = SHOUT.run(input).await?;
            let approval = hook.await?;
            Ok(SHOUT
                .run(Name {
                    name: format!("{} approved={}", loud.name, approval.approved),
                })
                .await?)
        })
});

/// The signing secrets of the `stripe` and `github` webhook endpoints: the current one and,
/// while the provider rotates it, the previous one.
pub static SIGNING: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("webhook-signing")
        .field("secret", Field::secret())
        .field("previous", Field::secret().optional())
});

/// A Stripe-like event: `customer.created` events start `greet` with the customer's name.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    data: Option<Name>,
}

/// Saves the organization-wide `webhook-signing` credential with `fields`.
pub async fn set_signing_secrets(server: &TestServer, fields: &[(&str, &str)]) {
    let fields = fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), cairn_engine::Secret::new(*value)))
        .collect();
    server
        .engine
        .set_credential(cairn_engine::SetCredential {
            key: SIGNING.key().to_owned(),
            holder: cairn_core::Holder {
                scope: Scope::Organization,
                org: cairn_core::DEFAULT_OWNER_NAME.to_owned(),
                project: None,
                user: None,
            },
            fields,
            is_default: true,
            id: None,
            expires_at_ms: None,
        })
        .await
        .expect("the signing secrets are saved");
}

fn registry() -> Registry {
    let stripe = WebhookSource::new("stripe")
        .verify(StripeSignature::new(&SIGNING))
        .attach(&GREET, |request| {
            let event: Event = request.json()?;
            match (event.kind.as_str(), event.data) {
                ("customer.created", Some(name)) => Ok(Some(name)),
                ("customer.created", None) => Err(TransformError::new(
                    "a customer.created event needs data.name",
                )),
                _ => Ok(None),
            }
        });
    let github = WebhookSource::new("github")
        .verify(GitHubSignature::new(&SIGNING))
        .attach(&GREET, |request| request.json().map(Some));
    // Fires on New Year's Day only: the tests see it stored, never fired.
    let yearly = Schedule::cron("new-year", "0 0 1 1 *").expect("a valid schedule");
    Registry::new()
        .schedule(
            yearly,
            &GREET,
            Name {
                name: "new year".into(),
            },
        )
        .workflow(&GREET)
        .workflow(&TALLY)
        .workflow(&ASK)
        .workflow(&CHECKED)
        .workflow(&SLOW)
        .workflow(&APPROVAL)
        .workflow(&SIGNED)
        .action(&SHOUT)
        .action(&SIGN)
        .action(&REFUSE_WHILE_FILE)
        .action(&WAIT_FOR_FILE)
        .webhook(stripe)
        .webhook(github)
}

/// The largest body the test servers accept.
pub const PAYLOAD_LIMIT: usize = 64 * 1024;

/// A server under test, stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client (keep-alive).
    pub client: Client,
    /// The engine the server uses.
    pub engine: Engine,
    /// Its data dir and the tests' files.
    pub dir: tempfile::TempDir,
    /// Stops the server.
    pub shutdown: CancellationToken,
    /// The serving task.
    pub task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a server with a worker over a fresh SQLite file.
pub async fn start() -> TestServer {
    start_with(ServeOptions::default()).await
}

/// Starts a server with `options` (its address replaced by an ephemeral loopback port).
pub async fn start_with(options: ServeOptions) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = test_engine(&dir, registry(), EngineConfig::default().public_url);
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..options
    };
    let server = Server::bind(engine.clone(), options).await.expect("bind");
    let base = format!("http://{}", server.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestServer {
        base,
        client: Client::new(),
        engine,
        dir,
        shutdown,
        task: Some(task),
    }
}

/// Starts the API's routes (no worker) on an ephemeral loopback port that is also the
/// engine's public URL, with `credential` registered beside the test workflows: for OAuth,
/// whose redirect URI is on the public URL.
pub async fn start_public(credential: &Credential, options: ServeOptions) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let engine = test_engine(&dir, registry().credential(credential), base.clone());
    let shutdown = CancellationToken::new();
    let app = cairn_server::router(engine.clone(), &options, shutdown.clone()).expect("routes");
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(ServerError::from)
    });
    TestServer {
        base,
        client: Client::new(),
        engine,
        dir,
        shutdown,
        task: Some(task),
    }
}

/// An engine over a fresh SQLite file in `dir`, with a fresh master key and `public_url`.
fn test_engine(dir: &tempfile::TempDir, registry: Registry, public_url: String) -> Engine {
    static RUSTLS: Once = Once::new();
    RUSTLS.call_once(|| {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
    });
    let store = SqliteStore::open_in_dir(dir.path().join("data")).expect("open store");
    let config = EngineConfig {
        poll_interval: Duration::from_millis(50),
        limits: cairn_core::Limits {
            max_payload_bytes: PAYLOAD_LIMIT,
            ..cairn_core::Limits::default()
        },
        public_url,
        ..EngineConfig::default()
    };
    Engine::builder(Arc::new(store), registry)
        .config(config)
        .master_key(KeySource::Key(MasterKey::generate()))
        .build()
        .expect("engine")
}

impl TestServer {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` as JSON, asserting a 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Starts a run of `workflow` and returns its id.
    pub async fn start_run(&self, workflow: &str, input: Value) -> String {
        let response = self.post(&format!("/workflows/{workflow}"), &input).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("JSON");
        body["runId"].as_str().expect("runId").to_owned()
    }

    /// Polls `GET /runs/{id}` until its status is `status`; returns the run.
    pub async fn wait_for_status(&self, run_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.get_json(&format!("/runs/{run_id}")).await;
            if run["status"] == status {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} never became {status}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many runs the store holds (up to a listing's default page).
    pub async fn run_count(&self) -> usize {
        self.engine
            .list_runs(&cairn_store::RunFilter::default())
            .await
            .expect("runs")
            .len()
    }

    /// The pending hook of a run, once there is one.
    pub async fn pending_hook(&self, run_id: &str) -> HookRecord {
        let run_id: RunId = run_id.parse().expect("run id");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hooks = self
                .engine
                .list_hooks(&HookFilter {
                    run_id: Some(run_id),
                    state: Some(cairn_store::HookState::Pending),
                    limit: 10,
                })
                .await
                .expect("hooks");
            if let Some(hook) = hooks.into_iter().next() {
                return hook;
            }
            assert!(Instant::now() < deadline, "no hook became pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A path in the test's directory (not created).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// How many rows each table of the store holds (read from the SQLite file itself).
    pub fn row_counts(&self) -> Vec<(String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.path().join("data").join("cairn.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the store's file");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .expect("tables")
            .query_map([], |row| row.get(0))
            .expect("tables")
            .collect::<Result<_, _>>()
            .expect("tables");
        tables
            .into_iter()
            .map(|table| {
                let count = conn
                    .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                        row.get(0)
                    })
                    .expect("count");
                (table, count)
            })
            .collect()
    }
}

/// A problem body, checked to be one: its content type and `status`.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
    body
}

/// The events of a Server-Sent Events text: `(name, data as JSON)`, keep-alive comments left
/// out.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            let name = name?;
            Some((
                name,
                serde_json::from_str(&data).expect("event data is JSON"),
            ))
        })
        .collect()
}
