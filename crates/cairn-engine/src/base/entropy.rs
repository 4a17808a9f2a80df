//! Randomness as the engine sees it: every random draw (run ids, hook tokens, `ctx.random()`
//! and `ctx.uuid()`, the worker id, backoff jitter) comes from an injected source, so tests
//! and the simulator can make an engine's choices repeatable.

use std::sync::{Mutex, PoisonError};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// A source of random bytes.
pub trait Entropy: Send + Sync + 'static {
    /// Fills `bytes` with random bytes.
    fn fill(&self, bytes: &mut [u8]);
}

/// A cryptographically secure generator seeded (and periodically reseeded) from the
/// operating system's random source, one per thread (`rand::rng()`): the default, and the
/// only sound kind of choice for hook tokens in production. A draw costs no system call.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        rand::rng().fill_bytes(bytes);
    }
}

/// A seeded generator: the same seed gives the same draws in the same order (tests, the
/// simulator). Not for production: hook tokens made from a known seed can be guessed.
#[derive(Debug)]
pub struct SeededEntropy {
    rng: Mutex<StdRng>,
}

impl SeededEntropy {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(bytes);
    }
}

/// Draws built on any [`Entropy`].
pub(crate) trait EntropyExt {
    /// A uniform `u64`.
    fn next_u64(&self) -> u64;
    /// A uniform draw in `0..1`.
    fn unit(&self) -> f64;
    /// `N` random bytes.
    fn bytes<const N: usize>(&self) -> [u8; N];
}

impl<E: Entropy + ?Sized> EntropyExt for E {
    fn next_u64(&self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.fill(&mut bytes);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_draws_and_another_seed_others() {
        let (a, b, c) = (
            SeededEntropy::new(7),
            SeededEntropy::new(7),
            SeededEntropy::new(8),
        );
        let draws = |e: &SeededEntropy| (0..4).map(|_| e.next_u64()).collect::<Vec<_>>();
        let first = draws(&a);
        assert_eq!(first, draws(&b));
        assert_ne!(first, draws(&c));
        let unit = OsEntropy.unit();
        assert!((0.0..1.0).contains(&unit));
    }
}
