//! The store's clock: the host kernel's real-time clock, read directly.
//!
//! Every process that opens a SQLite file runs on one host, and the kernel's clock is the one
//! clock they all share: it is what leases and due runs are judged by (decision 0046). On
//! Linux it is read through the vDSO (`rustix`), not through the C library, so a process
//! whose C library clock is shifted (libfaketime, as a test of a worker's clock jump) still
//! judges leases by the host's time.

/// Now on the host's real-time clock, in unix milliseconds.
pub(crate) fn host_clock_ms() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        now.tv_sec
            .saturating_mul(1_000)
            .saturating_add(now.tv_nsec / 1_000_000)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_clock_is_the_system_clock_of_an_unshifted_process() {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let host = host_clock_ms();
        let apart = (i128::from(host) - i128::try_from(system).expect("ms fit")).abs();
        assert!(
            apart < 1_000,
            "host clock {host} ms, system clock {system} ms"
        );
    }
}
