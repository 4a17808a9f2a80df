//! What every part of one simulated world shares: the seed's generator and faults, the
//! planted bug (if any), the trace with its running hash, the counters a report prints, and
//! the first invariant violation.

use std::{
    collections::{BTreeMap, VecDeque},
    hash::{DefaultHasher, Hasher},
    sync::{Mutex, MutexGuard, PoisonError},
};

use tokio::time::Instant;

use crate::{Planted, faults::Faults, rng::SimRng};

/// How many trace lines a failure prints (the last ones).
const TRACE_TAIL: usize = 200;

/// The world shared by the store, the workers, the actions and the driver.
pub(crate) struct World {
    pub(crate) rng: SimRng,
    pub(crate) planted: Option<Planted>,
    /// Virtual time zero.
    started: Instant,
    faults: Mutex<Faults>,
    /// The faults the seed drew (the heal turns `faults` off, not these).
    seed_faults: Faults,
    trace: Mutex<Trace>,
    counters: Mutex<BTreeMap<&'static str, u64>>,
    /// Whether each trace line is also printed as it is made (`CAIRN_SIM_TRACE_LIVE`: for
    /// a seed that hangs).
    live: bool,
    violation: Mutex<Option<String>>,
}

/// The trace: a hash over every line, the last lines, and all of them when asked for.
struct Trace {
    hash: DefaultHasher,
    tail: VecDeque<String>,
    all: Option<Vec<String>>,
}

impl World {
    /// A world for `seed`, with the seed's faults drawn from its generator.
    pub(crate) fn new(seed: u64, planted: Option<Planted>, keep_trace: bool) -> World {
        let rng = SimRng::new(seed);
        let mut faults = Faults::swarm(&rng);
        if planted == Some(Planted::AckBeforeFsync) && faults.store_crash == 0.0 {
            // The bug shows only when a store crash drops what was acknowledged.
            faults.store_crash = 0.02;
        }
        if planted == Some(Planted::FenceSkipped) {
            // The bug shows only when a stale worker writes: zombies make them.
            faults.worker_pause_every_ms = Some(2_000);
        }
        World {
            rng,
            planted,
            started: Instant::now(),
            seed_faults: faults.clone(),
            faults: Mutex::new(faults),
            trace: Mutex::new(Trace {
                hash: DefaultHasher::new(),
                tail: VecDeque::new(),
                all: keep_trace.then(Vec::new),
            }),
            counters: Mutex::default(),
            live: std::env::var_os("CAIRN_SIM_TRACE_LIVE").is_some(),
            violation: Mutex::default(),
        }
    }

    /// Virtual milliseconds since the world began.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The faults in force now.
    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// The faults the seed drew, as a report prints them.
    pub(crate) fn faults_of_seed(&self) -> String {
        self.seed_faults.to_string()
    }

    /// Whether the seed's workers replay every step (`Faults::replay_every_step`).
    pub(crate) fn seed_replays_every_step(&self) -> bool {
        self.seed_faults.replay_every_step
    }

    /// Turns every fault off (the heal phase).
    pub(crate) fn heal(&self) {
        *lock(&self.faults) = Faults::none();
        self.note("heal: every fault off");
    }

    /// True with the probability `pick` reads from the faults in force; counts a hit.
    pub(crate) fn fault(&self, name: &'static str, pick: impl Fn(&Faults) -> f64) -> bool {
        let p = pick(&lock(&self.faults));
        let hit = self.rng.chance(p);
        if hit {
            self.count(name);
        }
        hit
    }

    /// Adds one to counter `name`.
    pub(crate) fn count(&self, name: &'static str) {
        *lock(&self.counters).entry(name).or_default() += 1;
    }

    /// The counters.
    pub(crate) fn counters(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counters).clone()
    }

    /// Appends a line to the trace, stamped with the virtual time.
    pub(crate) fn note(&self, line: impl AsRef<str>) {
        let line = format!("{:>9}ms {}", self.elapsed_ms(), line.as_ref());
        let mut trace = lock(&self.trace);
        trace.hash.write(line.as_bytes());
        trace.hash.write_u8(b'\n');
        if trace.tail.len() == TRACE_TAIL {
            trace.tail.pop_front();
        }
        trace.tail.push_back(line.clone());
        if self.live {
            eprintln!("{line}");
        }
        if let Some(all) = trace.all.as_mut() {
            all.push(line);
        }
    }

    /// The hash of the trace so far.
    pub(crate) fn trace_hash(&self) -> u64 {
        lock(&self.trace).hash.clone().finish()
    }

    /// The trace: every line if kept, else the last ones.
    pub(crate) fn trace_lines(&self) -> Vec<String> {
        let trace = lock(&self.trace);
        match &trace.all {
            Some(all) => all.clone(),
            None => trace.tail.iter().cloned().collect(),
        }
    }

    /// Records a broken invariant (the first one is kept) and traces it.
    pub(crate) fn violated(&self, what: String) {
        self.note(format!("VIOLATION {what}"));
        let mut violation = lock(&self.violation);
        if violation.is_none() {
            *violation = Some(what);
        }
    }

    /// The first broken invariant, if any.
    pub(crate) fn violation(&self) -> Option<String> {
        lock(&self.violation).clone()
    }
}

/// Locks a mutex, taking over a poisoned one (a panicking action does not hold these).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
