//! `GET /metrics`: Prometheus text, through the `metrics` crate and its Prometheus exporter
//! (a recorder of the server's own, not the process-global one). Counts come from the
//! events this process commits (`Engine::subscribe`): runs started and ended (by workflow
//! and status), steps (by action and outcome) and step latency; the gauges of runs in flight
//! and parked are read from the store at each scrape; the store records how long its commits
//! take to become durable (`cairn_store_commit_seconds`, through its `CommitTimer`).

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use cairn_core::{Event, RunStatus};
use cairn_engine::{Engine, RunEvent};
use cairn_store::{RunFilter, RunId};
use metrics::{Recorder, counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::sync::broadcast::error::RecvError;

use crate::{error::ApiError, state::AppState};

/// Most runs the gauges count per status (a listing, not a count: the store has no count).
const GAUGE_CAP: usize = 10_000;
/// Most runs and steps remembered between their start and end; past it the oldest half is
/// forgotten (an ended run's workflow is then read from the store).
const REMEMBERED: usize = 100_000;
/// Step latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0,
];

/// Commit latency buckets, in seconds (an fsync or a `COMMIT` round trip: 0.1 to 100 ms).
const COMMIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// The commit latency histogram's name.
const COMMIT_SECONDS: &str = "cairn_store_commit_seconds";

/// The server's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    /// A recorder, and a task counting the events `engine` commits until the engine's event
    /// channel closes.
    pub(crate) fn start(engine: &Engine) -> Arc<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), COMMIT_BUCKETS)
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let metrics = Arc::new(Metrics { recorder, handle });
        if let Some(timer) = engine.store().commit_timer() {
            let mut commits = None;
            metrics.record(|| commits = Some(histogram!(COMMIT_SECONDS)));
            if let Some(commits) = commits
                && !timer.observe(commits)
            {
                tracing::info!(
                    "another server in this process already records the store's commit latency"
                );
            }
        }
        let counting = Counting {
            metrics: metrics.clone(),
            engine: engine.clone(),
            workflows: HashMap::new(),
            steps: HashMap::new(),
        };
        tokio::spawn(counting.run(engine.subscribe()));
        metrics
    }

    fn record(&self, what: impl FnOnce()) {
        with_local_recorder(&self.recorder as &dyn Recorder, what);
    }
}

/// What the counting task remembers between a run's or a step's start and its end.
struct Counting {
    metrics: Arc<Metrics>,
    engine: Engine,
    workflows: HashMap<RunId, String>,
    /// `(run, step key)` → (action slug, first attempt's start in unix ms).
    steps: HashMap<(RunId, String), (String, i64)>,
}

impl Counting {
    async fn run(mut self, mut events: tokio::sync::broadcast::Receiver<RunEvent>) {
        loop {
            match events.recv().await {
                Ok(event) => self.count(event).await,
                Err(RecvError::Lagged(lost)) => self
                    .metrics
                    .record(|| counter!("cairn_metrics_events_missed_total").increment(lost)),
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn count(&mut self, record: RunEvent) {
        let run = record.run_id;
        let ended = match &record.event {
            Event::RunCreated { workflow, .. } => {
                let workflow = workflow.clone();
                self.metrics.record(|| {
                    counter!("cairn_runs_started_total", "workflow" => workflow.clone())
                        .increment(1);
                });
                self.remember_workflow(run, workflow);
                None
            }
            Event::StepStarted { key, slug, .. } => {
                if self.steps.len() > REMEMBERED {
                    self.steps.clear();
                }
                self.steps
                    .entry((run, key.to_string()))
                    .or_insert_with(|| (slug.clone(), record.at_ms));
                None
            }
            Event::StepAttemptFailed { key, .. } => {
                self.step_outcome(run, key.as_str(), "attempt_failed", None);
                None
            }
            Event::StepCompleted { key, .. } => {
                self.step_outcome(run, key.as_str(), "completed", Some(record.at_ms));
                None
            }
            Event::StepFailed { key, .. } => {
                self.step_outcome(run, key.as_str(), "failed", Some(record.at_ms));
                None
            }
            Event::RunCompleted { .. } => Some(RunStatus::Succeeded),
            Event::RunFailed { .. } => Some(RunStatus::Failed),
            Event::RunCanceled { .. } => Some(RunStatus::Canceled),
            _ => None,
        };
        if let Some(status) = ended {
            let workflow = match self.workflows.remove(&run) {
                Some(workflow) => workflow,
                None => match self.engine.store().get_run(run).await {
                    Ok(Some(found)) => found.workflow,
                    _ => "unknown".to_owned(),
                },
            };
            self.steps.retain(|(step_run, _), _| *step_run != run);
            self.metrics.record(|| {
                counter!(
                    "cairn_runs_ended_total",
                    "workflow" => workflow,
                    "status" => status.as_str()
                )
                .increment(1);
            });
        }
    }

    fn remember_workflow(&mut self, run: RunId, workflow: String) {
        if self.workflows.len() > REMEMBERED {
            self.workflows.clear();
        }
        self.workflows.insert(run, workflow);
    }

    /// Counts a step's outcome; `ended_at` (unix ms) also records its latency.
    fn step_outcome(
        &mut self,
        run: RunId,
        key: &str,
        outcome: &'static str,
        ended_at: Option<i64>,
    ) {
        let known = match ended_at {
            Some(_) => self.steps.remove(&(run, key.to_owned())),
            None => self.steps.get(&(run, key.to_owned())).cloned(),
        };
        let Some((action, started)) = known else {
            // Started before this server did (or forgotten): counted without a latency.
            self.metrics.record(|| {
                counter!("cairn_steps_total", "action" => "unknown", "outcome" => outcome)
                    .increment(1);
            });
            return;
        };
        self.metrics.record(|| {
            counter!("cairn_steps_total", "action" => action.clone(), "outcome" => outcome)
                .increment(1);
            if let Some(ended) = ended_at {
                #[allow(clippy::cast_precision_loss)]
                let seconds = (ended - started).max(0) as f64 / 1_000.0;
                histogram!("cairn_step_duration_seconds", "action" => action.clone())
                    .record(seconds);
            }
        });
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut counts = Vec::new();
    for status in [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Waiting,
    ] {
        let filter = RunFilter {
            status: Some(status),
            limit: GAUGE_CAP,
            ..RunFilter::default()
        };
        let runs = state.engine.list_run_summaries(&filter).await?;
        counts.push((status, runs.len()));
    }
    let metrics = &state.metrics;
    metrics.record(|| {
        for (status, count) in &counts {
            #[allow(clippy::cast_precision_loss)]
            gauge!("cairn_runs", "status" => status.as_str()).set(*count as f64);
        }
    });
    let text = metrics.handle.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
