//! [`SqliteOptions`]: the knobs of a [`SqliteStore`](crate::SqliteStore).

use std::time::Duration;

/// Knobs of a [`SqliteStore`](crate::SqliteStore). The defaults suit almost everyone.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a write waits for another process's write lock before failing with
    /// [`StoreError::Unavailable`](cairn_store::StoreError::Unavailable). Default 5 s.
    pub busy_timeout: Duration,
    /// Most write commands committed together in one transaction. Default 512.
    pub max_batch: usize,
    /// Most idle read connections kept open. Default 32.
    pub max_idle_readers: usize,
    /// How long the writer thread, once idle, polls for the next write before it blocks.
    /// A lone caller's next write (the next step of a workflow) usually comes within it, and
    /// a blocked thread takes tens of microseconds to wake on a virtual machine, once per
    /// write. The cost is up to this much CPU after the last write of a burst. Zero turns it
    /// off. Default 300 µs.
    pub writer_idle_spin: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
            max_idle_readers: 32,
            writer_idle_spin: Duration::from_micros(300),
        }
    }
}
