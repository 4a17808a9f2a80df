//! Micro-benchmark of the engine's whole replay path (divan): a run forked after `N` recorded
//! steps is executed; the engine loads its log from the SQLite store, folds it into the
//! journal, replays the `N` steps through the workflow body (key, decision, output
//! validation, decoding) and then executes one last step and records the run's end.
//!
//! The fixed part (one executed step, the run's completion: a few fsync'd commits) is the
//! time at `N = 0`, so the replay cost per step is `(time(1000) − time(0)) / 1000`.
//!
//! ```sh
//! cargo bench -p cairn-bench --bench engine_replay
//! ```
//! Under `cargo test --benches` each case runs once, as a smoke test.

use std::sync::Arc;

use cairn_bench::workload::{Count, noop_action};
use cairn_core::{RunStatus, StepKey};
use cairn_engine::{Engine, Registry, StartOptions, Workflow, WorkflowCtx};
use cairn_store::RunId;
use cairn_store_sqlite::SqliteStore;
use divan::Bencher;
use tempfile::TempDir;

fn main() {
    divan::main();
}

/// The custom key of the step every fork executes from.
const LAST: &str = "last";

/// An engine with one finished run of `steps` no-op steps plus the step `last`.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    original: RunId,
    _dir: TempDir,
}

impl Fixture {
    fn new(steps: usize) -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let workflow = replayed_workflow(steps);
        let store = SqliteStore::open_in_dir(dir.path()).expect("store");
        let engine = Engine::new(Arc::new(store), Registry::new().workflow(&workflow))
            .expect("valid registry");
        let original = runtime.block_on(async {
            let options = StartOptions {
                execute_here: true,
                ..StartOptions::default()
            };
            let id = engine
                .start(&workflow, &Count { n: 1 }, options)
                .await
                .expect("start")
                .run_id;
            let run = engine.execute(id).await.expect("execute");
            assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
            id
        });
        Fixture {
            runtime,
            engine,
            original,
            _dir: dir,
        }
    }

    /// A new run that keeps the original's `steps` recorded steps and executes from `last`.
    fn fork(&self) -> RunId {
        let options = StartOptions {
            execute_here: true,
            ..StartOptions::default()
        };
        self.runtime
            .block_on(
                self.engine
                    .rerun_from(self.original, &StepKey::from(LAST), options),
            )
            .expect("fork")
    }

    fn execute(&self, id: RunId) -> RunStatus {
        self.runtime
            .block_on(self.engine.execute(id))
            .expect("execute")
            .status
    }
}

/// `steps` no-op steps, then one more keyed `last`.
fn replayed_workflow(steps: usize) -> Workflow<Count, Count> {
    let noop = noop_action();
    Workflow::new("replayed").run(move |input: Count, _ctx: WorkflowCtx| {
        let noop = noop.clone();
        async move {
            let mut value = input;
            for _ in 0..steps {
                value = noop.run(value).await?;
            }
            Ok(noop.run(value).key(LAST).await?)
        }
    })
}

/// Executes a fork whose first `recorded_steps` steps replay from the store.
#[divan::bench(args = [0, 1000], sample_count = 20)]
fn replay_recorded_steps(bencher: Bencher, recorded_steps: usize) {
    let fixture = Fixture::new(recorded_steps);
    bencher
        .with_inputs(|| fixture.fork())
        .bench_local_values(|id| {
            let status = fixture.execute(id);
            assert_eq!(status, RunStatus::Succeeded);
            status
        });
}
