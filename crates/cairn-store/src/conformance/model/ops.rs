//! The operations the model check generates ([`Op`]) and their generator: a
//! `proptest-state-machine` reference machine whose state is nothing (which runs, workers
//! and hooks an operation names is resolved when it runs, against the runs created so far).

use proptest::{prelude::*, strategy::BoxedStrategy};
use proptest_state_machine::ReferenceStateMachine;

/// One generated operation. Runs are named by their position among the runs created so far
/// (taken modulo their number; an operation on a run before any exists does nothing), workers
/// and hooks by small numbers.
#[derive(Clone, Debug)]
pub enum Op {
    /// `create_run`, with an idempotency key out of three, a parent, a lease, or a history
    /// that ends the run at once.
    Create {
        /// Idempotency key number.
        key: Option<u8>,
        /// Parent run.
        parent: Option<usize>,
        /// Created leased to this worker.
        leased_to: Option<u8>,
        /// Its history completes it.
        ends: bool,
    },
    /// `claim_run`.
    Claim {
        /// The run.
        run: usize,
        /// The worker.
        worker: u8,
    },
    /// `claim_ready` of at most `limit` runs.
    ClaimReady {
        /// The worker.
        worker: u8,
        /// How many at most.
        limit: usize,
    },
    /// A step's `StepStarted` and `StepCompleted`, appended together.
    Step {
        /// The run.
        run: usize,
        /// The appending worker.
        worker: Who,
        /// The step's number.
        n: u32,
    },
    /// `HookCreated`, appended.
    Hook {
        /// The run.
        run: usize,
        /// The appending worker.
        worker: Who,
        /// With a time-out.
        timeout: bool,
    },
    /// `RunCompleted` or `RunFailed`, appended.
    End {
        /// The run.
        run: usize,
        /// The appending worker.
        worker: Who,
        /// `RunFailed` rather than `RunCompleted`.
        failed: bool,
    },
    /// `park_run`.
    Park {
        /// The run.
        run: usize,
        /// The parking worker.
        worker: Who,
        /// `Waiting` rather than `Sleeping`.
        waiting: bool,
        /// Wake up this much later.
        wake_in_ms: i64,
        /// `known_seq` one short of the log (a resume the worker has not seen).
        stale: bool,
        /// Wait for this run as a child.
        child: Option<usize>,
    },
    /// `renew_lease`.
    Renew {
        /// The run.
        run: usize,
        /// The worker.
        worker: Who,
    },
    /// `release_lease`.
    Release {
        /// The run.
        run: usize,
        /// The worker.
        worker: Who,
        /// Ready this much later.
        ready_in_ms: i64,
    },
    /// `cancel_run`.
    Cancel {
        /// The run.
        run: usize,
    },
    /// `retry_run`.
    Retry {
        /// The run.
        run: usize,
    },
    /// `resume_hook` of one of the hooks created so far.
    Resume {
        /// The hook.
        hook: usize,
    },
    /// `time_out_hook` of one of the hooks created so far.
    TimeOut {
        /// The hook.
        hook: usize,
        /// The worker.
        worker: Who,
    },
    /// The clock moves on.
    Advance {
        /// By this much.
        ms: i64,
    },
    /// The backend's store is dropped and opened again on the same data.
    Reopen,
}

/// Which worker does something to a run.
#[derive(Clone, Copy, Debug)]
pub enum Who {
    /// The run's lease holder as the model has it (worker 0 when nobody holds it): the
    /// operation is meant to be taken.
    Holder,
    /// This worker, holder or not.
    Worker(u8),
}

/// The generator: its state is only the number of operations so far.
pub(super) struct Ops;

impl ReferenceStateMachine for Ops {
    type State = ();
    type Transition = Op;

    fn init_state() -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn transitions(_: &()) -> BoxedStrategy<Op> {
        let run = 0..8usize;
        let worker = 0..3u8;
        let who = prop_oneof![4 => Just(Who::Holder), 1 => (0..3u8).prop_map(Who::Worker)];
        prop_oneof![
            3 => (proptest::option::of(0..3u8), proptest::option::weighted(0.2, run.clone()),
                  proptest::option::weighted(0.3, worker.clone()), proptest::bool::weighted(0.1))
                .prop_map(|(key, parent, leased_to, ends)| Op::Create { key, parent, leased_to, ends }),
            2 => (run.clone(), worker.clone()).prop_map(|(run, worker)| Op::Claim { run, worker }),
            2 => (worker.clone(), 1..4usize).prop_map(|(worker, limit)| Op::ClaimReady { worker, limit }),
            3 => (run.clone(), who.clone(), 0..3u32).prop_map(|(run, worker, n)| Op::Step { run, worker, n }),
            1 => (run.clone(), who.clone(), any::<bool>())
                .prop_map(|(run, worker, timeout)| Op::Hook { run, worker, timeout }),
            1 => (run.clone(), who.clone(), any::<bool>())
                .prop_map(|(run, worker, failed)| Op::End { run, worker, failed }),
            2 => (run.clone(), who.clone(), any::<bool>(), 0..60_000i64, proptest::bool::weighted(0.2),
                  proptest::option::weighted(0.2, run.clone()))
                .prop_map(|(run, worker, waiting, wake_in_ms, stale, child)| Op::Park {
                    run, worker, waiting, wake_in_ms, stale, child,
                }),
            1 => (run.clone(), who.clone()).prop_map(|(run, worker)| Op::Renew { run, worker }),
            1 => (run.clone(), who.clone(), 0..10_000i64)
                .prop_map(|(run, worker, ready_in_ms)| Op::Release { run, worker, ready_in_ms }),
            1 => run.clone().prop_map(|run| Op::Cancel { run }),
            1 => run.prop_map(|run| Op::Retry { run }),
            1 => (0..4usize).prop_map(|hook| Op::Resume { hook }),
            1 => (0..4usize, who).prop_map(|(hook, worker)| Op::TimeOut { hook, worker }),
            2 => (0..40_000i64).prop_map(|ms| Op::Advance { ms }),
            1 => Just(Op::Reopen),
        ]
        .boxed()
    }

    fn apply(state: (), _: &Op) {
        state
    }
}
