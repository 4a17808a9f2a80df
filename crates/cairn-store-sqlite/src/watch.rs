//! Change watches on SQLite.
//!
//! - **This store's commits**: the writer collects the runs each batch changed (only while a
//!   watch exists) and publishes them once the batch is synced, before its callers hear.
//! - **Other connections' commits** (other processes, other stores on the file): seen
//!   through `PRAGMA data_version` on the writer's own connection, which changes exactly when
//!   another connection committed, never for the writer's commits. It is read every
//!   [`OTHER_COMMITS_POLL`], only while a watch exists, and a change is reported as
//!   [`Changes::Unknown`](cairn_store::Changes::Unknown): SQLite does not say what another
//!   connection wrote.

use std::{
    sync::{Arc, mpsc},
    time::Duration,
};

use cairn_store::{ChangeWatch, StoreResult, watch::ChangeHub};
use tokio::{
    sync::{Mutex, oneshot},
    time::{Instant, MissedTickBehavior},
};

use crate::{
    pipeline::Message,
    writer::{Command, Writer, stopped},
};

/// How often a store with a watch looks whether another connection committed: the longest
/// a watch waits to hear of another process's commit, and about one cheap message to the
/// writer thread per period.
pub const OTHER_COMMITS_POLL: Duration = Duration::from_millis(50);

/// Reads `PRAGMA data_version` on the writer's connection: it changes exactly when another
/// connection (another process, another store on the file) has committed, and never for the
/// writer's own commits.
#[derive(Clone)]
pub(crate) struct DataVersions {
    queue: mpsc::Sender<Message<Command>>,
}

impl DataVersions {
    /// Asks through the writer thread's `queue`.
    pub(crate) fn new(queue: mpsc::Sender<Message<Command>>) -> DataVersions {
        DataVersions { queue }
    }

    /// The current value; fails once the writer thread has stopped.
    pub(crate) async fn read(&self) -> StoreResult<i64> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::DataVersion(reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A store's watches and the poll of other connections' commits that runs while any exists.
#[derive(Default)]
pub(crate) struct Watches {
    pub(crate) changes: ChangeHub,
    /// Whether the poll task runs. Held while it starts (so no watch is handed out before
    /// the poll's first reading) and while it decides to stop (so no watch is left without it).
    polling: Mutex<bool>,
}

impl Watches {
    /// A new watch; starts the poll if it is not running, reading its first
    /// `data_version` before returning, so every later commit of another connection is seen.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        writer: &Writer,
    ) -> StoreResult<Box<dyn ChangeWatch>> {
        let watch = self.changes.watch();
        let mut polling = self.polling.lock().await;
        if !*polling {
            let versions = writer.data_versions()?;
            let seen = versions.read().await?;
            tokio::spawn(Arc::clone(self).poll(versions, seen));
            *polling = true;
        }
        Ok(Box::new(watch))
    }

    /// Reads `data_version` every [`OTHER_COMMITS_POLL`] and reports a change as `Unknown`,
    /// until no watch is left or the store is closed.
    async fn poll(self: Arc<Self>, versions: DataVersions, mut seen: i64) {
        let mut ticks =
            tokio::time::interval_at(Instant::now() + OTHER_COMMITS_POLL, OTHER_COMMITS_POLL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            {
                let mut polling = self.polling.lock().await;
                if !self.changes.watching() {
                    *polling = false;
                    return;
                }
            }
            match versions.read().await {
                Ok(version) if version != seen => {
                    seen = version;
                    self.changes.publish_unknown();
                }
                Ok(_) => {}
                Err(error) => {
                    // The writer thread stopped: the store is closing (it closes the watches).
                    tracing::debug!(%error, "stopped watching other connections' commits");
                    *self.polling.lock().await = false;
                    return;
                }
            }
        }
    }
}
