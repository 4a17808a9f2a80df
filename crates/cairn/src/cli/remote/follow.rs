//! Following a run on the server: `GET /runs/{id}/stream` (Server-Sent Events, decoded by
//! `sse-stream`) shown with the same live step progress as a run executed here, then the
//! same final output and exit code.

use std::process::ExitCode;

use cairn_core::EventRecord;
use cairn_engine::{RunDetailView, RunView};
use cairn_store::RunId;
use futures::StreamExt;
use reqwest::StatusCode;
use serde::{Deserialize, de::DeserializeOwned};
use sse_stream::SseByteStream;

use super::client::Client;
use crate::cli::{CliError, commands, progress::Display};

/// Where the progress shown starts.
pub(crate) enum ShowFrom {
    /// At the start of the log.
    Start,
    /// After the log entry with this `seq` (the stream starts there).
    After(u64),
    /// At the first event of this step: a forked run's copied steps are not shown, as a
    /// rerun here shows only what it executes.
    Step(String),
}

/// An `error` event's data: the problem the request would have been answered with.
#[derive(Deserialize)]
struct StreamProblem {
    status: u16,
    detail: String,
}

/// Follows `run_id` until it ends, showing its steps (unless `json`) `from` where asked.
/// Ctrl-C stops following only; the server goes on.
pub(crate) async fn follow(
    client: &Client,
    run_id: RunId,
    from: ShowFrom,
    json: bool,
) -> Result<ExitCode, CliError> {
    let id = run_id.to_string();
    let after = match from {
        ShowFrom::After(seq) => Some(seq),
        ShowFrom::Start | ShowFrom::Step(_) => None,
    };
    let response = client.stream(&["runs", &id, "stream"], after).await?;
    let mut display = (!json).then(|| Shown {
        display: Display::new(),
        from: match from {
            ShowFrom::Step(step) => Some(step),
            ShowFrom::Start | ShowFrom::After(_) => None,
        },
    });
    let mut events = SseByteStream::new(response.bytes_stream());
    let ended = async {
        while let Some(next) = events.next().await {
            let sse = next.map_err(|err| client.broken("the event stream", &err))?;
            let data = sse.data.as_deref().unwrap_or_default();
            match sse.event.as_deref() {
                Some("snapshot") => {
                    let detail: RunDetailView = decode(client, "snapshot", data)?;
                    for record in &detail.events {
                        show(&mut display, record);
                    }
                }
                Some("event") => show(&mut display, &decode(client, "event", data)?),
                Some("end") => return Ok(Some(decode::<RunView>(client, "end", data)?)),
                Some("error") => {
                    let problem: StreamProblem = decode(client, "error", data)?;
                    let status =
                        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    return Err(client.problem(status, problem.detail));
                }
                _ => {}
            }
        }
        Ok(None)
    };
    let ended = tokio::select! {
        ended = ended => ended?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopped following run {run_id}; it goes on on the server (`runs get {run_id}`)");
            return Ok(ExitCode::from(130));
        }
    };
    drop(display);
    match ended {
        Some(run) => Ok(commands::outcome(&run, json)),
        None => Err(CliError::Failed(format!(
            "the server closed the event stream of run {run_id} before the run ended (was it \
             stopped?); the run is not lost: `runs get {run_id}` shows where it is"
        ))),
    }
}

/// The progress shown, and the step it starts at while that step has not been seen.
struct Shown {
    display: Display,
    from: Option<String>,
}

fn show(shown: &mut Option<Shown>, record: &EventRecord) {
    let Some(shown) = shown else { return };
    if let Some(step) = &shown.from {
        if record
            .event
            .step_key()
            .is_none_or(|key| key.as_str() != step)
        {
            return;
        }
        shown.from = None;
    }
    shown.display.on(record.at_ms, &record.event);
}

fn decode<T: DeserializeOwned>(client: &Client, name: &str, data: &str) -> Result<T, CliError> {
    serde_json::from_str(data).map_err(|err| {
        client.broken(
            &format!("reading a `{name}` event (is the server the same version of Cairn?)"),
            &err,
        )
    })
}
