//! The faults a seed enables (swarm testing): each kind of fault is on or off for the whole
//! seed, and when on fires at a rate drawn for that seed, so one seed hammers a few faults
//! and another a different few, which finds more than every fault at a low rate always.

use std::fmt;

use crate::rng::SimRng;

/// Which faults a seed runs with, and at what rates (probabilities per occasion, or mean
/// virtual milliseconds between events). `None`/`0.0` is off.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Faults {
    /// Mean time between `kill -9`s of a worker (its tasks vanish; it restarts later).
    pub(crate) worker_crash_every_ms: Option<u64>,
    /// Mean time between pauses of a worker past its lease (a zombie).
    pub(crate) worker_pause_every_ms: Option<u64>,
    /// Probability that a group commit is lost to a store crash (its tail dropped).
    pub(crate) store_crash: f64,
    /// Probability that a commit fails with no effect.
    pub(crate) commit_fails: f64,
    /// Probability that a commit is applied but its answer lost.
    pub(crate) ack_lost: f64,
    /// Probability that an action's attempt fails, retryably.
    pub(crate) action_fails: f64,
    /// Probability that an action's attempt fails for good.
    pub(crate) action_fatal: f64,
    /// Probability that an action's attempt panics.
    pub(crate) action_panics: f64,
    /// Probability that an action's attempt runs past its timeout.
    pub(crate) action_times_out: f64,
    /// Probability that an action's attempt is slow (but within its timeout).
    pub(crate) action_slow: f64,
    /// Largest lateness of an engine timer, in virtual milliseconds.
    pub(crate) timer_late_ms: u64,
    /// Largest earliness of an engine timer, in virtual milliseconds.
    pub(crate) timer_early_ms: u64,
    /// Probability that a flushed group wakes no idle worker.
    pub(crate) wakeup_lost: f64,
    /// Probability that a flushed group wakes the idle workers twice.
    pub(crate) wakeup_doubled: f64,
    /// Whether workers keep no workflow state between steps: an execution gives its run back
    /// before each step after its first, so every step begins with a full replay
    /// (`EngineConfig::replay_every_step`, sdk-core's eviction after every reply).
    pub(crate) replay_every_step: bool,
}

impl Faults {
    /// A random subset of the faults, each at a random rate.
    pub(crate) fn swarm(rng: &SimRng) -> Faults {
        let on = |rng: &SimRng| rng.chance(0.5);
        let rate = |rng: &SimRng, high: f64| if on(rng) { high * rng.unit() } else { 0.0 };
        Faults {
            worker_crash_every_ms: on(rng).then(|| rng.between(500, 8_000)),
            worker_pause_every_ms: on(rng).then(|| rng.between(2_000, 15_000)),
            store_crash: rate(rng, 0.05),
            commit_fails: rate(rng, 0.05),
            ack_lost: rate(rng, 0.05),
            action_fails: rate(rng, 0.3),
            action_fatal: rate(rng, 0.02),
            action_panics: rate(rng, 0.05),
            action_times_out: rate(rng, 0.05),
            action_slow: rate(rng, 0.3),
            timer_late_ms: if on(rng) { rng.between(1, 2_000) } else { 0 },
            timer_early_ms: if on(rng) { rng.between(1, 2_000) } else { 0 },
            wakeup_lost: rate(rng, 0.5),
            wakeup_doubled: rate(rng, 0.5),
            replay_every_step: rng.chance(0.25),
        }
    }

    /// No fault at all: the heal phase.
    pub(crate) fn none() -> Faults {
        Faults::default()
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut on = Vec::new();
        if let Some(ms) = self.worker_crash_every_ms {
            on.push(format!("worker-crash/{ms}ms"));
        }
        if let Some(ms) = self.worker_pause_every_ms {
            on.push(format!("zombie/{ms}ms"));
        }
        for (name, p) in [
            ("store-crash", self.store_crash),
            ("commit-fails", self.commit_fails),
            ("ack-lost", self.ack_lost),
            ("action-fails", self.action_fails),
            ("action-fatal", self.action_fatal),
            ("action-panics", self.action_panics),
            ("action-times-out", self.action_times_out),
            ("action-slow", self.action_slow),
            ("wake-ups-lost", self.wakeup_lost),
            ("wake-ups-doubled", self.wakeup_doubled),
        ] {
            if p > 0.0 {
                on.push(format!("{name}={p:.3}"));
            }
        }
        if self.timer_late_ms > 0 {
            on.push(format!("timers-late<={}ms", self.timer_late_ms));
        }
        if self.replay_every_step {
            on.push("replay-every-step".to_owned());
        }
        if self.timer_early_ms > 0 {
            on.push(format!("timers-early<={}ms", self.timer_early_ms));
        }
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(" "))
        }
    }
}
