//! The worker loop: claims ready runs of the registered workflows and executes them, up to a
//! concurrency limit, until told to stop; saves the declared schedules and poll sources when
//! it starts, fires the due schedules once per poll interval (see `schedules`) and polls the
//! due sources in a task of their own, one pass at a time (see `polls`).

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    api::engine::Engine,
    base::{crash_points::crash_point, error::EngineError},
    runtime::executor::execute,
};

/// The first wait after the store failed to answer a claim; doubled per failure up to
/// [`MAX_STORE_BACKOFF`].
const FIRST_STORE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(5);
/// How long one wait on the store's wake-up watch may last; the engine's clock bounds the
/// real wait (see `idle_wait`).
const WATCH_TIMEOUT: Duration = Duration::from_secs(86_400);

impl Engine {
    /// Executes ready runs until `shutdown` fires. Then stops claiming, lets each execution
    /// finish its step in flight (up to `shutdown_grace`) and gives unfinished runs back to
    /// the queue; whatever is cut off is resumed by the next worker, nothing completed is lost.
    pub async fn run_worker(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let runtime = self.runtime.clone();
        let env = runtime.env.clone();
        let slugs = runtime.registry.slugs();
        let mut executions = JoinSet::new();
        // Wake-ups from other processes (PostgreSQL's NOTIFY); without them, poll.
        let mut watch = match env.store.watch_ready(&slugs).await {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for wake-ups; polling instead");
                None
            }
        };
        let mut store_backoff = FIRST_STORE_BACKOFF;
        if let Err(err) = self.declare_schedules().await {
            tracing::warn!(error = %err, "cannot save the declared schedules; the stored ones still fire");
        }
        if let Err(err) = self.declare_poll_sources().await {
            tracing::warn!(error = %err, "cannot save the declared poll sources; the stored ones are still polled");
        }
        // One pass over the due poll sources at a time, beside the executions: a slow
        // source's poll never holds up claims.
        let mut polling: Option<tokio::task::JoinHandle<()>> = None;
        let poll_ms = i64::try_from(env.config.poll_interval.as_millis()).unwrap_or(i64::MAX);
        let mut schedules_fired_at = i64::MIN;
        tracing::info!(worker = %env.worker, workflows = ?slugs, "worker started");
        while !shutdown.is_cancelled() {
            while executions.try_join_next().is_some() {}
            // Leases and due runs are judged by the store's clock (decision 0046).
            env.read_store_clock().await;
            // Due schedules become runs before the claim, so this pass may take them.
            let now = env.clock.now_ms();
            if now >= schedules_fired_at.saturating_add(poll_ms) {
                schedules_fired_at = now;
                if let Err(err) = self.fire_due_schedules().await {
                    tracing::warn!(error = %err, "cannot fire the due schedules; the worker will try again");
                }
                if self.has_poll_sources()
                    && polling
                        .as_ref()
                        .is_none_or(tokio::task::JoinHandle::is_finished)
                {
                    let engine = self.clone();
                    polling = Some(tokio::spawn(async move {
                        if let Err(err) = engine.poll_due_sources().await {
                            tracing::warn!(error = %err, "cannot poll the due sources; the worker will try again");
                        }
                    }));
                }
            }
            let capacity = env
                .config
                .max_concurrent_runs
                .saturating_sub(executions.len());
            let mut full_batch = false;
            if capacity > 0 {
                let now = env.clock.now_ms();
                match env
                    .store
                    .claim_ready(&slugs, &env.loop_lease(), now, capacity)
                    .await
                {
                    Ok(claimed) => {
                        store_backoff = FIRST_STORE_BACKOFF;
                        full_batch = claimed.len() == capacity;
                        runtime.claimed_here(claimed.iter().map(|run| run.run.run_id));
                        if !claimed.is_empty() {
                            // The claims are committed: the runs are this worker's until
                            // their leases lapse, and none of them has begun.
                            crash_point!("after-claim-before-execute");
                        }
                        for run in claimed {
                            executions.spawn(execute(runtime.clone(), run, None, None));
                        }
                    }
                    Err(err) if err.is_transient() => {
                        tracing::warn!(error = %err, "store unavailable; the worker will try again");
                        env.clock.sleep(store_backoff).await;
                        store_backoff = (store_backoff * 2).min(MAX_STORE_BACKOFF);
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            if full_batch {
                continue;
            }
            // At capacity, a run that is ready must wait for an execution to end: looking
            // again before then would find it ready and spin (a busy loop, and one the
            // simulator's virtual clock never gets past).
            let wait = if capacity == 0 {
                env.config.poll_interval
            } else {
                self.idle_wait(&slugs).await
            };
            let woken = async {
                match watch.as_mut() {
                    Some(watch) => drop(watch.wait(WATCH_TIMEOUT).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = executions.join_next(), if !executions.is_empty() => {}
                () = runtime.new_work.notified() => {}
                () = woken => {}
                () = env.clock.sleep(wait) => {}
                () = shutdown.cancelled() => {}
            }
        }
        tracing::info!(in_flight = executions.len(), "worker stopping");
        self.stop();
        if let Some(polling) = polling {
            // A poll cut off commits nothing: its source is polled again once its lease lapses.
            polling.abort();
        }
        let grace = env.config.shutdown_grace;
        let drained = async { while executions.join_next().await.is_some() {} };
        let in_time = tokio::select! {
            biased;
            () = drained => true,
            () = env.clock.sleep(grace) => false,
        };
        if !in_time {
            tracing::warn!(
                left = executions.len(),
                "steps still in flight after the grace period; their runs resume when their leases lapse"
            );
            executions.abort_all();
        }
        Ok(())
    }

    /// Claims every run of the registered workflows that is ready now (up to
    /// `max_concurrent_runs` at once) and executes each as far as it goes: until it ends,
    /// parks, or lets go. Returns how many runs it executed (0: nothing was ready). A harness
    /// or a one-shot job calls it until it returns 0.
    pub async fn execute_ready(&self) -> Result<usize, EngineError> {
        let runtime = &self.runtime;
        let env = &runtime.env;
        let slugs = runtime.registry.slugs();
        env.read_store_clock().await;
        let claimed = env
            .store
            .claim_ready(
                &slugs,
                &env.loop_lease(),
                env.clock.now_ms(),
                env.config.max_concurrent_runs,
            )
            .await?;
        let count = claimed.len();
        runtime.claimed_here(claimed.iter().map(|run| run.run.run_id));
        futures::future::join_all(
            claimed
                .into_iter()
                .map(|run| execute(runtime.clone(), run, None, None)),
        )
        .await;
        Ok(count)
    }

    /// How long an idle worker may wait before looking again: until the next run is due,
    /// at most the poll interval (other processes may add runs at any time).
    async fn idle_wait(&self, slugs: &[String]) -> Duration {
        let env = &self.runtime.env;
        let poll = env.config.poll_interval;
        match env.store.next_ready_at(slugs).await {
            Ok(Some(at)) => {
                let until = u64::try_from(at - env.clock.now_ms()).unwrap_or(0);
                Duration::from_millis(until).min(poll)
            }
            _ => poll,
        }
    }
}
