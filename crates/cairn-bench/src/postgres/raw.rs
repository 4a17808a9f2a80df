//! The raw limit of the PostgreSQL server, measured in the same run on the same database as
//! the engine: single-row `BEGIN; INSERT; COMMIT` transactions on a scratch table shaped like
//! the engine's `events` table (without its foreign key), from one client, and for reference
//! from many concurrent clients (whose commits the server may flush together).
//!
//! The client is sqlx, as in `cairn-store-postgres`: the insert is a cached prepared
//! statement, `BEGIN` and `COMMIT` are round trips of their own, exactly as the store's write
//! task pays them. Each commit waits for the server's WAL flush (whatever `synchronous_commit`
//! says; the report records it).

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};

use crate::stats::{Latencies, LatencySummary, per_second};

/// The scratch table: the engine's `events` columns, no foreign key.
const EVENTS_TABLE: &str = "
CREATE TABLE events (
    run_id   UUID NOT NULL,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    type     TEXT NOT NULL,
    step_key TEXT,
    payload  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)";

/// The insert, as the store writes a step completion.
const INSERT: &str = "INSERT INTO events (run_id, seq, at, type, step_key, payload) \
                      VALUES ($1::uuid, $2, $3, $4, $5, $6)";

/// A step completion as the engine stores it.
const PAYLOAD: &str =
    r#"{"type":"step_completed","key":"noop#1","kind":"action","slug":"noop","output":{"n":41}}"#;

/// Events per simulated run (a 3-step workflow writes 8), so keys look like the engine's.
const EVENTS_PER_RUN: u64 = 8;

/// Single-row transactions from some clients at once.
#[derive(Clone, Debug, Serialize)]
pub struct Commits {
    /// Concurrent clients, one connection each.
    pub clients: usize,
    /// Transactions measured, all clients together.
    pub commits: usize,
    /// Commits per second, all clients together.
    pub ops_per_sec: f64,
    /// Latency of one `BEGIN; INSERT; COMMIT`, as one client sees it.
    pub latency: LatencySummary,
}

/// Both raw measurements.
#[derive(Clone, Debug, Serialize)]
pub struct RawBaseline {
    /// One client: the price of one durable commit, and the reference of the ratios.
    pub single: Commits,
    /// Many clients, for reference: what the server does when commits overlap.
    pub concurrent: Commits,
}

/// Connects to `url` with `search_path` set to `schema`.
pub async fn connect(url: &str, schema: &str) -> anyhow::Result<PgConnection> {
    let options: PgConnectOptions = url.parse().context("parsing the database URL")?;
    let options = options
        .application_name("cairn-bench")
        .options([("search_path", schema)]);
    PgConnection::connect_with(&options)
        .await
        .context("connecting to PostgreSQL")
}

/// Measures `commits` one-row transactions from one client, then `client_commits` from each
/// of `clients` clients at once, on a new scratch table in `schema` (which must exist and
/// hold no `events` table).
pub async fn measure(
    url: &str,
    schema: &str,
    commits: usize,
    clients: usize,
    client_commits: usize,
) -> anyhow::Result<RawBaseline> {
    let mut conn = connect(url, schema).await?;
    sqlx::query(EVENTS_TABLE)
        .execute(&mut conn)
        .await
        .context("creating the scratch table")?;
    // Warm up: the prepared statement, the table's first pages, the connection.
    transactions(&mut conn, 0, 50).await?;

    let started = Instant::now();
    let latency = transactions(&mut conn, 1 << 40, commits).await?;
    let single = Commits {
        clients: 1,
        commits,
        ops_per_sec: per_second(commits, started.elapsed()),
        latency: latency.summary(),
    };
    conn.close().await.ok();
    let concurrent = concurrent(url, schema, clients.max(1), client_commits).await?;
    Ok(RawBaseline { single, concurrent })
}

/// `client_commits` transactions from each of `clients` connections, started together.
async fn concurrent(
    url: &str,
    schema: &str,
    clients: usize,
    client_commits: usize,
) -> anyhow::Result<Commits> {
    let mut conns = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut conn = connect(url, schema).await?;
        transactions(&mut conn, (2 + client as u64) << 40, 5).await?;
        conns.push(conn);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients + 1));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(client, mut conn)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let first = ((2 + client as u64) << 40) | (1 << 20);
                let latency = transactions(&mut conn, first, client_commits).await;
                conn.close().await.ok();
                latency
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut latency = Latencies::new();
    for task in tasks {
        latency.merge(&task.await.context("a baseline client panicked")??);
    }
    let commits = clients * client_commits;
    Ok(Commits {
        clients,
        commits,
        ops_per_sec: per_second(commits, started.elapsed()),
        latency: latency.summary(),
    })
}

/// `count` transactions of one row each, rows numbered from `first` (distinct per caller so
/// keys never collide); each timed from `BEGIN` to the end of `COMMIT`.
pub(crate) async fn transactions(
    conn: &mut PgConnection,
    first: u64,
    count: usize,
) -> anyhow::Result<Latencies> {
    let mut latency = Latencies::new();
    for row in first..first + count as u64 {
        let run_id = format!("0190a000-0000-7000-8000-{:012x}", row / EVENTS_PER_RUN);
        let seq = i64::try_from(row % EVENTS_PER_RUN + 1).unwrap_or(i64::MAX);
        let started = Instant::now();
        let mut tx = conn.begin().await.context("BEGIN")?;
        sqlx::query(INSERT)
            .bind(run_id)
            .bind(seq)
            .bind(1_700_000_000_000_i64)
            .bind("step_completed")
            .bind("noop#1")
            .bind(PAYLOAD)
            .execute(&mut *tx)
            .await
            .context("a one-row INSERT failed")?;
        tx.commit().await.context("COMMIT")?;
        latency.record(started.elapsed());
    }
    Ok(latency)
}
