//! Tests of schema version 12: a file of every older version upgrades to the webhook
//! deliveries log, on which a delivery is recorded through the writer and listed back whole.

use cairn_store::{RunId, WebhookDelivery};
use tokio::sync::oneshot;

use super::tests::upgraded_from_every_version;
use crate::{
    deliveries::{self, RecordDelivery},
    run_cache::RunCache,
    writer::{
        Command,
        tests::{NOW, execute_batch},
    },
};

#[test]
fn a_file_of_every_older_version_upgrades_to_the_deliveries_log() {
    upgraded_from_every_version(|conn, version| {
        let delivery = WebhookDelivery {
            endpoint: "stripe".into(),
            received_at_ms: NOW,
            status: 202,
            outcome: "started".into(),
            reason: String::new(),
            delivery_id: Some("evt_1".into()),
            run_id: Some(RunId::new()),
        };
        let (reply, recorded) = oneshot::channel();
        let record = RecordDelivery {
            delivery: Box::new(delivery.clone()),
            reply,
        };
        execute_batch(conn, &mut RunCache::default(), [Command::Delivery(record)]);
        recorded
            .blocking_recv()
            .expect("answered")
            .expect("recorded");
        assert_eq!(
            deliveries::list(conn, "stripe", 10).expect("list"),
            vec![delivery],
            "from version {version}"
        );
    });
}
