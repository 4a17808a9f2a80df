//! The webhook deliveries log in SQLite (schema v12): a delivery is recorded by the writer
//! thread like every other write, in its own savepoint with the pruning of the endpoint's
//! oldest rows; the log is read on the read pool.

use cairn_store::{DELIVERIES_KEPT, StoreResult, WebhookDelivery};
use rusqlite::{Connection, params};

use crate::{
    codec::{Result, parse_id},
    held::Sql,
    writer::{Answer, Reply, answer, in_savepoint},
};

/// A delivery to record, for the writer thread.
pub(crate) struct RecordDelivery {
    /// Boxed: the other writes are a few words.
    pub(crate) delivery: Box<WebhookDelivery>,
    pub(crate) reply: Reply<()>,
}

impl RecordDelivery {
    /// Inserts the delivery and drops the endpoint's rows beyond [`DELIVERIES_KEPT`].
    pub(crate) fn execute(self, conn: &Sql<'_>, broken: &mut Option<String>) -> Answer {
        let delivery = self.delivery;
        answer(
            self.reply,
            in_savepoint(conn, broken, |c| record(c, &delivery)),
        )
    }
}

fn record(conn: &Connection, delivery: &WebhookDelivery) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries \
         (endpoint, received_at, status, outcome, reason, delivery_id, run_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        delivery.endpoint,
        delivery.received_at_ms,
        delivery.status,
        delivery.outcome,
        delivery.reason,
        delivery.delivery_id,
        delivery.run_id.map(|id| id.to_string()),
    ])?;
    conn.prepare_cached(
        "DELETE FROM webhook_deliveries WHERE endpoint = ?1 AND seq <= ( \
         SELECT seq FROM webhook_deliveries WHERE endpoint = ?1 \
         ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![delivery.endpoint, DELIVERIES_KEPT as i64])?;
    Ok(())
}

/// The newest `limit` deliveries to `endpoint`, newest first.
pub(crate) fn list(
    conn: &Connection,
    endpoint: &str,
    limit: usize,
) -> Result<Vec<WebhookDelivery>> {
    let rows = conn
        .prepare_cached(
            "SELECT endpoint, received_at, status, outcome, reason, delivery_id, run_id \
             FROM webhook_deliveries WHERE endpoint = ?1 ORDER BY seq DESC LIMIT ?2",
        )?
        .query_map(
            params![endpoint, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok((
                    WebhookDelivery {
                        endpoint: row.get(0)?,
                        received_at_ms: row.get(1)?,
                        status: row.get(2)?,
                        outcome: row.get(3)?,
                        reason: row.get(4)?,
                        delivery_id: row.get(5)?,
                        run_id: None,
                    },
                    row.get::<_, Option<String>>(6)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .map(|(delivery, run_id)| {
            Ok(WebhookDelivery {
                run_id: run_id.as_deref().map(parse_id).transpose()?,
                ..delivery
            })
        })
        .collect::<StoreResult<Vec<_>>>()?)
}
