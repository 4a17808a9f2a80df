//! Following a run: its committed events, each once and in order, as they are committed by
//! any process sharing the store (the store's change watch says when to read again). What the
//! HTTP API's event streams and the CLI's live progress are built on.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use cairn_core::{Event, EventRecord};
use cairn_store::{ChangeWatch, RunId, RunRecord, Store};
use futures::stream::{self, BoxStream};

use crate::{api::engine::Engine, base::error::EngineError};

/// Where a follower is.
struct Follower {
    store: Arc<dyn Store>,
    run_id: RunId,
    /// The last `seq` handed out.
    after_seq: u64,
    watch: Option<Box<dyn ChangeWatch>>,
    pending: VecDeque<EventRecord>,
    done: bool,
}

impl Engine {
    /// The events of `run_id` with `seq > after_seq`, each once and in order: first those
    /// already committed, then each as it is committed, by this process or any other on the
    /// same store. The stream ends after the event that ends the run (or at once, if the run
    /// had ended before `after_seq`); an unknown run is a `RunNotFound` error.
    pub fn follow(
        &self,
        run_id: RunId,
        after_seq: u64,
    ) -> BoxStream<'static, Result<EventRecord, EngineError>> {
        let follower = Follower {
            store: self.store().clone(),
            run_id,
            after_seq,
            watch: None,
            pending: VecDeque::new(),
            done: false,
        };
        Box::pin(stream::unfold(follower, |mut follower| async move {
            let next = follower.next().await?;
            Some((next, follower))
        }))
    }

    /// Waits until `run_id` has ended, whoever executes it (this process or another sharing
    /// the store), and returns it. A caller bounds the wait with a timeout
    /// (`POST /workflows/{slug}?wait=`). An unknown run is `RunNotFound`.
    ///
    /// The run is read once at first, then again only when it may have ended: at once when
    /// this process commits its end, or a change of it is committed by another process (or
    /// while this process does not execute it); changes made while this process executes it
    /// are its own steps, so they are looked at 50 ms later at the latest (a cancel from
    /// another process). Reading after every change cost a read per step under load.
    pub async fn wait_until_ended(&self, run_id: RunId) -> Result<RunRecord, EngineError> {
        let store = self.store();
        let env = &self.runtime.env;
        // Registered and made before the first read, so no end falls between them.
        let end = env.end_waiters.register(run_id);
        let mut watch = store.watch_changes().await?;
        loop {
            let run = store
                .get_run(run_id)
                .await?
                .ok_or(EngineError::RunNotFound(run_id))?;
            if run.status.is_terminal() {
                return Ok(run);
            }
            let mut recheck_at = None;
            loop {
                let recheck = async {
                    match recheck_at {
                        Some(at) => env.clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = end.ended() => break,
                    () = recheck => break,
                    changes = watch.changed() => {
                        if !changes?.may_include(run_id) {
                            continue;
                        }
                        if self.runtime.executing(run_id).is_none() {
                            break;
                        }
                        recheck_at.get_or_insert_with(|| {
                            env.clock.now_ms() + i64::try_from(RECHECK_OWN.as_millis()).unwrap_or(i64::MAX)
                        });
                    }
                }
            }
        }
    }
}

/// The longest [`Engine::wait_until_ended`] leaves a change unread while this process
/// executes the run (its own steps' commits; its end is signalled at once).
const RECHECK_OWN: Duration = Duration::from_millis(50);

impl Follower {
    /// The next event, an error (which ends the stream), or `None` when the run has ended.
    async fn next(&mut self) -> Option<Result<EventRecord, EngineError>> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                self.after_seq = record.seq;
                self.done = matches!(
                    record.event,
                    Event::RunCompleted { .. }
                        | Event::RunFailed { .. }
                        | Event::RunCanceled { .. }
                );
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            match self.read().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
    }

    /// Reads what is new, waiting for a change of the run while nothing is. `false` when
    /// the run has ended and nothing is left to hand out.
    async fn read(&mut self) -> Result<bool, EngineError> {
        loop {
            // The watch is made before reading, so no commit falls between the two.
            let watch = match &mut self.watch {
                Some(watch) => watch,
                None => self.watch.insert(self.store.watch_changes().await?),
            };
            let events = self.store.events_after(self.run_id, self.after_seq).await?;
            if !events.is_empty() {
                self.pending.extend(events);
                return Ok(true);
            }
            let run = self
                .store
                .get_run(self.run_id)
                .await?
                .ok_or(EngineError::RunNotFound(self.run_id))?;
            if run.status.is_terminal() {
                // It may have ended between the two reads: hand out what that committed.
                let last = self.store.events_after(self.run_id, self.after_seq).await?;
                let any = !last.is_empty();
                self.pending.extend(last);
                return Ok(any);
            }
            loop {
                if watch.changed().await?.may_include(self.run_id) {
                    break;
                }
            }
        }
    }
}
