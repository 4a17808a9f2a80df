//! Scale-out on PostgreSQL with real processes: several `worker` processes share one
//! database; each step's side effect happens once, even when a worker is killed mid-load.

mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use cairn::{Engine, PostgresOptions, PostgresStore, RunFilter, RunStatus, StartOptions};
use support::{Sandbox, wait_for};

/// Runs `work` against an engine on the sandbox's schema, in a runtime of its own.
fn with_engine<T>(sandbox: &Sandbox, work: impl AsyncFnOnce(&Engine) -> T) -> T {
    let (url, schema) = sandbox.postgres.clone().expect("a PostgreSQL sandbox");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let options = PostgresOptions {
            schema: Some(schema),
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect_with(&url, options)
            .await
            .expect("connect");
        let engine = Engine::new(Arc::new(store), cairn_e2e::registry()).expect("valid registry");
        let result = work(&engine).await;
        engine.store().flush().await.expect("flush");
        result
    })
}

/// Starts `total` runs of `workflow` (no worker executes them yet).
fn enqueue(sandbox: &Sandbox, workflow: &str, total: usize) {
    with_engine(sandbox, async |engine| {
        for n in 0..total {
            let input = serde_json::json!({ "tag": format!("t{n}") });
            engine
                .start_json(workflow, input, StartOptions::default())
                .await
                .expect("start");
        }
    });
}

fn succeeded(sandbox: &Sandbox) -> usize {
    let out = sandbox.output(&[
        "runs",
        "list",
        "--status",
        "succeeded",
        "--limit",
        "10000",
        "--json",
    ]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Ledger lines by (run, step): the pids that executed it.
fn executions(sandbox: &Sandbox) -> HashMap<(String, String), Vec<String>> {
    let mut by_step: HashMap<(String, String), Vec<String>> = HashMap::new();
    for line in sandbox.ledger_lines() {
        let parts: Vec<&str> = line.split('|').collect();
        by_step
            .entry((parts[0].to_owned(), parts[1].to_owned()))
            .or_default()
            .push(parts[3].to_owned());
    }
    by_step
}

#[test]
fn three_workers_share_300_runs_and_run_each_step_once() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    let total = 300;
    enqueue(&sandbox, "three-steps", total);
    let mut workers: Vec<_> = (0..3).map(|_| sandbox.spawn(&["worker"])).collect();
    wait_for("every run to succeed", Duration::from_secs(180), || {
        succeeded(&sandbox) == total
    });
    for worker in &mut workers {
        worker.kill().ok();
        worker.wait().ok();
    }
    let steps = executions(&sandbox);
    assert_eq!(steps.len(), total * 3, "every step executed");
    for ((run, step), pids) in &steps {
        assert_eq!(
            pids.len(),
            1,
            "step {step} of run {run} executed by {pids:?}\n{}",
            sandbox.process_log()
        );
    }
    let mut runs: HashMap<&str, Vec<&str>> = HashMap::new();
    for ((run, _), pids) in &steps {
        runs.entry(run).or_default().push(&pids[0]);
    }
    for (run, pids) in runs {
        assert!(
            pids.iter().all(|pid| *pid == pids[0]),
            "run {run} was executed by one worker: {pids:?}"
        );
    }
}

#[test]
fn a_worker_killed_mid_load_is_taken_over_without_repeating_completed_steps() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    let total = 150;
    let total_steps = total * 3; // `slow-steps` has three
    enqueue(&sandbox, "slow-steps", total);
    let mut victim = sandbox.spawn(&["worker", "--concurrency", "64"]);
    let killed = victim.id().to_string();
    let victim_steps = |sandbox: &Sandbox| {
        sandbox
            .ledger_lines()
            .iter()
            .filter(|line| line.ends_with(&format!("|{killed}")))
            .count()
    };
    // The victim starts first and takes most runs (64 at a time), so it holds some when it
    // is killed; another worker shares the load meanwhile.
    wait_for("the victim to work", Duration::from_secs(60), || {
        victim_steps(&sandbox) > 0
    });
    let mut others = vec![sandbox.spawn(&["worker", "--concurrency", "4"])];
    // Killed once it has begun a third of all steps, read from the ledger (cheap to poll):
    // it still holds runs then. Polling the succeeded runs (a CLI process each time) could
    // look again only after the fast victim had finished them all, leaving nothing to take over.
    wait_for(
        "the victim to begin a third of the steps",
        Duration::from_secs(120),
        || victim_steps(&sandbox) >= total_steps / 3,
    );
    victim.kill().expect("kill -9");
    victim.wait().ok();
    others.push(sandbox.spawn(&["worker"]));
    wait_for("every run to succeed", Duration::from_secs(180), || {
        succeeded(&sandbox) == total
    });
    for worker in &mut others {
        worker.kill().ok();
        worker.wait().ok();
    }
    let steps = executions(&sandbox);
    assert_eq!(steps.len(), total_steps, "every step executed");
    for ((run, step), pids) in &steps {
        let by_survivors = pids.iter().filter(|pid| **pid != killed).count();
        assert!(
            by_survivors <= 1,
            "step {step} of run {run} ran {by_survivors} times on live workers"
        );
        assert!(
            pids.len() == 1 || pids.iter().filter(|pid| **pid == killed).count() == 1,
            "only a step in flight on the killed worker may run again: {step} of {run}: {pids:?}"
        );
    }
    let filter = RunFilter {
        status: Some(RunStatus::Succeeded),
        limit: 10_000,
        ..RunFilter::default()
    };
    let runs = with_engine(&sandbox, async |engine| {
        engine.list_runs(&filter).await.expect("list")
    });
    assert!(
        runs.iter().any(|run| run.executions > 1),
        "some run was taken over after the kill"
    );
}
