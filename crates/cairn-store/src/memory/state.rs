//! The in-memory tables and the run operations on them, mirroring the SQLite backend's
//! `ops` and `read` column for column: a run's row is a [`RunRecord`] plus its log and its
//! insertion number (SQLite's `rowid`, the tie-break of its orderings), hooks are
//! [`HookRecord`]s by token.
//!
//! A write is first worked out in full ([`Staged`]) and only then applied, so a refused write
//! (a fenced append, an event after a terminal one, a taken hook token) changes nothing.

use std::{cmp::Reverse, collections::HashMap};

use cairn_core::{Event, EventRecord, RunStatus};

use crate::{
    ClaimOutcome, ClaimedRun, CreateOutcome, HookRecord, HookState, Lease, NewRun, RunFilter,
    RunId, RunRecord, RunSummary, StoreError, StoreResult, WorkerId,
    rules::{self, RunEffect},
};

/// Hooks by token.
pub(super) type Hooks = HashMap<String, HookRecord>;

/// Every run with its log, every hook.
#[derive(Default)]
pub(crate) struct State {
    /// Runs by id.
    runs: HashMap<RunId, RunEntry>,
    /// Run ids by `(workflow, idempotency key)`: one run per key and workflow.
    keys: HashMap<(String, String), RunId>,
    /// Hooks by token.
    pub(super) hooks: Hooks,
    /// Schedules by id (beside the runs: a fire creates runs and advances its schedule in
    /// one operation).
    pub(super) schedules: super::schedules::Schedules,
    /// Poll sources by name, with their item keys (beside the runs: a poll's commit creates
    /// runs and advances its source in one operation).
    pub(super) polls: super::polls::Polls,
    /// The insertion number the next run gets.
    next_row: u64,
    /// The runs the operation under way changed, for the store's change watches.
    pub(super) touched: Vec<RunId>,
}

/// One run: its columns, its log and when it was inserted.
pub(super) struct RunEntry {
    /// The run's columns, kept exactly as the SQLite backend keeps its row.
    pub(super) record: RunRecord,
    /// The log, in `seq` order from 1.
    pub(super) log: Vec<EventRecord>,
    /// Insertion number (SQLite's `rowid`): breaks ties in orderings the way SQLite does.
    row: u64,
}

impl RunEntry {
    /// The `seq` of the last event (0 for an empty log).
    pub(super) fn last_seq(&self) -> u64 {
        self.log.last().map_or(0, |record| record.seq)
    }

    /// Gives the run to `lease`: running, counted, ready when the lease lapses.
    fn take_lease(&mut self, lease: &Lease, now: i64) -> ClaimedRun {
        let record = &mut self.record;
        record.status = RunStatus::Running;
        record.lease_owner = Some(lease.worker.clone());
        record.lease_expires_at_ms = Some(lease.expires_at_ms);
        record.ready_at_ms = lease.expires_at_ms;
        record.executions = record.executions.saturating_add(1);
        record.updated_at_ms = now;
        ClaimedRun {
            run: self.record.clone(),
            events: self.log.clone(),
        }
    }

    /// Whether `claim_ready` may take the run at `now`: not ended, ready, no live lease.
    fn claimable(&self, workflows: &[String], now: i64) -> bool {
        let record = &self.record;
        record.finished_at_ms.is_none()
            && record.ready_at_ms <= now
            && (record.lease_owner.is_none()
                || record.lease_expires_at_ms.is_some_and(|until| until <= now))
            && workflows.contains(&record.workflow)
    }
}

/// A batch of events worked out against a run, not yet written.
#[derive(Default)]
struct Staged {
    /// The events, numbered and stamped.
    records: Vec<EventRecord>,
    /// Their effects on the run's row, in order (hooks aside).
    changes: Vec<RunEffect>,
    /// The hooks their `HookCreated` events register.
    hooks: Vec<HookRecord>,
}

/// Works out appending `events` to run `id` after `last_seq`, refusing the whole batch if an
/// event follows a terminal one (`RunEnded`) or a hook token is taken.
fn stage(
    hooks: &Hooks,
    id: RunId,
    last_seq: u64,
    events: Vec<Event>,
    now: i64,
) -> StoreResult<Staged> {
    let mut staged = Staged::default();
    let mut ended = None;
    for (seq, event) in (last_seq + 1..).zip(events) {
        if let Some(status) = ended {
            return Err(StoreError::RunEnded { run: id, status });
        }
        match rules::run_effect(&event) {
            RunEffect::None => {}
            RunEffect::RegisterHook {
                key,
                token,
                schema,
                timeout_at_ms,
            } => {
                if hooks.contains_key(&token) || staged.hooks.iter().any(|hook| hook.token == token)
                {
                    // SQLite refuses the duplicate primary key, which it reports as `Corrupt`.
                    return Err(StoreError::Corrupt(format!(
                        "run {id} created a hook with a token another hook already has ({key}); \
                         hook tokens must be unique"
                    )));
                }
                staged.hooks.push(HookRecord {
                    token,
                    run_id: id,
                    step_key: key,
                    state: HookState::Pending,
                    schema,
                    created_at_ms: now,
                    timeout_at_ms,
                    closed_at_ms: None,
                });
            }
            effect => {
                if let Some(status) = effect.ends() {
                    ended = Some(status);
                }
                staged.changes.push(effect);
            }
        }
        staged.records.push(EventRecord {
            seq,
            at_ms: now,
            event,
        });
    }
    Ok(staged)
}

/// Writes a staged batch: registers its hooks, applies its changes, grows the log, and
/// closes the run's pending hooks if it ended. Returns whether it ended the run.
fn apply(entry: &mut RunEntry, hooks: &mut Hooks, staged: Staged, now: i64) -> bool {
    for hook in staged.hooks {
        hooks.insert(hook.token.clone(), hook);
    }
    let record = &mut entry.record;
    let mut ended = false;
    for change in staged.changes {
        match change {
            RunEffect::None | RunEffect::RegisterHook { .. } => {}
            RunEffect::End {
                status,
                output,
                error,
            } => {
                record.status = status;
                record.output = output;
                record.error = error;
                record.finished_at_ms = Some(now);
                record.lease_owner = None;
                record.lease_expires_at_ms = None;
                ended = true;
            }
            RunEffect::Requeue => {
                record.status = RunStatus::Queued;
                record.output = None;
                record.error = None;
                record.finished_at_ms = None;
                record.lease_owner = None;
                record.lease_expires_at_ms = None;
                record.ready_at_ms = now;
            }
            RunEffect::Status(status) => record.status = status,
        }
    }
    record.updated_at_ms = now;
    entry.log.extend(staged.records);
    if ended {
        super::waits::close_hooks(hooks, entry.record.run_id, now);
    }
    ended
}

/// Appends `events` to `entry`'s log and applies their effects, or writes nothing. Returns
/// whether they ended the run.
pub(super) fn append_to(
    entry: &mut RunEntry,
    hooks: &mut Hooks,
    events: Vec<Event>,
    now: i64,
) -> StoreResult<bool> {
    let staged = stage(hooks, entry.record.run_id, entry.last_seq(), events, now)?;
    Ok(apply(entry, hooks, staged, now))
}

impl State {
    /// How many runs there are.
    pub(super) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The run, or `RunNotFound`.
    pub(super) fn entry(&self, id: RunId) -> StoreResult<&RunEntry> {
        self.runs.get(&id).ok_or(StoreError::RunNotFound(id))
    }

    /// The run and the hooks, both writable, or `RunNotFound`.
    pub(super) fn entry_and_hooks(
        &mut self,
        id: RunId,
    ) -> StoreResult<(&mut RunEntry, &mut Hooks)> {
        let entry = self.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        Ok((entry, &mut self.hooks))
    }

    /// The fencing rule: `worker` holds the lease of run `id`, which has not ended.
    pub(super) fn fenced(&mut self, id: RunId, worker: &WorkerId) -> StoreResult<&mut RunEntry> {
        let entry = self.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        let record = &entry.record;
        let owner = record.lease_owner.as_ref().map(|owner| owner.as_str());
        rules::check_fence(id, record.status, owner, worker)?;
        Ok(entry)
    }

    /// Appends `events` to run `id`'s log (unfenced), or writes nothing; a child's end
    /// wakes its parked parent.
    fn write_events(&mut self, id: RunId, events: Vec<Event>, now: i64) -> StoreResult<()> {
        let (entry, hooks) = self.entry_and_hooks(id)?;
        let ended = append_to(entry, hooks, events, now)?;
        self.touched.push(id);
        if ended {
            self.wake_parent_of(id, now);
        }
        Ok(())
    }

    /// The child-run rule: run `id` has just ended at `now`, so its parent, if parked,
    /// becomes queued and ready now.
    fn wake_parent_of(&mut self, id: RunId, now: i64) {
        let parent = self
            .runs
            .get(&id)
            .and_then(|entry| entry.record.parent_run_id);
        let Some(entry) = parent.and_then(|parent| self.runs.get_mut(&parent)) else {
            return;
        };
        let record = &mut entry.record;
        let owner = record.lease_owner.as_ref().map(WorkerId::as_str);
        if rules::wakes_parent(record.status, owner) {
            record.status = RunStatus::Queued;
            record.ready_at_ms = now;
            record.updated_at_ms = now;
            self.touched.push(record.run_id);
        }
    }

    /// Inserts the run with `RunCreated` and its history, unless its id or its idempotency
    /// key is taken (then the existing run, the key's first).
    pub(crate) fn create_run(&mut self, run: NewRun) -> StoreResult<CreateOutcome> {
        let keyed = run
            .idempotency_key
            .as_ref()
            .and_then(|key| self.keys.get(&(run.workflow.clone(), key.clone())).copied());
        if let Some(existing) = keyed {
            return Ok(CreateOutcome {
                run_id: existing,
                created: false,
            });
        }
        if self.runs.contains_key(&run.id) {
            return Ok(CreateOutcome {
                run_id: run.id,
                created: false,
            });
        }
        let NewRun {
            id,
            workflow,
            input,
            idempotency_key,
            parent_run_id,
            forked_from,
            trigger,
            owner,
            history,
            lease,
            now_ms,
        } = run;
        let mut events = Vec::with_capacity(history.len() + 1);
        events.push(Event::RunCreated {
            workflow: workflow.clone(),
            input: input.clone(),
        });
        events.extend(history);
        let staged = stage(&self.hooks, id, 0, events, now_ms)?;

        let start = rules::new_run_state(lease.as_ref(), now_ms);
        if let Some(key) = &idempotency_key {
            self.keys.insert((workflow.clone(), key.clone()), id);
        }
        let record = RunRecord {
            run_id: id,
            workflow,
            status: start.status,
            input,
            output: None,
            error: None,
            idempotency_key,
            parent_run_id,
            forked_from,
            trigger,
            owner,
            executions: start.executions,
            lease_owner: start.lease_owner.cloned(),
            lease_expires_at_ms: start.lease_expires_at_ms,
            ready_at_ms: start.ready_at_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            finished_at_ms: None,
        };
        let row = self.next_row;
        self.next_row += 1;
        let entry = self.runs.entry(id).or_insert(RunEntry {
            record,
            log: Vec::new(),
            row,
        });
        let ended = apply(entry, &mut self.hooks, staged, now_ms);
        self.touched.push(id);
        if ended {
            self.wake_parent_of(id, now_ms);
        }
        Ok(CreateOutcome {
            run_id: id,
            created: true,
        })
    }

    pub(crate) fn get_run(&self, id: RunId) -> Option<RunRecord> {
        self.runs.get(&id).map(|entry| entry.record.clone())
    }

    pub(crate) fn events(&self, id: RunId) -> Vec<EventRecord> {
        self.events_after(id, 0)
    }

    /// The run's events with `seq > after_seq`, in order.
    pub(crate) fn events_after(&self, id: RunId, after_seq: u64) -> Vec<EventRecord> {
        let Some(entry) = self.runs.get(&id) else {
            return Vec::new();
        };
        let from = entry.log.partition_point(|record| record.seq <= after_seq);
        entry.log[from..].to_vec()
    }

    /// Runs matching `filter`, newest first (ties: last inserted first).
    pub(crate) fn list_runs(&self, filter: &RunFilter) -> Vec<RunRecord> {
        let listed = self.listed(filter);
        listed
            .into_iter()
            .map(|entry| entry.record.clone())
            .collect()
    }

    /// The runs [`list_runs`](State::list_runs) lists, as summaries (no payload copied).
    pub(crate) fn list_run_summaries(&self, filter: &RunFilter) -> Vec<RunSummary> {
        let listed = self.listed(filter);
        listed
            .into_iter()
            .map(|entry| (&entry.record).into())
            .collect()
    }

    /// The entries of the runs matching `filter`, newest first, up to its limit.
    fn listed(&self, filter: &RunFilter) -> Vec<&RunEntry> {
        let position = |entry: &RunEntry| (entry.record.created_at_ms, entry.row);
        let before = match filter.before {
            Some(id) => match self.runs.get(&id) {
                Some(entry) => Some(position(entry)),
                None => return Vec::new(),
            },
            None => None,
        };
        let mut matching: Vec<&RunEntry> = self
            .runs
            .values()
            .filter(|entry| {
                let record = &entry.record;
                filter
                    .workflow
                    .as_ref()
                    .is_none_or(|workflow| *workflow == record.workflow)
                    && filter.status.is_none_or(|status| status == record.status)
                    && (filter.statuses.is_empty() || filter.statuses.contains(&record.status))
                    && filter
                        .created_after_ms
                        .is_none_or(|after| record.created_at_ms >= after)
                    && filter
                        .created_before_ms
                        .is_none_or(|before| record.created_at_ms < before)
                    && filter.search.as_deref().is_none_or(|search| {
                        record.run_id.to_string().starts_with(search)
                            || record.idempotency_key.as_deref() == Some(search)
                    })
                    && filter
                        .parent_run_id
                        .is_none_or(|parent| Some(parent) == record.parent_run_id)
                    && !(filter.unended && record.status.is_terminal())
                    && filter
                        .trigger_prefix
                        .as_ref()
                        .is_none_or(|prefix| record.trigger.starts_with(prefix.as_str()))
                    && filter.patch.as_ref().is_none_or(|patch| {
                        let marked = entry.log.iter().any(|r| patch.is_marker(&r.event));
                        marked == patch.wants_marker()
                    })
                    && before.is_none_or(|before| position(entry) < before)
            })
            .collect();
        matching.sort_unstable_by_key(|entry| Reverse((entry.record.created_at_ms, entry.row)));
        matching.truncate(filter.effective_limit());
        matching
    }

    pub(crate) fn claim_run(&mut self, id: RunId, lease: &Lease, now: i64) -> ClaimOutcome {
        let Some(entry) = self.runs.get_mut(&id) else {
            return ClaimOutcome::NotFound;
        };
        let record = &entry.record;
        let owner = record.lease_owner.as_ref().map(|owner| owner.as_str());
        let claim =
            rules::check_claim(record.status, owner, record.lease_expires_at_ms, lease, now);
        if let Err(refusal) = claim {
            return refusal.into();
        }
        self.touched.push(id);
        ClaimOutcome::Claimed(Box::new(entry.take_lease(lease, now)))
    }

    /// Claims up to `limit` ready runs of `workflows`, oldest `ready_at` first; ties go as
    /// SQLite's `runs_claimable` index has them: by workflow, then oldest inserted first.
    pub(crate) fn claim_ready(
        &mut self,
        workflows: &[String],
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Vec<ClaimedRun> {
        if workflows.is_empty() || limit == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(i64, &str, u64, RunId)> = self
            .runs
            .values()
            .filter(|entry| entry.claimable(workflows, now))
            .map(|entry| {
                let record = &entry.record;
                (
                    record.ready_at_ms,
                    record.workflow.as_str(),
                    entry.row,
                    record.run_id,
                )
            })
            .collect();
        ready.sort_unstable();
        let chosen: Vec<RunId> = ready.into_iter().take(limit).map(|(.., id)| id).collect();
        self.touched.extend(&chosen);
        chosen
            .into_iter()
            .filter_map(|id| Some(self.runs.get_mut(&id)?.take_lease(lease, now)))
            .collect()
    }

    /// The earliest `ready_at` among unended runs of `workflows` (a leased run's `ready_at`
    /// is its lease's expiry; a run waiting without timeout counts with [`crate::NEVER`]).
    pub(crate) fn next_ready_at(&self, workflows: &[String]) -> Option<i64> {
        self.runs
            .values()
            .filter(|entry| {
                entry.record.finished_at_ms.is_none() && workflows.contains(&entry.record.workflow)
            })
            .map(|entry| entry.record.ready_at_ms)
            .min()
    }

    pub(crate) fn renew_lease(&mut self, id: RunId, lease: &Lease) -> StoreResult<()> {
        let record = &mut self.fenced(id, &lease.worker)?.record;
        record.lease_expires_at_ms = Some(lease.expires_at_ms);
        record.ready_at_ms = lease.expires_at_ms;
        Ok(())
    }

    pub(crate) fn release_lease(
        &mut self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()> {
        let record = &mut self.fenced(id, worker)?.record;
        record.lease_owner = None;
        record.lease_expires_at_ms = None;
        record.ready_at_ms = ready_at_ms;
        if record.status == RunStatus::Running {
            record.status = RunStatus::Queued;
        }
        self.touched.push(id);
        Ok(())
    }

    pub(crate) fn append(
        &mut self,
        id: RunId,
        worker: &WorkerId,
        events: Vec<Event>,
        now: i64,
    ) -> StoreResult<()> {
        self.fenced(id, worker)?;
        self.write_events(id, events, now)
    }

    /// Ends a run that has not ended with `RunCanceled`; returns the status it had.
    pub(crate) fn cancel_run(
        &mut self,
        id: RunId,
        reason: &str,
        now: i64,
    ) -> StoreResult<RunStatus> {
        let status = self.entry(id)?.record.status;
        rules::check_not_ended(id, status)?;
        let canceled = Event::RunCanceled {
            reason: reason.to_owned(),
        };
        self.write_events(id, vec![canceled], now)?;
        Ok(status)
    }

    /// Sends a failed or canceled run back to the queue with `RunRetried`.
    pub(crate) fn retry_run(&mut self, id: RunId, now: i64) -> StoreResult<()> {
        rules::check_retryable(id, self.entry(id)?.record.status)?;
        self.write_events(id, vec![Event::RunRetried], now)
    }
}
