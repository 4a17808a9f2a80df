//! The webhook deliveries log in PostgreSQL (schema v5). A delivery touches no run, so it is
//! written apart from the run write queue: one transaction on a pooled connection inserts it
//! and drops its endpoint's rows beyond the newest [`DELIVERIES_KEPT`].

use cairn_store::{DELIVERIES_KEPT, RunId, WebhookDelivery};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Logs `delivery` and prunes its endpoint's log.
pub(crate) async fn record(pool: &PgPool, delivery: &WebhookDelivery) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries \
         (endpoint, received_at, status, outcome, reason, delivery_id, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&delivery.endpoint)
    .bind(delivery.received_at_ms)
    .bind(i32::from(delivery.status))
    .bind(&delivery.outcome)
    .bind(&delivery.reason)
    .bind(&delivery.delivery_id)
    .bind(delivery.run_id.map(|id| id.0))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM webhook_deliveries WHERE endpoint = $1 AND n <= ( \
         SELECT n FROM webhook_deliveries WHERE endpoint = $1 \
         ORDER BY n DESC LIMIT 1 OFFSET $2)",
    )
    .bind(&delivery.endpoint)
    .bind(DELIVERIES_KEPT as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest `limit` deliveries to `endpoint`, newest first.
pub(crate) async fn list(
    pool: &PgPool,
    endpoint: &str,
    limit: usize,
) -> Result<Vec<WebhookDelivery>> {
    type Row = (
        String,
        i64,
        i32,
        String,
        String,
        Option<String>,
        Option<Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT endpoint, received_at, status, outcome, reason, delivery_id, run_id \
         FROM webhook_deliveries WHERE endpoint = $1 ORDER BY n DESC LIMIT $2",
    )
    .bind(endpoint)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(endpoint, received_at_ms, status, outcome, reason, delivery_id, run_id)| {
                WebhookDelivery {
                    endpoint,
                    received_at_ms,
                    status: u16::try_from(status).unwrap_or(u16::MAX),
                    outcome,
                    reason,
                    delivery_id,
                    run_id: run_id.map(RunId),
                }
            },
        )
        .collect())
}
