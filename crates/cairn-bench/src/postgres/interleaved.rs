//! The sequential workflow and the raw commit measured in turns, in the same seconds: one
//! raw `BEGIN; INSERT; COMMIT`, then one workflow, and again. The ratio of their medians
//! does not move with the disk's latency drifting between the two measurements (on a shared
//! VM the raw commit p50 moved from 0.5 to 1.5 ms between runs minutes apart), which the
//! ratio of (2) to (1a), measured one after the other, does.

use anyhow::Context;
use cairn_engine::{Engine, Workflow};
use serde::Serialize;

use crate::{
    postgres::raw,
    stats::{Latencies, LatencySummary},
    workload::{Count, run_one},
};

/// Rows numbered from here, apart from the raw baseline's (which end below `34 << 40`).
const FIRST_ROW: u64 = 1 << 50;

/// The two latencies measured in turns, and their ratio.
#[derive(Clone, Debug, Serialize)]
pub struct Interleaved {
    /// Pairs measured (one commit and one workflow each).
    pub pairs: usize,
    /// One raw `BEGIN; INSERT; COMMIT` on a connection of its own.
    pub commit: LatencySummary,
    /// One workflow, `Engine::run`.
    pub workflow: LatencySummary,
    /// Workflow p50 ÷ commit p50.
    pub workflow_in_commits: f64,
}

/// Measures `pairs` raw commits (on the scratch table of the raw baseline in `raw_schema`)
/// and `pairs` workflows on `engine`, in turns.
pub async fn measure(
    url: &str,
    raw_schema: &str,
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    pairs: usize,
) -> anyhow::Result<Interleaved> {
    let mut conn = raw::connect(url, raw_schema).await?;
    let (mut commits, mut workflows) = (Latencies::new(), Latencies::new());
    for pair in 0..pairs {
        let row = FIRST_ROW + pair as u64;
        commits.merge(&raw::transactions(&mut conn, row, 1).await?);
        workflows.record(
            run_one(engine, workflow, pair as u64)
                .await
                .context("an interleaved workflow")?,
        );
    }
    let (commit, workflow) = (commits.summary(), workflows.summary());
    Ok(Interleaved {
        pairs,
        workflow_in_commits: if commit.p50_us > 0.0 {
            workflow.p50_us / commit.p50_us
        } else {
            0.0
        },
        commit,
        workflow,
    })
}
