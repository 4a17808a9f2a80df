//! Server-Sent Events. `GET /runs/{id}/stream`: a `snapshot` (the run as `GET /runs/{id}`),
//! then each event of its log as it is committed (`event`, with its `seq` as the SSE id),
//! then `end` with the run as it ended; commits of any process sharing the store arrive
//! (the engine's `follow`). A client that reconnects with `Last-Event-ID` gets the events after
//! that `seq` instead of a snapshot. `GET /runs/stream`: each run created or changing status
//! (`run`, the run as `GET /runs` lists it).

use std::{collections::HashMap, convert::Infallible};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use cairn_core::{EventRecord, RunStatus};
use cairn_engine::{Engine, EngineError, RunDetailView, RunView};
use cairn_store::{ChangeWatch, Changes, RunFilter, RunId};
use futures::{Stream, StreamExt, stream};

use crate::{error::ApiError, params::run_id, state::AppState};

/// Runs the list stream remembers the status of; past it, the oldest are forgotten (and
/// shown again when they next change).
const REMEMBERED_RUNS: usize = 10_000;
/// Runs read again when the changes are unknown (another process committed).
const RESCAN: usize = 100;

/// `GET /runs/{id}/stream`.
pub(crate) async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let run_id = run_id(&id)?;
    let resume_after = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let engine = state.engine.clone();
    let (head, after) = match resume_after {
        Some(after) => {
            // Still a 404 for an unknown run.
            engine
                .store()
                .get_run(run_id)
                .await
                .map_err(EngineError::from)?
                .ok_or(EngineError::RunNotFound(run_id))?;
            (None, after)
        }
        None => {
            let detail = engine.get_run(run_id).await?;
            let after = detail.events.last().map_or(0, |record| record.seq);
            let snapshot =
                json_event("snapshot", &RunDetailView::from(&detail)).id(after.to_string());
            (Some(snapshot), after)
        }
    };
    let events = engine.follow(run_id, after).map(|next| {
        Ok::<_, Infallible>(match next {
            Ok(record) => log_event(&record),
            Err(err) => error_event(err),
        })
    });
    let end = stream::once(async move {
        Ok(match engine.get_run(run_id).await {
            Ok(detail) => json_event("end", &RunView::from(&detail.run)),
            Err(err) => error_event(err),
        })
    });
    let stream = stream::iter(head.map(Ok::<_, Infallible>))
        .chain(events)
        .chain(end)
        .take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /runs/stream`: a `run` event for each run created or changing status, from now on,
/// until the server stops.
pub(crate) async fn runs(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let watch = state
        .engine
        .store()
        .watch_changes()
        .await
        .map_err(EngineError::from)?;
    let lister = Lister {
        engine: state.engine.clone(),
        watch,
        known: HashMap::new(),
    };
    let stream = stream::unfold(lister, |mut lister| async move {
        let events = lister.next().await;
        Some((stream::iter(events), lister))
    })
    .flatten()
    .map(Ok::<_, Infallible>)
    .take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a runs-list stream is: the last status it showed of each run.
struct Lister {
    engine: Engine,
    watch: Box<dyn ChangeWatch>,
    known: HashMap<RunId, RunStatus>,
}

impl Lister {
    /// The events of the next change (none when no shown status changed).
    async fn next(&mut self) -> Vec<Event> {
        let changes = match self.watch.changed().await {
            Ok(changes) => changes,
            Err(err) => return vec![error_event(err.into())],
        };
        let runs = match changes {
            Changes::Runs(ids) => {
                let mut runs = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.engine.store().get_run(id).await {
                        Ok(Some(run)) => runs.push(run),
                        Ok(None) => {}
                        Err(err) => return vec![error_event(err.into())],
                    }
                }
                runs
            }
            Changes::Unknown => {
                let filter = RunFilter {
                    limit: RESCAN,
                    ..RunFilter::default()
                };
                match self.engine.list_runs(&filter).await {
                    Ok(runs) => runs,
                    Err(err) => return vec![error_event(err)],
                }
            }
        };
        if self.known.len() > REMEMBERED_RUNS {
            self.known.clear();
        }
        runs.iter()
            .filter(|run| self.known.insert(run.run_id, run.status) != Some(run.status))
            .map(|run| json_event("run", &RunView::from(run)))
            .collect()
    }
}

/// An SSE event named `name` whose data is `value` as JSON.
fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    Event::default().event(name).data(data)
}

/// An event of the run's log, its `seq` the SSE id (for `Last-Event-ID`).
fn log_event(record: &EventRecord) -> Event {
    json_event("event", record).id(record.seq.to_string())
}

/// An `error` event: the problem, as a request failing this way would have answered.
fn error_event(err: EngineError) -> Event {
    let err = ApiError::from(err);
    let problem = serde_json::json!({"status": err.status().as_u16(), "detail": err.detail()});
    json_event("error", &problem)
}
