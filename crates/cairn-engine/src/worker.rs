//! The worker loop: claims ready runs of the registered workflows and executes them, up to a
//! concurrency limit, until told to stop.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{engine::Engine, error::EngineError, executor::execute};

impl Engine {
    /// Executes ready runs until `shutdown` fires. Then stops claiming, lets each execution
    /// finish its step in flight (up to `shutdown_grace`) and gives unfinished runs back to
    /// the queue; whatever is cut off is resumed by the next worker, nothing completed is lost.
    pub async fn run_worker(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let shared = self.shared.clone();
        let slugs = shared.registry.slugs();
        let mut executions = JoinSet::new();
        // Wake-ups from other processes (PostgreSQL's NOTIFY); without them, poll.
        let mut watch = match shared.store.watch_ready(&slugs).await {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for wake-ups; polling instead");
                None
            }
        };
        let mut store_backoff = Duration::from_millis(50);
        tracing::info!(worker = %shared.worker, workflows = ?slugs, "worker started");
        while !shutdown.is_cancelled() {
            while executions.try_join_next().is_some() {}
            let capacity = shared
                .config
                .max_concurrent_runs
                .saturating_sub(executions.len());
            let mut full_batch = false;
            if capacity > 0 {
                let now = shared.clock.now_ms();
                match shared
                    .store
                    .claim_ready(&slugs, &shared.lease(), now, capacity)
                    .await
                {
                    Ok(claimed) => {
                        store_backoff = Duration::from_millis(50);
                        full_batch = claimed.len() == capacity;
                        for run in claimed {
                            executions.spawn(execute(shared.clone(), run, None, None));
                        }
                    }
                    Err(err) if err.is_transient() => {
                        tracing::warn!(error = %err, "store unavailable; the worker will try again");
                        tokio::time::sleep(store_backoff).await;
                        store_backoff = (store_backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            if full_batch {
                continue;
            }
            let wait = self.idle_wait(&slugs).await;
            let woken = async {
                match watch.as_mut() {
                    Some(watch) => drop(watch.wait(wait).await),
                    None => tokio::time::sleep(wait).await,
                }
            };
            tokio::select! {
                _ = executions.join_next(), if !executions.is_empty() => {}
                () = shared.new_work.notified() => {}
                () = woken => {}
                () = shutdown.cancelled() => {}
            }
        }
        tracing::info!(in_flight = executions.len(), "worker stopping");
        self.stop();
        let grace = shared.config.shutdown_grace;
        if tokio::time::timeout(grace, async {
            while executions.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = executions.len(),
                "steps still in flight after the grace period; their runs resume when their leases lapse"
            );
            executions.abort_all();
        }
        Ok(())
    }

    /// How long an idle worker may wait before looking again: until the next run is due,
    /// at most the poll interval (other processes may add runs at any time).
    async fn idle_wait(&self, slugs: &[String]) -> Duration {
        let shared = &self.shared;
        let poll = shared.config.poll_interval;
        match shared.store.next_ready_at(slugs).await {
            Ok(Some(at)) => {
                let until = u64::try_from(at - shared.clock.now_ms()).unwrap_or(0);
                Duration::from_millis(until).min(poll)
            }
            _ => poll,
        }
    }
}
