//! `ctx.patched(id)`: changing a workflow's code while runs of it are in flight. A new
//! execution records a marker and takes the new path; a replay takes the new path only where
//! its history has the marker at that point, so runs recorded before the change keep the old
//! path and replay cleanly.

use cairn_core::{ErrorKind, Event, PATCH_SLUG, Patched, StepKind};
use serde_json::Value;

use crate::{
    base::config::MAX_STEP_KEY_LEN,
    run::{Stop, body::WorkflowCtx},
};

impl WorkflowCtx {
    /// Whether this run takes the code path added under patch `id`:
    ///
    /// ```text
    /// if ctx.patched("send-sms-too") {
    ///     SEND_SMS.run(sms).await?;          // the new path
    /// }                                      // else: the old path (here, nothing)
    /// ```
    ///
    /// New runs, and runs that reach this point past the end of their history (new work,
    /// which no recorded step depends on), get `true` and record a marker step; a run whose
    /// history went past this point before the change replays the old path and gets `false`,
    /// making no call. So put the branch where the change is: a run parked in a later sleep
    /// under the old code wakes and finishes on the old path. Removing a patch takes three deployments: (1) ship the
    /// `if ctx.patched(id) { new } else { old }`; (2) once `runs list --without-patch <id>`
    /// lists no unended run, drop the old branch but keep the `ctx.patched(id)` call; (3) once
    /// no unended run has the marker (`runs list --with-patch <id>`), drop the call.
    pub fn patched(&self, id: &str) -> bool {
        let run = &self.run;
        let key_len = cairn_core::patch_key(id).len();
        if id.is_empty() || key_len > MAX_STEP_KEY_LEN {
            let message = format!(
                "patch id {id:?} must be 1 to {} characters",
                MAX_STEP_KEY_LEN - PATCH_SLUG.len() - 1
            );
            run.stop(Stop::Fail(cairn_core::ErrorInfo::new(
                ErrorKind::Misuse,
                message,
            )));
            return false;
        }
        if run.is_ending() {
            return false;
        }
        let limit = run.env.config.limits.max_steps_per_run;
        let mut journal = run.journal();
        if journal.calls_made() >= limit {
            drop(journal);
            let message = cairn_core::LimitExceeded::Steps { limit }.to_string();
            run.stop(Stop::Fail(cairn_core::ErrorInfo::new(
                ErrorKind::Misuse,
                message,
            )));
            return false;
        }
        let patched = journal.patched(id);
        drop(journal);
        match patched {
            Patched::Replayed => true,
            Patched::Old => false,
            Patched::New { key, position } => {
                if run.env.config.replay_only {
                    let message = format!(
                        "non-determinism at step {key}: the workflow now makes patch `{id}`, which the recorded history does not have"
                    );
                    let error = cairn_core::ErrorInfo::new(ErrorKind::Unrecorded, message);
                    run.stop(Stop::Fail(error.at_step(key)));
                    return false;
                }
                run.defer([Event::StepCompleted {
                    key,
                    kind: StepKind::Patch,
                    slug: PATCH_SLUG.to_owned(),
                    output: Value::from(id),
                    call: Some(position),
                }]);
                true
            }
        }
    }
}
