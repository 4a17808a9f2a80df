//! [`Store`] for [`SimStore`]: run writes through the tail ([`SimStore::write`]), reads from
//! what readers see, and the planted bugs that the invariants must catch.

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};
use cairn_store::{
    ChangeWatch, ClaimOutcome, ClaimedRun, CreateOutcome, CredentialFilter, CredentialRecord,
    FireOutcome, HookFilter, HookRecord, Lease, NewRun, Park, PollClaim, PollCommit,
    PollCommitOutcome, PollControl, PollSourceRecord, ReadyWatch, Reseal, RunFilter, RunId,
    RunRecord, RunSummary, ScheduleFire, ScheduleMiss, SchedulePut, ScheduleRecord, Store,
    StoreError, StoreResult, WebhookDelivery, WorkerId,
};

use super::{SimStore, at_once};
use crate::Planted;

impl SimStore {
    /// A claimed run as the engine is told of it: with the `RecordedStepRerun` bug planted,
    /// its log loses its last recorded result, as a replay that overlooked it would.
    fn as_claimed(&self, mut run: ClaimedRun) -> ClaimedRun {
        if self.world().planted == Some(Planted::RecordedStepRerun) {
            let last = run
                .events
                .iter()
                .rposition(|record| matches!(record.event, Event::StepCompleted { .. }));
            if let Some(last) = last {
                run.events.remove(last);
            }
        }
        run
    }
}

#[async_trait]
impl Store for SimStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        let id = run.id;
        let created = self
            .write("create", Some(id), move |store| {
                at_once(store.create_run(run.clone()))
            })
            .await?;
        Ok(created)
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        self.pass().await;
        self.visible().get_run(id).await
    }

    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>> {
        self.pass().await;
        self.visible().events(id).await
    }

    async fn events_after(&self, id: RunId, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        self.pass().await;
        self.visible().events_after(id, after_seq).await
    }

    async fn watch_ready(&self, _workflows: &[String]) -> StoreResult<Option<Box<dyn ReadyWatch>>> {
        self.pass().await;
        Ok(Some(Box::new(self.shared.wakeups.watch())))
    }

    async fn watch_changes(&self) -> StoreResult<Box<dyn ChangeWatch>> {
        self.visible().watch_changes().await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        self.pass().await;
        self.visible().list_runs(filter).await
    }

    async fn list_run_summaries(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        self.pass().await;
        self.visible().list_run_summaries(filter).await
    }

    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome> {
        let lease = lease.clone();
        let outcome = self
            .write("claim", None, move |store| {
                at_once(store.claim_run(id, &lease, now_ms))
            })
            .await?;
        Ok(match outcome {
            ClaimOutcome::Claimed(run) => ClaimOutcome::Claimed(Box::new(self.as_claimed(*run))),
            other => other,
        })
    }

    async fn claim_ready(
        &self,
        workflows: &[String],
        lease: &Lease,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedRun>> {
        let (workflows, lease) = (workflows.to_vec(), lease.clone());
        let claimed = self
            .write("claim-ready", None, move |store| {
                at_once(store.claim_ready(&workflows, &lease, now_ms, limit))
            })
            .await?;
        for run in &claimed {
            self.world().note(format!(
                "{} claimed {}",
                run.run.lease_owner.as_ref().map_or("?", |w| &w.0),
                run.run.run_id
            ));
        }
        Ok(claimed
            .into_iter()
            .map(|run| self.as_claimed(run))
            .collect())
    }

    async fn next_ready_at(&self, workflows: &[String]) -> StoreResult<Option<i64>> {
        self.pass().await;
        self.visible().next_ready_at(workflows).await
    }

    async fn renew_lease(&self, id: RunId, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        self.write("renew", None, move |store| {
            at_once(store.renew_lease(id, &lease))
        })
        .await
    }

    async fn release_lease(
        &self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()> {
        let worker = worker.clone();
        self.write("release", None, move |store| {
            at_once(store.release_lease(id, &worker, ready_at_ms))
        })
        .await
    }

    async fn append(
        &self,
        id: RunId,
        worker: &WorkerId,
        events: &[Event],
        now_ms: i64,
    ) -> StoreResult<()> {
        let (worker, events) = (worker.clone(), events.to_vec());
        let skip_fence = self.world().planted == Some(Planted::FenceSkipped);
        let lease_ms = crate::workers::LEASE_TTL_MS;
        self.write("append", Some(id), move |store| {
            let appended = at_once(store.append(id, &worker, &events, now_ms));
            match appended {
                // The planted bug: a stale worker's write goes in anyway.
                Err(StoreError::LeaseLost { .. }) if skip_fence => {
                    let lease = Lease {
                        worker: worker.clone(),
                        expires_at_ms: now_ms + lease_ms,
                    };
                    drop(at_once(store.claim_run(id, &lease, i64::MAX / 4)));
                    at_once(store.append(id, &worker, &events, now_ms))
                }
                other => other,
            }
        })
        .await?;
        Ok(())
    }

    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus> {
        let reason = reason.to_owned();
        let status = self
            .write("cancel", Some(id), move |store| {
                at_once(store.cancel_run(id, &reason, now_ms))
            })
            .await?;
        Ok(status)
    }

    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()> {
        self.write("retry", Some(id), move |store| {
            at_once(store.retry_run(id, now_ms))
        })
        .await?;
        Ok(())
    }

    async fn park_run(
        &self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let worker = worker.clone();
        self.write("park", None, move |store| {
            at_once(store.park_run(id, &worker, park, now_ms))
        })
        .await
    }

    async fn resume_hook(
        &self,
        token: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<HookRecord> {
        let token = token.to_owned();
        let hook = self
            .write("resume-hook", None, move |store| {
                at_once(store.resume_hook(&token, payload.clone(), now_ms))
            })
            .await?;
        Ok(hook)
    }

    async fn time_out_hook(
        &self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (token, worker) = (token.to_owned(), worker.clone());
        self.write("time-out-hook", None, move |store| {
            at_once(store.time_out_hook(&token, &worker, timed_out.clone(), now_ms))
        })
        .await
    }

    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>> {
        self.pass().await;
        self.visible().get_hook(token).await
    }

    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>> {
        self.pass().await;
        self.visible().list_hooks(filter).await
    }

    async fn put_credential(&self, credential: CredentialRecord) -> StoreResult<()> {
        self.visible().put_credential(credential).await
    }

    async fn get_credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>> {
        self.visible().get_credential(id).await
    }

    async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> StoreResult<Vec<CredentialRecord>> {
        self.visible().list_credentials(filter).await
    }

    async fn delete_credential(&self, id: &str) -> StoreResult<bool> {
        self.visible().delete_credential(id).await
    }

    async fn set_default_credential(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        self.visible().set_default_credential(id, now_ms).await
    }

    async fn reseal_credentials(&self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()> {
        self.visible().reseal_credentials(reseals, now_ms).await
    }

    async fn put_schedule(
        &self,
        schedule: ScheduleRecord,
    ) -> StoreResult<(SchedulePut, ScheduleRecord)> {
        self.visible().put_schedule(schedule).await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        self.visible().get_schedule(id).await
    }

    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        self.visible().list_schedules().await
    }

    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord> {
        self.visible()
            .set_schedule_paused(id, paused, next_fire_at_ms, now_ms)
            .await
    }

    async fn due_schedules(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        self.pass().await;
        self.visible().due_schedules(now_ms, limit).await
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> StoreResult<FireOutcome> {
        self.visible().fire_schedule(fire).await
    }

    async fn schedule_misses(&self, id: &str) -> StoreResult<Vec<ScheduleMiss>> {
        self.visible().schedule_misses(id).await
    }

    async fn declare_poll_source(&self, source: PollSourceRecord) -> StoreResult<PollSourceRecord> {
        self.visible().declare_poll_source(source).await
    }

    async fn get_poll_source(&self, name: &str) -> StoreResult<Option<PollSourceRecord>> {
        self.visible().get_poll_source(name).await
    }

    async fn list_poll_sources(&self) -> StoreResult<Vec<PollSourceRecord>> {
        self.visible().list_poll_sources().await
    }

    async fn due_poll_sources(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<PollSourceRecord>> {
        self.visible().due_poll_sources(now_ms, limit).await
    }

    async fn claim_poll_source(
        &self,
        name: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> StoreResult<Option<PollClaim>> {
        self.visible().claim_poll_source(name, lease, now_ms).await
    }

    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord> {
        self.visible()
            .control_poll_source(name, control, now_ms)
            .await
    }

    async fn commit_poll(&self, commit: PollCommit) -> StoreResult<PollCommitOutcome> {
        self.visible().commit_poll(commit).await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        self.visible().delete_schedule(id).await
    }

    async fn record_webhook_delivery(&self, delivery: WebhookDelivery) -> StoreResult<()> {
        self.visible().record_webhook_delivery(delivery).await
    }

    async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.visible().webhook_deliveries(endpoint, limit).await
    }
}
