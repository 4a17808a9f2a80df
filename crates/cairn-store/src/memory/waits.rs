//! Durable waits in memory, mirroring the SQLite backend's `waits`: parking runs, and hooks
//! (registered when their `HookCreated` event is appended, resumed by token, timed out by the
//! executing worker, closed when their run ends).

use std::cmp::Reverse;

use cairn_core::{Event, RunStatus};

use super::state::{Hooks, State, append_to};
use crate::{
    HookFilter, HookRecord, HookState, Park, RunId, StoreError, StoreResult, WorkerId, rules,
};

/// Closes `run`'s pending hooks (the run ended at `now`).
pub(super) fn close_hooks(hooks: &mut Hooks, run: RunId, now: i64) {
    for hook in hooks.values_mut() {
        if hook.run_id == run && hook.state == HookState::Pending {
            hook.state = HookState::Closed;
            hook.closed_at_ms = Some(now);
        }
    }
}

/// Marks the stored hook `token` as `state` since `now`.
fn close_hook(hooks: &mut Hooks, token: &str, state: HookState, now: i64) {
    if let Some(hook) = hooks.get_mut(token) {
        hook.state = state;
        hook.closed_at_ms = Some(now);
    }
}

impl State {
    /// Parks a run, unless its log grew past what the parking worker knows or the child it
    /// waits for has ended (then it is made ready at once). Returns whether it was parked.
    pub(crate) fn park_run(
        &mut self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now: i64,
    ) -> StoreResult<bool> {
        self.fenced(id, worker)?;
        let child_status = match park.child {
            Some(child) => Some(self.entry(child)?.record.status),
            None => None,
        };
        self.touched.push(id);
        let entry = self.fenced(id, worker)?;
        let target = rules::park_target(&park, entry.last_seq(), child_status, now);
        let record = &mut entry.record;
        record.status = target.status;
        record.ready_at_ms = target.ready_at_ms;
        record.lease_owner = None;
        record.lease_expires_at_ms = None;
        record.updated_at_ms = now;
        Ok(target.parked)
    }

    /// Resumes a pending hook: records `HookResumed` in its run's log, marks the hook
    /// resumed and wakes the run if nobody holds its lease.
    pub(crate) fn resume_hook(
        &mut self,
        token: &str,
        payload: serde_json::Value,
        now: i64,
    ) -> StoreResult<HookRecord> {
        let mut hook = self
            .hooks
            .get(token)
            .ok_or(StoreError::HookNotFound)?
            .clone();
        let run = &self.entry(hook.run_id)?.record;
        rules::check_resumable(&hook, run.status)?;
        let leased = run.lease_owner.is_some();
        let resumed = Event::HookResumed {
            key: hook.step_key.clone(),
            payload,
        };
        let (entry, hooks) = self.entry_and_hooks(hook.run_id)?;
        append_to(entry, hooks, vec![resumed], now)?;
        close_hook(hooks, token, HookState::Resumed, now);
        if !leased {
            entry.record.status = RunStatus::Queued;
            entry.record.ready_at_ms = now;
        }
        self.touched.push(hook.run_id);
        hook.state = HookState::Resumed;
        hook.closed_at_ms = Some(now);
        Ok(hook)
    }

    /// Times a pending hook out (fenced by its run's lease) with `timed_out` appended.
    /// `false`, writing nothing, if it was resumed first.
    pub(crate) fn time_out_hook(
        &mut self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now: i64,
    ) -> StoreResult<bool> {
        let hook = self
            .hooks
            .get(token)
            .ok_or(StoreError::HookNotFound)?
            .clone();
        self.fenced(hook.run_id, worker)?;
        if !rules::check_time_out(&hook)? {
            return Ok(false);
        }
        let (entry, hooks) = self.entry_and_hooks(hook.run_id)?;
        append_to(entry, hooks, vec![timed_out], now)?;
        close_hook(hooks, token, HookState::TimedOut, now);
        self.touched.push(hook.run_id);
        Ok(true)
    }

    pub(crate) fn get_hook(&self, token: &str) -> Option<HookRecord> {
        self.hooks.get(token).cloned()
    }

    /// Hooks matching `filter`, newest first (ties: by token).
    pub(crate) fn list_hooks(&self, filter: &HookFilter) -> Vec<HookRecord> {
        let mut matching: Vec<&HookRecord> = self
            .hooks
            .values()
            .filter(|hook| {
                filter.run_id.is_none_or(|run| run == hook.run_id)
                    && filter.state.is_none_or(|state| state == hook.state)
            })
            .collect();
        matching.sort_unstable_by(|a, b| {
            (Reverse(a.created_at_ms), &a.token).cmp(&(Reverse(b.created_at_ms), &b.token))
        });
        matching
            .into_iter()
            .take(filter.effective_limit())
            .cloned()
            .collect()
    }
}
