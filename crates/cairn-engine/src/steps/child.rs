//! Child runs: a workflow called from another workflow is a run of its own, linked to its
//! parent, and one step of the parent. The child is executed here as far as it goes; while it
//! waits (parked, or held by another worker) the parent waits too, and suspends when nothing
//! else of it is working: the child's end wakes it.

use std::sync::Arc;

use crate::{
    base::{config::millis, error::StepError, schema::Payload},
    call::{
        Begin, Call, halt,
        wait::{Outside, wait_outside},
    },
    run::{body::ErasedWorkflow, env::ChildState},
    steps::workflow::WorkflowInner,
};
use cairn_core::{ErrorKind, RunStatus};

/// Replays or executes a child-workflow step.
pub(crate) async fn execute_child<I: Payload, O: Payload>(
    child: Arc<WorkflowInner<I, O>>,
    call: Call,
    input: I,
) -> Result<O, StepError> {
    if let Some(invalid) = &child.invalid {
        return Err(StepError::misuse(invalid.clone()));
    }
    let run = &call.run;
    let slug = child.info.slug.as_str();
    let input = call.encode_input(&input)?;
    let attempt = match call.begin(&input).await {
        Begin::Replayed(result) => return call.decode_output(&child.output_schema, result?),
        Begin::Execute(execute) => execute.attempt,
    };
    if let Err(violations) = child.input_schema.validate(&input) {
        let error = call.error(
            ErrorKind::InvalidInput,
            format!("input does not match the schema of workflow {slug}: {violations}"),
        );
        return Err(call.fail(error, 0).await);
    }
    if attempt == 1 {
        // A later execution finds the child by its idempotency key, started already.
        run.defer([call.started(input.clone(), 1)]);
    }
    let children = match run.env.children() {
        Ok(children) => children,
        Err(stop) => {
            run.stop(stop);
            return halt().await;
        }
    };
    let erased: Arc<dyn ErasedWorkflow> = child.clone();
    let outcome = loop {
        let state = {
            let _busy = run.busy();
            if run.flush().await.is_err() {
                return halt().await;
            }
            children
                .clone()
                .run_child(run, &call.key, erased.clone(), input.clone())
                .await
        };
        match state {
            Ok(ChildState::Ended(outcome)) => break outcome,
            Ok(ChildState::Waiting {
                run_id,
                ready_at_ms,
            }) => {
                let poll = millis(run.env.config.poll_interval);
                let recheck = ready_at_ms.min(run.env.clock.now_ms().saturating_add(poll));
                let outside = Outside {
                    status: RunStatus::Waiting,
                    wake_at_ms: ready_at_ms,
                    recheck_at_ms: recheck,
                    child: Some(run_id),
                };
                wait_outside(run, outside).await;
            }
            Err(stop) => {
                run.stop(stop);
                return halt().await;
            }
        }
    };
    match outcome {
        Ok(output) => {
            // The child's own run holds its result durably; this is written by the next barrier.
            run.defer([call.completed(output.clone())]);
            call.decode_output(&child.output_schema, output)
        }
        Err(child_error) => {
            let error = call.error(
                ErrorKind::ChildFailed,
                format!("child workflow {slug} failed: {child_error}"),
            );
            Err(call.fail(error, 1).await)
        }
    }
}
