//! `serve`: the HTTP API (crate `cairn-server`) over this binary's engine, with a worker
//! beside it unless `--no-worker`. SIGTERM or Ctrl-C stops it gracefully; a second signal
//! exits at once.

use std::process::ExitCode;

use cairn_engine::{CancellationToken, Engine};
use cairn_server::{ApiKeys, ServeOptions, Server, ServerError};

use super::{CliError, args::ServeArgs, commands::wait_for_signal};

/// Serves until a signal, then drains; exit 0 once everything in flight is settled.
pub(crate) async fn serve(engine: &Engine, args: ServeArgs) -> Result<ExitCode, CliError> {
    let mut keys = ApiKeys::from_list(&std::env::var("CAIRN_API_KEYS").unwrap_or_default());
    if let Some(path) = &args.api_key_file {
        keys = keys.merge(ApiKeys::from_file(path).map_err(usage)?);
    }
    let options = ServeOptions {
        listen: args.listen,
        worker: !args.no_worker,
        api_keys: keys,
        insecure: args.insecure,
        cors_origins: args.cors_origin,
        max_wait: args.max_wait.into(),
        ..ServeOptions::default()
    };
    let open = options.api_keys.is_empty();
    let server = Server::bind(engine.clone(), options).await.map_err(usage)?;
    let addr = server.local_addr().map_err(failure)?;
    // Scripts (and tests) read this line for the address.
    eprintln!(
        "listening on http://{addr} ({}; {})",
        if args.no_worker {
            "no worker: `worker` processes execute runs"
        } else {
            "with a worker"
        },
        if open {
            "no API key"
        } else {
            "API keys required"
        }
    );
    let shutdown = CancellationToken::new();
    let (signals, stopping) = (shutdown.clone(), engine.clone());
    tokio::spawn(async move {
        wait_for_signal().await;
        // No step starts after this line; the message tells scripts (and tests) so.
        stopping.stop();
        eprintln!(
            "stopping: no new connections; finishing requests and steps in flight (signal again to exit at once)"
        );
        signals.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    server.run(shutdown).await.map_err(failure)?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A refusal of the command as given (exit 2).
fn usage(err: ServerError) -> CliError {
    CliError::Usage(err.to_string())
}

/// A failure while serving (exit 1).
fn failure(err: ServerError) -> CliError {
    match err {
        ServerError::Worker(engine) => CliError::Engine(engine),
        other => CliError::Failed(other.to_string()),
    }
}
