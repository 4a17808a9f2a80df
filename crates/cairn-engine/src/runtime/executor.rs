//! Executes one claimed run: replays its body against the journal, has its lease renewed by
//! the engine's heartbeat while the body runs (see `heartbeat`), and records how the run
//! ended.

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind, Event, Journal};
use cairn_store::{ClaimedRun, NewRun, Park, StoreError};

use crate::{
    base::{
        error::WorkflowError,
        panics::{Caught, panic_message},
        schema::json_size,
    },
    call::non_determinism_message,
    run::{
        RunContext, Stop,
        body::{ErasedWorkflow, WorkflowCtx},
        scope::Scope,
        writes::WriteWhenWaiting,
    },
    runtime::Runtime,
};

/// How an execution ended.
#[derive(Debug)]
pub(crate) enum ExecEnd {
    /// The run ended (succeeded, failed or canceled); with its final record when this
    /// execution recorded the end.
    Ended(Option<Box<cairn_store::RunRecord>>),
    /// The engine is stopping; the run went back to the queue.
    Released,
    /// Every path waits (a sleep, a hook, a child run): the run is parked in the store,
    /// due at `wake_at_ms`.
    Parked {
        /// When it wakes unless something wakes it sooner (unix ms).
        wake_at_ms: i64,
    },
    /// Another worker took the run over, or the store failed; nothing more was recorded.
    Lost,
    /// This binary does not register the run's workflow.
    NotExecutable(String),
}

/// Executes a claimed run until it ends or must stop. `workflow` overrides the registry
/// lookup (child runs carry their workflow with them). With `create`, the run is not in the
/// store yet: its first write creates it (see `writes`).
pub(crate) async fn execute(
    runtime: Arc<Runtime>,
    claimed: ClaimedRun,
    workflow: Option<Arc<dyn ErasedWorkflow>>,
    create: Option<NewRun>,
) -> ExecEnd {
    let ClaimedRun { run, events } = claimed;
    let env = runtime.env.clone();
    let Some(workflow) = workflow.or_else(|| runtime.registry.get(&run.workflow).cloned()) else {
        runtime.unclaim(run.run_id);
        let now = env.clock.now_ms();
        let holder = run.lease_owner.as_ref().unwrap_or(&env.worker);
        if let Err(err) = env.store.release_lease(run.run_id, holder, now).await {
            tracing::warn!(run = %run.run_id, error = %err, "could not release the lease of a run this binary cannot execute");
        }
        return ExecEnd::NotExecutable(run.workflow);
    };
    let journal = Journal::new(
        events.iter().map(|record| &record.event),
        workflow.changed_input(),
    );
    let written_seq = events.last().map_or(0, |record| record.seq);
    let ctx = Arc::new(RunContext::new(
        &run,
        env.clone(),
        journal,
        written_seq,
        create,
    ));
    let tracked = TrackedWhileAlive::track(&runtime, &ctx);
    runtime.heartbeats.ensure_running(&runtime);
    let renewing = RenewingWhileAlive(ctx.clone());

    let body = WriteWhenWaiting {
        run: ctx.clone(),
        body: Box::pin(
            Scope::Workflow(ctx.clone())
                .enter(workflow.call(run.input.clone(), WorkflowCtx { run: ctx.clone() })),
        ),
    };
    // A panicking body fails its run like an error would; the worker goes on.
    let body = Caught::new(body);
    let outcome = tokio::select! {
        biased;
        stop = ctx.stopped() => Err(stop),
        result = body => Ok(result),
    };
    let ending = match outcome {
        Ok(returned) => Some(body_end(&*workflow, &ctx, returned)),
        Err(Stop::Fail(error)) => Some(Event::RunFailed { error }),
        Err(Stop::Shutdown) => None,
        Err(Stop::StoreFailing(message)) => {
            tracing::warn!(run = %run.run_id, error = %message, "store kept failing; giving the run back to the queue");
            None
        }
        Err(Stop::Suspend {
            status,
            wake_at_ms,
            child,
        }) => {
            drop(renewing);
            let parked = ctx
                .write_then(|| {
                    let park = Park {
                        status,
                        wake_at_ms,
                        known_seq: ctx.written_seq(),
                        child,
                    };
                    let now = env.clock.now_ms();
                    env.store.park_run(run.run_id, &ctx.lease_holder, park, now)
                })
                .await;
            let end = match parked {
                Ok(true) => ExecEnd::Parked { wake_at_ms },
                // Woken while parking (a resume landed, the child ended): due now.
                Ok(false) => ExecEnd::Parked {
                    wake_at_ms: env.clock.now_ms(),
                },
                Err(err) => {
                    tracing::warn!(run = %run.run_id, error = %err, "could not park the run; its lease will lapse");
                    ExecEnd::Lost
                }
            };
            drop(tracked);
            runtime.new_work.notify_waiters();
            return end;
        }
        Err(Stop::LeaseLost | Stop::Ended) => {
            return ExecEnd::Lost;
        }
    };
    drop(renewing);
    let end = match ending {
        Some(event) => match ctx.record_end(event.clone()).await {
            Ok(at_ms) => {
                let run = ctx.as_written(run.clone());
                let ended = cairn_store::rules::ended_record(run, &event, at_ms);
                ExecEnd::Ended(ended.map(Box::new))
            }
            Err(StoreError::RunEnded { .. }) => ExecEnd::Ended(None),
            Err(err) => {
                tracing::warn!(run = %run.run_id, error = %err, "could not record the end of the run");
                ExecEnd::Lost
            }
        },
        None => {
            // Give back what this execution recorded too (it may even create the run).
            if let Err(err) = ctx.write().await {
                tracing::warn!(run = %run.run_id, error = %err, "could not write the last events before giving the run back");
            }
            let now = env.clock.now_ms();
            match env
                .store
                .release_lease(run.run_id, &ctx.lease_holder, now)
                .await
            {
                Ok(()) => ExecEnd::Released,
                Err(err) => {
                    tracing::warn!(run = %run.run_id, error = %err, "could not release the lease; it will lapse");
                    ExecEnd::Lost
                }
            }
        }
    };
    drop(tracked);
    end
}

/// The event that ends a run whose body returned (or panicked): a call its history has and
/// the body no longer made fails it with non-determinism; else its output, checked, or its
/// error.
fn body_end(
    workflow: &dyn ErasedWorkflow,
    run: &RunContext,
    returned: std::thread::Result<Result<serde_json::Value, WorkflowError>>,
) -> Event {
    let slug = &workflow.info().slug;
    let returned = match returned {
        Ok(returned) => returned,
        Err(panic) => {
            let message = format!(
                "workflow {slug} panicked: {}; fix the code, then `runs retry {}`",
                panic_message(&*panic),
                run.run_id
            );
            return Event::RunFailed {
                error: ErrorInfo::new(ErrorKind::Panic, message),
            };
        }
    };
    let unmade = run.journal().unmade();
    if let Some(removed) = unmade {
        let error = ErrorInfo::new(
            ErrorKind::NonDeterminism,
            non_determinism_message(&removed, run.run_id),
        );
        return Event::RunFailed { error };
    }
    match returned {
        Ok(output) => completion(workflow, run, output),
        Err(error) => Event::RunFailed {
            error: error.into_info(),
        },
    }
}

/// The event that ends a run whose body returned `output`: checked against the output schema
/// and the payload limit first.
fn completion(workflow: &dyn ErasedWorkflow, run: &RunContext, output: serde_json::Value) -> Event {
    let slug = &workflow.info().slug;
    if let Err(violations) = workflow.output_schema().validate(&output) {
        let message = format!("output of workflow {slug} does not match its schema: {violations}");
        return Event::RunFailed {
            error: ErrorInfo::new(ErrorKind::InvalidOutput, message),
        };
    }
    let limits = &run.env.config.limits;
    if let Err(err) =
        limits.check_payload(|| format!("output of workflow {slug}"), json_size(&output))
    {
        return Event::RunFailed {
            error: ErrorInfo::new(ErrorKind::PayloadTooLarge, err.to_string()),
        };
    }
    Event::RunCompleted { output }
}

/// Stops the heartbeat renewing the run's lease when dropped: when the body is done, and
/// when the execution ends in any way (its future dropped included), so an abandoned run's
/// lease lapses and another worker can take it.
struct RenewingWhileAlive(Arc<RunContext>);

impl Drop for RenewingWhileAlive {
    fn drop(&mut self) {
        self.0.stop_renewing();
    }
}

/// Counts the execution as running in this process (`Runtime::running`, which the
/// heartbeat renews and `drive` waits on) until dropped: at every end of the execution, its
/// future dropped included (its caller gave up), or driving the run again in this process
/// would wait for it forever.
struct TrackedWhileAlive(Arc<Runtime>, Arc<RunContext>);

impl TrackedWhileAlive {
    fn track(runtime: &Arc<Runtime>, run: &Arc<RunContext>) -> TrackedWhileAlive {
        runtime.track(run);
        TrackedWhileAlive(runtime.clone(), run.clone())
    }
}

impl Drop for TrackedWhileAlive {
    fn drop(&mut self) {
        self.0.untrack(&self.1);
    }
}
