//! PostgreSQL's own faults under real worker processes, each test on a private cluster
//! (`support::cluster`) it may restart and crash, running `marked` runs (three `mark` steps,
//! each writing `start <nonce>` to the ledger before it works; see `support::invariant`):
//!
//! - the server stopped (`pg_ctl -m immediate`) and started again, twice, while two workers
//!   share 300 runs;
//! - one backend of a worker killed (`SIGKILL`): the postmaster ends every session and runs
//!   crash recovery, twice, while two workers share 200 runs;
//! - the `LISTEN` connection of a worker that does not poll (`pg_terminate_backend`): runs
//!   started right after must still start, so the listener reconnects and wakes its worker;
//! - a worker partitioned from the database by a TCP proxy (`cairn_test_support::proxy`) past its lease
//!   while another takes its runs over; healed while the other is inside a step of each (its
//!   steps slowed to 500 ms), its late writes reach the server and must be refused by the
//!   fence; alone, it then works on through added latency and reset connections.
//!
//! After each, every run has succeeded with one result per step, and invariant 1 holds on
//! the ledger: no execution of a step began after its result was durable, and an execution
//! was run again only if the fault could have cut it off (it was in flight while the store
//! was out of reach for its process: `CutOff::outages`).
//!
//! The seed (printed) picks when each fault strikes, how long a restart keeps the server down
//! (counted in the workers' failed attempts, not in time), which backend dies, and the delay;
//! `CAIRN_PG_FAULTS_SEED=0x…` replays another. The processes' scheduling still differs from
//! run to run.

mod support;

use std::{
    collections::HashSet,
    time::{Duration, Instant, SystemTime},
};

use cairn_test_support::proxy::{Mode, Proxy};
use support::{
    KillOnDrop, Sandbox, Seeded,
    cluster::Cluster,
    invariant::{CutOff, Outage, began_at, check_every_step, enqueue, runs_with, starts},
    seed_from, wait_for,
};

const DEFAULT_SEED: u64 = 0x0000_9e5f_a017;

/// This file's seed (printed, naming `test`), and a generator of that test's own (`salt`).
fn seeded(salt: u64, test: &str) -> (u64, Seeded) {
    let seed = seed_from("CAIRN_PG_FAULTS_SEED", DEFAULT_SEED);
    eprintln!("{test}: seed=0x{seed:x} (CAIRN_PG_FAULTS_SEED=0x{seed:x} replays it)");
    (seed, Seeded((seed ^ salt) | 1))
}

/// Starts a worker of `sandbox` running `concurrency` runs at a time (a step cut off by the
/// faults may be begun again as often as it takes), with `extra` arguments.
fn worker(
    sandbox: &Sandbox,
    concurrency: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> KillOnDrop {
    let mut args = vec![
        "worker",
        "--concurrency",
        concurrency,
        "--max-step-recoveries",
        "1000",
    ];
    args.extend_from_slice(extra);
    KillOnDrop::new(sandbox.spawn_with(&args, env))
}

/// Waits until `more` executions began after those the ledger has now; fails at once if one
/// of `workers` exits meanwhile.
fn progress(sandbox: &Sandbox, more: u64, workers: &mut [&mut KillOnDrop]) {
    let target = sandbox.ledger_lines().len() + more as usize;
    wait_for("the workers to go on", Duration::from_secs(60), || {
        all_up(sandbox, workers);
        sandbox.ledger_lines().len() >= target
    });
}

/// Fails if one of `workers` has exited (it did not ride the fault out).
fn all_up(sandbox: &Sandbox, workers: &mut [&mut KillOnDrop]) {
    for worker in workers.iter_mut() {
        assert!(
            worker.exit_status().is_none(),
            "a worker did not ride it out:\n{}",
            sandbox.process_log()
        );
    }
}

/// How many times the processes logged that they could not reach PostgreSQL.
fn store_errors(sandbox: &Sandbox) -> usize {
    sandbox
        .process_log()
        .matches("cannot reach PostgreSQL")
        .count()
}

/// Waits until `total` runs have succeeded (`what`, if not within `deadline`); fails at once
/// if one of `workers` exits meanwhile (it did not ride the fault out).
fn succeed_while_up(
    (what, deadline): (&str, Duration),
    sandbox: &Sandbox,
    runtime: &tokio::runtime::Runtime,
    engine: &cairn::Engine,
    total: usize,
    workers: &mut [&mut KillOnDrop],
) {
    wait_for(what, deadline, || {
        all_up(sandbox, workers);
        runs_with(runtime, engine, cairn::RunStatus::Succeeded, total).len() == total
    });
}

/// The workers' backends (their `application_name` is `cairn`; the test's is `cairn-e2e`),
/// whose current or last query is `LIKE query`.
fn worker_backends(cluster: &Cluster, query: &str) -> Vec<u32> {
    cluster
        .psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'cairn' \
             AND query LIKE '{query}' ORDER BY pid"
        ))
        .iter()
        .map(|pid| pid.parse().expect("a pid"))
        .collect()
}

/// Two workers share `runs` runs of `marked` on a private cluster; `faults` times, once 80 to
/// 229 more executions began (seeded), `fault` strikes and returns the outage it caused.
/// Then every run must succeed, both workers still up, and every step pass the check.
fn two_workers_through(
    test: &str,
    salt: u64,
    runs: usize,
    faults: usize,
    mut fault: impl FnMut(&Cluster, &Sandbox, &mut Seeded) -> Outage,
) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let started = Instant::now();
    let (seed, mut rng) = seeded(salt, test);
    let sandbox = cluster.sandbox();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = enqueue(&sandbox, &runtime, runs);
    let (mut first, mut second) = (
        worker(&sandbox, "4", &[], &[]),
        worker(&sandbox, "4", &[], &[]),
    );
    let mut outages = Vec::new();
    for _ in 0..faults {
        progress(
            &sandbox,
            80 + rng.below(150),
            &mut [&mut first, &mut second],
        );
        outages.push(fault(&cluster, &sandbox, &mut rng));
    }
    succeed_while_up(
        ("every run to succeed", Duration::from_secs(120)),
        &sandbox,
        &runtime,
        &engine,
        runs,
        &mut [&mut first, &mut second],
    );
    let cut_off = CutOff {
        outages,
        ..CutOff::default()
    };
    let repeated = check_every_step(
        &sandbox,
        &runtime,
        &engine,
        runs,
        &cut_off,
        &format!("seed 0x{seed:x}"),
    );
    eprintln!(
        "{test}: {runs} runs, {faults} faults, {} store errors ridden out, {repeated} \
         executions cut off and run again, {:.1?}",
        store_errors(&sandbox),
        started.elapsed()
    );
}

#[test]
fn workers_ride_out_postgres_restarts_under_load() {
    two_workers_through("restarts", 0x5e57_a127, 300, 2, |cluster, sandbox, rng| {
        let errors = store_errors(sandbox);
        let from = SystemTime::now();
        cluster.stop_immediately();
        // Down until the workers failed to reach it 2 to 8 times more: their claims and
        // writes in flight fail, and are retried against nothing for a while.
        let felt = errors + 2 + rng.below(7) as usize;
        wait_for(
            "the workers to find PostgreSQL gone",
            Duration::from_secs(60),
            || store_errors(sandbox) >= felt,
        );
        cluster.start_again();
        Outage {
            from,
            to: SystemTime::now(),
            only: None,
        }
    });
}

#[test]
fn a_backend_killed_with_sigkill_crashes_every_session_and_the_workers_reconnect() {
    const READY: &str = "database system is ready to accept connections";
    two_workers_through("killed backend", 0x0b4c_e9d0, 200, 2, |cluster, _, rng| {
        let backends = worker_backends(cluster, "%");
        assert!(!backends.is_empty(), "the workers have connections");
        let victim = backends[rng.below(backends.len() as u64) as usize];
        let recoveries = cluster.server_log().matches(READY).count();
        let from = SystemTime::now();
        cluster.kill_backend(victim);
        wait_for(
            "PostgreSQL to recover from the crash",
            Duration::from_secs(60),
            || cluster.server_log().matches(READY).count() > recoveries,
        );
        let log = cluster.server_log();
        assert!(
            log.contains(&format!("(PID {victim}) was terminated by signal 9")),
            "the postmaster saw its backend killed:\n{log}"
        );
        Outage {
            from,
            to: SystemTime::now(),
            only: None,
        }
    });
}

#[test]
fn runs_started_after_the_listen_connection_is_terminated_still_start() {
    const RUNS: usize = 10;
    // Well before the worker would look on its own.
    const IN_TIME: Duration = Duration::from_secs(20);
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let started = Instant::now();
    let sandbox = cluster.sandbox();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    // It looks for work on its own once a minute: only a wake-up can start a run in time.
    let mut listener = worker(&sandbox, "4", &[], &[("CAIRN_POLL_INTERVAL", "60s")]);
    let mut listening = Vec::new();
    wait_for("the worker to LISTEN", Duration::from_secs(60), || {
        listening = worker_backends(&cluster, "LISTEN%");
        listening.len() == 1
    });
    let engine = enqueue(&sandbox, &runtime, RUNS);
    succeed_while_up(
        ("the runs started while it listened", IN_TIME),
        &sandbox,
        &runtime,
        &engine,
        RUNS,
        &mut [&mut listener],
    );

    let terminated = cluster.psql(&format!("SELECT pg_terminate_backend({})", listening[0]));
    assert_eq!(terminated, ["t"], "the LISTEN connection was terminated");
    // At once: their notifications may be sent before the listener is back, and be lost.
    let engine = enqueue(&sandbox, &runtime, RUNS);
    succeed_while_up(
        (
            "the runs started after the LISTEN connection was terminated",
            IN_TIME,
        ),
        &sandbox,
        &runtime,
        &engine,
        2 * RUNS,
        &mut [&mut listener],
    );
    wait_for("a new LISTEN connection", Duration::from_secs(20), || {
        let now = worker_backends(&cluster, "LISTEN%");
        now.len() == 1 && now != listening
    });
    check_every_step(
        &sandbox,
        &runtime,
        &engine,
        2 * RUNS,
        &CutOff::default(),
        "the LISTEN test",
    );
    eprintln!(
        "listen: {} runs, the LISTEN connection terminated once, {:.1?}",
        2 * RUNS,
        started.elapsed()
    );
}

/// The runs a process began a step of, by the ledger.
fn runs_of(sandbox: &Sandbox, pid: &str) -> HashSet<String> {
    sandbox
        .ledger_lines()
        .iter()
        .filter(|line| line.ends_with(&format!("|{pid}")))
        .filter_map(|line| line.split('|').next().map(str::to_owned))
        .collect()
}

/// The runs whose lease process `pid` holds and that have not ended, by the database.
fn leased_to(cluster: &Cluster, sandbox: &Sandbox, pid: &str) -> HashSet<String> {
    let (_, schema) = sandbox.postgres_target().expect("a PostgreSQL sandbox");
    cluster
        .psql(&format!(
            "SELECT id FROM {schema}.runs WHERE lease_owner LIKE '%:{pid}:%' \
             AND status NOT IN ('succeeded', 'failed', 'canceled')"
        ))
        .into_iter()
        .collect()
}

/// How many steps of `runs` process `pid` began before `healed` while another process's
/// execution of them was recorded: results `pid` had in flight when it was cut off, whose
/// appends reached the server late and had to be refused.
fn overtaken(
    sandbox: &Sandbox,
    runtime: &tokio::runtime::Runtime,
    engine: &cairn::Engine,
    runs: &HashSet<String>,
    pid: &str,
    healed: SystemTime,
) -> usize {
    let starts = starts(sandbox);
    let mut overtaken = 0;
    for run in runs {
        let id = run.parse().expect("a run id");
        let detail = runtime.block_on(engine.get_run(id)).expect("the run");
        for record in detail.events {
            let cairn::Event::StepCompleted { key, output, .. } = record.event else {
                continue;
            };
            let recorded = output["nonce"].as_str().unwrap_or_default();
            let cut_began = starts[&(run.clone(), key.as_str().to_owned())]
                .iter()
                .any(|start| start.pid == pid && began_at(&start.nonce) < healed);
            if cut_began && !recorded.starts_with(&format!("{pid}.")) {
                overtaken += 1;
            }
        }
    }
    overtaken
}

#[test]
fn a_worker_partitioned_past_its_lease_is_fenced_when_healed_and_works_on() {
    const RUNS: usize = 60;
    const MORE: usize = 20;
    const LEASE: &str = "3s";
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let started = Instant::now();
    let (seed, mut rng) = seeded(0x9a27_171e, "partition");
    let sandbox = cluster.sandbox();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let proxy = runtime.block_on(Proxy::start(format!("127.0.0.1:{}", cluster.port)));
    let through_proxy = proxy.url_for(&cluster.url());
    let engine = enqueue(&sandbox, &runtime, RUNS);
    // Partitioned: every connection of this worker goes through the proxy. Two runs at a
    // time: most of its writes are then single statements, which reach the server whole
    // once healed (a transaction cut off halfway is ended by the server, see below).
    let mut cut = worker(
        &sandbox,
        "2",
        &["--lease-ttl", LEASE],
        &[
            ("CAIRN_DATABASE_URL", &through_proxy),
            ("CAIRN_LOG", "info"),
        ],
    );
    let cut_pid = cut.id().to_string();

    // Mid-load, cut off while it holds runs it began (their steps' results on their way to the
    // server): at a seeded point, again a little later if it held none it had begun.
    let mut outages = Vec::new();
    let mut more = 20 + rng.below(40);
    let (from, held) = loop {
        progress(&sandbox, more, &mut [&mut cut]);
        let from = SystemTime::now();
        proxy.set(Mode::Blackhole);
        let held: HashSet<String> = leased_to(&cluster, &sandbox, &cut_pid)
            .intersection(&runs_of(&sandbox, &cut_pid))
            .cloned()
            .collect();
        if !held.is_empty() {
            break (from, held);
        }
        proxy.set(Mode::Pass);
        outages.push(Outage {
            from,
            to: SystemTime::now(),
            only: Some(cut_pid.clone()),
        });
        more = 3;
    };
    // The other worker, direct, takes the unclaimed runs at once, and the cut-off worker's
    // once their leases lapse and PostgreSQL ended the cut-off worker's transaction if it
    // held their rows (`PostgresOptions::idle_in_transaction_timeout`, 5 s). Its steps take
    // half a second: it is inside a step of each when the partition heals.
    let mut direct = worker(
        &sandbox,
        "16",
        &["--lease-ttl", LEASE],
        &[("FIXTURE_MARK_MS", "500")],
    );
    let direct_pid = direct.id().to_string();
    wait_for(
        "the other worker to take every held run over",
        Duration::from_secs(60),
        || runs_of(&sandbox, &direct_pid).is_superset(&held),
    );
    // Healed: the cut-off worker's writes held in the proxy reach the server, late, while the
    // other worker holds those runs: the fence must refuse them (`LeaseLost`).
    proxy.set(Mode::Pass);
    let healed = SystemTime::now();
    outages.push(Outage {
        from,
        to: healed,
        only: Some(cut_pid.clone()),
    });
    succeed_while_up(
        ("every run to succeed", Duration::from_secs(60)),
        &sandbox,
        &runtime,
        &engine,
        RUNS,
        &mut [&mut cut, &mut direct],
    );
    let overtaken = overtaken(&sandbox, &runtime, &engine, &held, &cut_pid, healed);
    assert!(
        overtaken > 0,
        "the other worker recorded a step whose execution the cut-off worker had begun"
    );

    // Alone now, through 1 to 10 ms more per hop, then every connection reset: it goes on.
    drop(direct);
    proxy.set(Mode::Delay(Duration::from_millis(1 + rng.below(10))));
    enqueue(&sandbox, &runtime, MORE);
    succeed_while_up(
        (
            "the runs added after the partition",
            Duration::from_secs(60),
        ),
        &sandbox,
        &runtime,
        &engine,
        RUNS + MORE,
        &mut [&mut cut],
    );
    let lost = |sandbox: &Sandbox| {
        store_errors(sandbox)
            + sandbox
                .process_log()
                .matches("LISTEN connection failed")
                .count()
    };
    let before = lost(&sandbox);
    let from = SystemTime::now();
    proxy.set(Mode::Reset);
    wait_for(
        "the worker to find its connections reset",
        Duration::from_secs(30),
        || lost(&sandbox) > before,
    );
    proxy.set(Mode::Pass);
    outages.push(Outage {
        from,
        to: SystemTime::now(),
        only: Some(cut_pid.clone()),
    });
    enqueue(&sandbox, &runtime, MORE);
    let total = RUNS + 2 * MORE;
    succeed_while_up(
        ("the runs added after the reset", Duration::from_secs(60)),
        &sandbox,
        &runtime,
        &engine,
        total,
        &mut [&mut cut],
    );
    let repeated = check_every_step(
        &sandbox,
        &runtime,
        &engine,
        total,
        &CutOff {
            outages,
            ..CutOff::default()
        },
        &format!("seed 0x{seed:x}"),
    );
    let log = sandbox.process_log();
    eprintln!(
        "partition: {total} runs, {} of the cut-off worker's runs taken over, {overtaken} of \
         its steps in flight recorded by the other ({} refusals logged), {repeated} \
         executions cut off and run again, {:.1?}",
        held.len(),
        log.matches("to another worker").count() + log.matches("run ended elsewhere").count(),
        started.elapsed()
    );
}
