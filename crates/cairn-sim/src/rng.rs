//! The simulator's one source of randomness: a seeded generator behind every choice the
//! simulator makes (which faults a seed enables, when they fire, what an action does), so one
//! seed is one execution, bit for bit.

use std::sync::{Mutex, PoisonError};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// A seeded generator shared by everything in one simulated world.
#[derive(Debug)]
pub(crate) struct SimRng {
    rng: Mutex<StdRng>,
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> SimRng {
        SimRng {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// A uniform `u64`.
    pub(crate) fn next(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_u64()
    }

    /// A uniform draw in `0..bound` (0 when `bound` is 0).
    pub(crate) fn below(&self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    /// A uniform draw in `low..=high`.
    pub(crate) fn between(&self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// A uniform draw in `0..1`.
    pub(crate) fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence_of_draws() {
        let draws = |seed| {
            let rng = SimRng::new(seed);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        let rng = SimRng::new(3);
        assert!((0..100).all(|_| (5..=9).contains(&rng.between(5, 9))));
    }
}
