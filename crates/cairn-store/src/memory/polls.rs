//! The memory store's poll sources and their item keys, kept in the [`State`] beside the
//! runs so that a poll's runs, its item keys and its cursor change under one lock, as one
//! commit.

use std::collections::{BTreeMap, HashMap};

use crate::{
    CreateOutcome, ITEM_KEYS_KEPT_MS, Lease, PollClaim, PollCommit, PollCommitOutcome, PollControl,
    PollItem, PollLease, PollResult, PollSourceRecord, PollState, StoreError, StoreResult,
    holds_poll_lease, state_after,
};

use super::state::State;

/// Poll sources by name, and each one's item keys with when they were last seen.
#[derive(Default)]
pub(super) struct Polls {
    rows: BTreeMap<String, PollSourceRecord>,
    items: HashMap<String, HashMap<String, i64>>,
}

impl Polls {
    pub(super) fn declare(&mut self, asked: PollSourceRecord) -> PollSourceRecord {
        let row = self
            .rows
            .entry(asked.name.clone())
            .or_insert_with(|| asked.clone());
        if row.workflow != asked.workflow {
            row.workflow = asked.workflow;
            row.updated_at_ms = asked.updated_at_ms;
        }
        row.clone()
    }

    pub(super) fn get(&self, name: &str) -> Option<PollSourceRecord> {
        self.rows.get(name).cloned()
    }

    pub(super) fn list(&self) -> Vec<PollSourceRecord> {
        self.rows.values().cloned().collect()
    }

    pub(super) fn due(&self, now_ms: i64, limit: usize) -> Vec<PollSourceRecord> {
        let mut due: Vec<PollSourceRecord> = self
            .rows
            .values()
            .filter(|row| row.is_due(now_ms))
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.next_poll_at_ms, &a.name).cmp(&(b.next_poll_at_ms, &b.name)));
        due.truncate(limit);
        due
    }

    pub(super) fn claim(&mut self, name: &str, lease: &Lease, now_ms: i64) -> Option<PollClaim> {
        let row = self.rows.get_mut(name).filter(|row| row.is_due(now_ms))?;
        row.lease_owner = Some(lease.worker.clone());
        row.lease_expires_at_ms = Some(lease.expires_at_ms);
        row.fencing_token += 1;
        row.updated_at_ms = now_ms;
        Some(PollClaim {
            lease: PollLease {
                source: name.to_owned(),
                worker: lease.worker.clone(),
                token: row.fencing_token,
                expires_at_ms: lease.expires_at_ms,
            },
            source: row.clone(),
        })
    }

    pub(super) fn control(
        &mut self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord> {
        let row = self
            .rows
            .get_mut(name)
            .ok_or_else(|| StoreError::PollSourceNotFound(name.to_owned()))?;
        match control {
            PollControl::Pause => row.state = PollState::Paused,
            PollControl::Resume { next_poll_at_ms } => {
                row.state = PollState::Active;
                row.consecutive_errors = 0;
                row.next_poll_at_ms = next_poll_at_ms;
            }
            PollControl::PollNow => row.next_poll_at_ms = now_ms,
        }
        row.updated_at_ms = now_ms;
        Ok(row.clone())
    }
}

impl State {
    /// Commits a poll (see `Store::commit_poll`): the fence, then the items (a create
    /// without history cannot be refused, so nothing needs undoing), then the source.
    pub(crate) fn commit_poll(&mut self, commit: PollCommit) -> StoreResult<PollCommitOutcome> {
        let PollCommit {
            lease,
            result,
            next_poll_at_ms,
            now_ms,
        } = commit;
        let Some(stored) = self.polls.rows.get(&lease.source) else {
            return Ok(PollCommitOutcome::LeaseLost);
        };
        if !holds_poll_lease(stored, &lease) {
            return Ok(PollCommitOutcome::LeaseLost);
        }
        let state = state_after(stored.state, &result);
        let (runs, seen_before) = match &result {
            PollResult::Items { items, .. } => self.record_items(&lease.source, items, now_ms)?,
            PollResult::Failed { .. } => (Vec::new(), 0),
        };
        let Some(row) = self.polls.rows.get_mut(&lease.source) else {
            return Ok(PollCommitOutcome::LeaseLost);
        };
        match result {
            PollResult::Items { cursor, .. } => {
                row.cursor = cursor;
                row.seeded = true;
                row.consecutive_errors = 0;
                row.last_error = None;
            }
            PollResult::Failed {
                error,
                consecutive_errors,
                ..
            } => {
                row.consecutive_errors = consecutive_errors;
                row.last_error = Some(error);
            }
        }
        row.state = state;
        row.next_poll_at_ms = next_poll_at_ms;
        row.last_polled_at_ms = Some(now_ms);
        row.lease_owner = None;
        row.lease_expires_at_ms = None;
        row.updated_at_ms = now_ms;
        Ok(PollCommitOutcome::Committed { runs, seen_before })
    }

    /// Forgets the source's item keys older than the retention, then records a successful
    /// poll's item keys and creates the runs of the new ones. Returns the runs and how many items had
    /// been seen before.
    fn record_items(
        &mut self,
        source: &str,
        items: &[PollItem],
        now_ms: i64,
    ) -> StoreResult<(Vec<CreateOutcome>, usize)> {
        if items
            .iter()
            .any(|item| item.run.as_ref().is_some_and(|run| !run.history.is_empty()))
        {
            return Err(StoreError::Corrupt(
                "a poll's runs start without history; this is a bug in the caller".to_owned(),
            ));
        }
        if let Some(seen) = self.polls.items.get_mut(source) {
            seen.retain(|_, at| *at > now_ms - ITEM_KEYS_KEPT_MS);
        }
        let mut runs = Vec::new();
        let mut seen_before = 0;
        for item in items {
            let seen = self.polls.items.entry(source.to_owned()).or_default();
            if seen.insert(item.key.clone(), now_ms).is_some() {
                seen_before += 1;
                continue;
            }
            if let Some(run) = &item.run {
                runs.push(self.create_run(run.clone())?);
            }
        }
        Ok((runs, seen_before))
    }
}
