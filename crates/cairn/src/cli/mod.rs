//! The command-line interface users embed in their own binary: `cairn::cli::main(registry)`.
//!
//! Every listing and inspection command takes `--json` (camelCase fields). Exit codes: 0 on
//! success, 1 when a run failed or was canceled (or the engine failed), 2 for bad input
//! (unknown slug or run, invalid JSON, schema violation, usage).
//!
//! With `--server URL` (or `CAIRN_SERVER`; cairn's `client` feature) `run`, `runs …`,
//! `hooks resume`, `workflows list` and `credentials …` act on a running `serve` over its HTTP API instead of
//! opening a store, with the same output and exit codes; the API key comes from
//! `CAIRN_API_KEY`.

mod args;
mod commands;
mod credentials;
mod hooks;
mod input;
mod logs;
mod progress;
#[cfg(feature = "client")]
mod remote;
mod schedules;
#[cfg(feature = "server")]
mod serve;
mod sources;
pub(crate) mod view;
mod webhooks;

use std::{path::Path, process::ExitCode, sync::Arc};

use clap::Parser;
use serde_json::Value;

use cairn_engine::{Engine, EngineConfig, EngineError, KeySource, Registry};
use cairn_store::Store;

pub use args::Cli;
use args::Command;

/// Parses the process arguments and runs the command. Use it as your binary's `main`.
pub fn main(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    logs::init();
    logs::quiet_caught_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli, registry))
}

/// Runs one parsed command against `registry`.
pub async fn run(cli: Cli, registry: Registry) -> ExitCode {
    // Before the store is opened: bad input changes nothing.
    let json = match input::read(&cli.command) {
        Ok(json) => json,
        Err(err) => return report(err),
    };
    if let Some(url) = &cli.server {
        // A client of a server: no store is opened here.
        return match remote(url, cli.command, json).await {
            Ok(code) => code,
            Err(err) => report(err),
        };
    }
    let engine = match open_engine(&cli, registry).await {
        Ok(engine) => engine,
        Err(err) => return report(err),
    };
    let code = match commands::dispatch(&engine, cli.command, json, &cli.data_dir).await {
        Ok(code) => code,
        Err(err) => report(err),
    };
    if let Err(err) = engine.store().flush().await {
        eprintln!("warning: not every write was committed before exit: {err}");
    }
    code
}

/// An error a command ends with, and the exit code it gets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Open(String),
    /// The command failed while it ran (not the caller's fault).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    #[error("{0}")]
    Failed(String),
}

fn report(err: CliError) -> ExitCode {
    eprintln!("error: {err}");
    let user_error = match &err {
        CliError::Usage(_) => true,
        CliError::Engine(engine) => engine.class().is_caller_error(),
        CliError::Open(_) | CliError::Failed(_) => false,
    };
    ExitCode::from(if user_error { 2 } else { 1 })
}

/// `command` against the server at `url`.
#[cfg(feature = "client")]
async fn remote(url: &str, command: Command, json: Value) -> Result<ExitCode, CliError> {
    remote::dispatch(url, command, json).await
}

#[cfg(not(feature = "client"))]
async fn remote(_url: &str, _command: Command, _json: Value) -> Result<ExitCode, CliError> {
    Err(CliError::Usage(
        "--server (or CAIRN_SERVER) asks to act on a Cairn server, but this binary was built \
         without cairn's `client` feature: add `features = [\"client\"]` to its cairn \
         dependency, or leave --server out to use the store here"
            .to_owned(),
    ))
}

/// The data directory (`--data-dir`, `CAIRN_DATA_DIR`, default `.cairn`), shared with every
/// action as a resource: `ctx.resource::<DataDir>()` gives where to keep files next to the
/// embedded store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir(pub std::path::PathBuf);

async fn open_engine(cli: &Cli, registry: Registry) -> Result<Engine, CliError> {
    let registry = registry.resource(DataDir(cli.data_dir.clone()));
    let store = open_store(cli).await?;
    let mut config = EngineConfig::default();
    if let Some(ttl) = cli.lease_ttl {
        config.lease_ttl = ttl.into();
    }
    if let Some(poll) = cli.poll_interval {
        config.poll_interval = poll.into();
    }
    if let Some(url) = &cli.public_url {
        config.public_url = url.clone();
    }
    if let Some(bytes) = cli.max_payload_bytes {
        config.limits.max_payload_bytes = bytes;
    }
    if let Some(recoveries) = cli.max_step_recoveries {
        config.limits.max_step_recoveries = recoveries;
    }
    if let Some(concurrency) = cli.command.concurrency() {
        config.max_concurrent_runs = concurrency.max(1);
    }
    Ok(Engine::builder(store, registry)
        .config(config)
        .master_key(KeySource::File(master_key_file(&cli.data_dir)))
        .build()?)
}

/// The key file credentials are sealed with when `CAIRN_MASTER_KEY` is not set.
pub(crate) fn master_key_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("master.key")
}

/// PostgreSQL when a database URL is given, else the embedded SQLite file in the data dir.
async fn open_store(cli: &Cli) -> Result<Arc<dyn Store>, CliError> {
    match &cli.database_url {
        Some(url) => open_postgres(url, cli.database_schema.clone()).await,
        None => open_sqlite(&cli.data_dir),
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, schema: Option<String>) -> Result<Arc<dyn Store>, CliError> {
    use cairn_store_postgres::{PostgresOptions, PostgresStore};
    let options = PostgresOptions {
        schema,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(url, options)
        .await
        .map_err(|err| CliError::Open(format!("PostgreSQL ({}): {err}", redact_url(url))))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _schema: Option<String>) -> Result<Arc<dyn Store>, CliError> {
    let otherwise = if cfg!(feature = "sqlite") {
        ", or leave the URL out to use the SQLite file in --data-dir"
    } else {
        ""
    };
    Err(CliError::Usage(format!(
        "--database-url (or CAIRN_DATABASE_URL) asks for PostgreSQL, but this binary was built \
         without cairn's `postgres` feature: add `features = [\"postgres\"]` to its cairn \
         dependency{otherwise}"
    )))
}

#[cfg(feature = "sqlite")]
fn open_sqlite(data_dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    let store = cairn_store_sqlite::SqliteStore::open_in_dir(data_dir)
        .map_err(|err| CliError::Open(format!("{}: {err}", data_dir.display())))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_data_dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    let otherwise = if cfg!(feature = "postgres") {
        "pass --database-url (or set CAIRN_DATABASE_URL) to use PostgreSQL, or "
    } else {
        ""
    };
    Err(CliError::Usage(format!(
        "this binary was built without cairn's `sqlite` feature, so it has no embedded store: \
         {otherwise}add `features = [\"sqlite\"]` to its cairn dependency"
    )))
}

/// A database URL without its password, for messages.
#[cfg(feature = "postgres")]
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(all(test, not(feature = "postgres")))]
mod tests {
    use clap::Parser;

    use super::{Cli, CliError, open_store};

    #[tokio::test]
    async fn a_database_url_without_the_postgres_feature_is_refused_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let cli = Cli::parse_from([
            "app".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--database-url".as_ref(),
            "postgres://cairn@127.0.0.1:1/cairn".as_ref(),
            "runs".as_ref(),
            "list".as_ref(),
        ]);
        let error = open_store(&cli).await.err().expect("refused");
        let CliError::Usage(message) = error else {
            panic!("a usage error (exit 2), not {error:?}");
        };
        assert!(
            message.contains("`postgres` feature") && message.contains("--database-url"),
            "the message names the option and the feature: {message}"
        );
        assert!(!data_dir.exists(), "no SQLite file was made instead");
    }
}

#[cfg(all(test, not(feature = "client")))]
mod without_client {
    use clap::Parser;

    use super::{Cli, CliError, run};

    #[tokio::test]
    async fn a_server_url_without_the_client_feature_is_refused_and_opens_no_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let args = [
            "app".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--server".as_ref(),
            "http://127.0.0.1:1".as_ref(),
            "runs".as_ref(),
            "list".as_ref(),
        ];
        let code = run(Cli::parse_from(args), cairn_engine::Registry::new()).await;
        assert_eq!(code, std::process::ExitCode::from(2));
        assert!(!data_dir.exists(), "no store was opened instead");
        let command = Cli::parse_from(args).command;
        let error = super::remote("http://127.0.0.1:1", command, serde_json::Value::Null)
            .await
            .expect_err("refused");
        let CliError::Usage(message) = error else {
            panic!("a usage error (exit 2), not {error:?}");
        };
        assert!(
            message.contains("`client` feature") && message.contains("--server"),
            "{message}"
        );
    }
}
