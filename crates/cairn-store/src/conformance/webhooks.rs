//! The webhook deliveries log: deliveries listed newest first per endpoint, every field kept,
//! and only the newest [`DELIVERIES_KEPT`] of an endpoint kept, however many are recorded at
//! once.

use std::sync::Arc;

use super::support::T0;
use crate::{DELIVERIES_KEPT, RunId, Store, WebhookDelivery};

/// A delivery to `endpoint` received at `T0 + n`.
fn delivery(endpoint: &str, n: i64) -> WebhookDelivery {
    WebhookDelivery {
        endpoint: endpoint.to_owned(),
        received_at_ms: T0 + n,
        status: 401,
        outcome: "invalid_signature".to_owned(),
        reason: format!("delivery {n}: no signature matches"),
        delivery_id: None,
        run_id: None,
    }
}

/// Recorded deliveries come back whole, newest first, per endpoint, at most `limit`.
pub async fn webhook_deliveries_are_listed_newest_first(store: Arc<dyn Store>) {
    let started = WebhookDelivery {
        status: 202,
        outcome: "started".to_owned(),
        reason: String::new(),
        delivery_id: Some("evt_1".to_owned()),
        run_id: Some(RunId::new()),
        ..delivery("stripe", 3)
    };
    for recorded in [
        delivery("stripe", 1),
        delivery("github", 2),
        started.clone(),
    ] {
        store
            .record_webhook_delivery(recorded)
            .await
            .expect("a delivery is recorded");
    }
    let stripe = store.webhook_deliveries("stripe", 10).await.expect("list");
    assert_eq!(
        stripe,
        vec![started.clone(), delivery("stripe", 1)],
        "an endpoint's deliveries, newest first, every field kept"
    );
    let newest = store.webhook_deliveries("stripe", 1).await.expect("list");
    assert_eq!(newest, vec![started], "the limit keeps the newest");
    assert_eq!(
        store.webhook_deliveries("slack", 10).await.expect("list"),
        Vec::new(),
        "an endpoint without deliveries lists none"
    );
}

/// Recording past [`DELIVERIES_KEPT`] (concurrently, then once more) drops the endpoint's
/// oldest only.
pub async fn webhook_deliveries_keep_the_newest(store: Arc<dyn Store>) {
    let total = DELIVERIES_KEPT as i64 + 5;
    let records: Vec<_> = (0..total)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.record_webhook_delivery(delivery("stripe", n)).await })
        })
        .collect();
    for recorded in records {
        recorded
            .await
            .expect("the task ends")
            .expect("a delivery is recorded");
    }
    // Concurrent recorders may each miss the others' rows when pruning: the next recording
    // prunes to the limit.
    for recorded in [delivery("stripe", total), delivery("github", 0)] {
        store
            .record_webhook_delivery(recorded)
            .await
            .expect("a delivery is recorded");
    }
    let kept = store
        .webhook_deliveries("stripe", usize::MAX)
        .await
        .expect("list");
    assert_eq!(kept.len(), DELIVERIES_KEPT, "only the newest are kept");
    assert_eq!(kept[0], delivery("stripe", total), "the newest is first");
    let github = store.webhook_deliveries("github", 10).await.expect("list");
    assert_eq!(github.len(), 1, "another endpoint's log is its own");
}
