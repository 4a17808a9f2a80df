//! The lease an execution holds: renewed by the engine's heartbeat (`runtime::heartbeat`),
//! and confirmed before an action's attempt starts, so a worker stopped past its lease (a
//! zombie) does not run a step again that the worker which took the run over may have
//! recorded.

use cairn_store::StoreError;

use crate::run::{RunContext, Stop};

impl RunContext {
    /// Before an action's attempt starts: whether this execution still holds the run's lease by
    /// the engine's clock. A lease that lapsed (the process was stopped, or starved, past its
    /// time to live) is renewed first; if another worker took the run over meanwhile, the
    /// execution stops instead, so a step whose result that worker may have recorded does not
    /// run again here (a zombie's attempt). Other workers claim a run only once its lease has
    /// lapsed, by the same clock, so an attempt started before then began before any result
    /// they record. Returns false, the execution stopping, when the attempt must not start.
    pub(crate) async fn hold_lease(&self) -> bool {
        let clock = &self.env.clock;
        if clock.now_ms() < self.lease_confirmed_until() {
            return true;
        }
        self.renew_lease().await;
        if clock.now_ms() < self.lease_confirmed_until() {
            return true;
        }
        // Not renewed (the store failed, or the execution is ending): give the run back.
        self.stop(Stop::StoreFailing(
            "the run's lease lapsed and could not be renewed".to_owned(),
        ));
        false
    }

    /// Renews the run's lease; stops its execution if another worker took the run over or the run
    /// ended elsewhere.
    pub(crate) async fn renew_lease(&self) {
        if self.creation_pending() {
            // Nothing to renew yet: the run is created, leased, by its first write.
            return;
        }
        let env = &self.env;
        let lease = env.lease_for(&self.lease_holder);
        // Noted before asking: the body may finish, and the run end, after the store took the
        // renewal but before it answered.
        self.leased_at(lease.expires_at_ms);
        let renewed = env.store.renew_lease(self.run_id, &lease).await;
        if !self.renews_lease() {
            // The body finished meanwhile: what it writes next settles the run.
            return;
        }
        match renewed {
            Ok(()) => self.lease_confirmed(lease.expires_at_ms),
            Err(err @ StoreError::LeaseLost { .. }) => {
                self.note_taken_away(&err);
                self.stop_renewing();
                self.stop(Stop::LeaseLost);
            }
            Err(err @ StoreError::RunEnded { .. }) => {
                self.note_taken_away(&err);
                self.stop_renewing();
                self.cancel.cancel();
                self.stop(Stop::Ended);
            }
            Err(err) => {
                tracing::warn!(run = %self.run_id, error = %err, "lease renewal failed; will try again");
            }
        }
    }
}
