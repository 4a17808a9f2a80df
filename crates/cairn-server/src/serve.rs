//! Binding, routing and the server's life: the loopback rule for keyless servers, the
//! worker beside the server, and a graceful stop (no new connections, waits answered, steps
//! in flight finished or handed back, the store flushed).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, Method, Uri},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use cairn_engine::{Engine, EngineError};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    auth::{ApiKeys, require_key},
    credentials,
    error::ApiError,
    health, hooks,
    metrics::{self, Metrics},
    oauth, openapi, runs, schedules,
    state::AppState,
    stream, triggers, ui, workflows,
};

/// How a server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Run a worker in the same process (default); without one, other processes execute
    /// the runs this server starts.
    pub worker: bool,
    /// The API keys protected routes accept; none: open (loopback only, unless `insecure`).
    pub api_keys: ApiKeys,
    /// Allow listening on a non-loopback address without an API key.
    pub insecure: bool,
    /// Origins allowed by CORS; none: CORS is off.
    pub cors_origins: Vec<String>,
    /// The longest a request other than a stream may take (default 90 s).
    pub request_timeout: Duration,
    /// The longest `?wait=` honoured; longer waits are cut to it (default 60 s).
    pub max_wait: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            worker: true,
            api_keys: ApiKeys::default(),
            insecure: false,
            cors_origins: Vec::new(),
            request_timeout: Duration::from_secs(90),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A non-loopback address without an API key.
    #[error(
        "refusing to listen on {0} without an API key: anyone who can reach it could start and \
         cancel runs. Set CAIRN_API_KEYS or --api-key-file, listen on 127.0.0.1, or pass \
         --insecure if a proxy in front of the server authenticates"
    )]
    Insecure(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another server using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The API key file could not be used.
    #[error("cannot use the API key file {path}: {message}")]
    KeyFile {
        /// Its path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A CORS origin is not a valid header value.
    #[error("--cors-origin {0:?} is not a valid origin (e.g. https://app.example.com)")]
    CorsOrigin(String),
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The worker beside the server failed.
    #[error("the worker failed: {0}")]
    Worker(#[from] EngineError),
    /// The worker beside the server panicked (a bug: its runs resume elsewhere once their
    /// leases lapse).
    #[error("the worker panicked: {0}")]
    WorkerPanicked(String),
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    engine: Engine,
    options: ServeOptions,
}

impl Server {
    /// Binds `options.listen`, after refusing a non-loopback address without an API key
    /// (unless `options.insecure`).
    pub async fn bind(engine: Engine, options: ServeOptions) -> Result<Server, ServerError> {
        let addr = options.listen;
        if !addr.ip().is_loopback() && options.api_keys.is_empty() && !options.insecure {
            return Err(ServerError::Insecure(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server {
            listener,
            engine,
            options,
        })
    }

    /// The address it listens on (the port chosen, when `listen` had port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves (and runs the worker, unless `options.worker` is off) until `shutdown` fires.
    /// Then it stops accepting connections, answers waiting requests at once, ends streams,
    /// lets requests in flight finish, and has the worker finish or hand back its steps in
    /// flight; returns once all of that is done and the store has committed every write.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            listener,
            engine,
            options,
        } = self;
        let executing = TaskTracker::new();
        let app = routes(
            engine.clone(),
            &options,
            shutdown.clone(),
            executing.clone(),
        )?;
        let worker = options.worker.then(|| {
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            tokio::spawn(async move { engine.run_worker(shutdown).await })
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        let worked = match worker {
            Some(worker) => worker
                .await
                .map_err(|join| ServerError::WorkerPanicked(join.to_string()))
                .and_then(|result| result.map_err(ServerError::Worker)),
            None => Ok(()),
        };
        // Runs `?wait` starts executed here: the worker's stop stopped them too; they finish
        // their step in flight within the same grace (else their leases lapse, as the
        // worker's do).
        executing.close();
        let grace = engine.config().shutdown_grace;
        if tokio::time::timeout(grace, executing.wait()).await.is_err() {
            tracing::warn!(
                "runs started with ?wait still had steps in flight after the grace period"
            );
        }
        let flushed = engine.store().flush().await;
        served?;
        worked?;
        flushed.map_err(EngineError::from)?;
        Ok(())
    }
}

/// The API's routes over `engine`, for a program that serves them itself (tests, an
/// existing axum application). `shutdown` ends waits and streams. Call it inside a tokio
/// runtime: it starts the task that counts the engine's events for `/metrics`.
pub fn router(
    engine: Engine,
    options: &ServeOptions,
    shutdown: CancellationToken,
) -> Result<Router, ServerError> {
    routes(engine, options, shutdown, TaskTracker::new())
}

/// [`router`], the runs `?wait` starts execute here tracked by `executing`.
fn routes(
    engine: Engine,
    options: &ServeOptions,
    shutdown: CancellationToken,
    executing: TaskTracker,
) -> Result<Router, ServerError> {
    let state = AppState {
        body_limit: engine.config().limits.max_payload_bytes,
        metrics: Metrics::start(&engine),
        openapi: Arc::new(openapi::document(engine.registry())),
        executions: options
            .worker
            .then(|| Arc::new(Semaphore::new(engine.config().max_concurrent_runs.max(1)))),
        executing: executing.clone(),
        engine,
        max_wait: options.max_wait,
        keys: options.api_keys.clone(),
        shutdown,
    };
    let timeout = options.request_timeout;
    let protected = Router::new()
        .route("/workflows", get(workflows::list))
        .route("/workflows/{slug}", post(workflows::start))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route(
            "/credentials",
            get(credentials::list).post(credentials::set),
        )
        .route(
            "/credentials/{id}",
            get(credentials::get).delete(credentials::delete),
        )
        .route("/credentials/{id}/default", post(credentials::set_default))
        .route("/credentials/connect/{key}", get(oauth::connect))
        .route("/schedules", get(schedules::list))
        .route(
            "/schedules/{id}",
            get(schedules::get)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route("/schedules/{id}/trigger", post(schedules::trigger))
        .route("/schedules/{id}/backfill", post(schedules::backfill))
        .route("/webhooks/{endpoint}/deliveries", get(triggers::deliveries))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(openapi::serve))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let open = Router::new()
        .route(
            "/hooks/{token}",
            post(hooks::resume).get(hooks::resume_from_query),
        )
        .route("/credentials/callback/{key}", get(oauth::callback))
        .route("/triggers/{endpoint}", post(triggers::deliver))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready));
    let timed = protected
        .merge(open)
        .merge(ui::router(state.clone()))
        .layer(middleware::from_fn_with_state(timeout, time_limit));
    let streams = Router::new()
        .route("/runs/stream", get(stream::runs))
        .route("/runs/{id}/stream", get(stream::run))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let mut app = timed
        .merge(streams)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state);
    if !options.cors_origins.is_empty() {
        let origins = options
            .cors_origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| ServerError::CorsOrigin(origin.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("idempotency-key"),
                ]),
        );
    }
    Ok(app)
}

/// Stops a request that takes longer than the server allows (streams are not timed).
async fn time_limit(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    tokio::time::timeout(limit, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout(limit))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::WrongMethod(format!("{method} {}", uri.path()))
}
