//! `webhooks deliveries <endpoint>`: what became of each delivery to a webhook endpoint
//! (status, outcome, reason, delivery id, run; never its body), newest first, from the
//! store here or, with `--server`, from `GET /webhooks/{endpoint}/deliveries`.

use std::process::ExitCode;

use cairn_engine::{Engine, WebhookDelivery, WebhookError, timestamp};
use comfy_table::Table;

use super::{CliError, args::WebhooksCommand, commands::print_json};

/// Runs a `webhooks` command against the store.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: WebhooksCommand,
) -> Result<ExitCode, CliError> {
    match command {
        WebhooksCommand::Deliveries {
            endpoint,
            limit,
            json,
        } => {
            let listed = engine
                .webhook_deliveries(&endpoint, usize::from(limit))
                .await
                .map_err(|err| match err {
                    WebhookError::Engine(err) => CliError::Engine(err),
                    other => CliError::Usage(other.to_string()),
                })?;
            print_deliveries(&endpoint, &listed, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an endpoint's deliveries: a table, or `--json` the list as the API answers it.
pub(crate) fn print_deliveries(endpoint: &str, listed: &[WebhookDelivery], json: bool) {
    if json {
        print_json(&listed);
        return;
    }
    if listed.is_empty() {
        println!("no deliveries to {endpoint} yet; providers post to /triggers/{endpoint}");
        return;
    }
    let mut table = Table::new();
    table.set_header(["received", "status", "outcome", "delivery", "run", "reason"]);
    for delivery in listed {
        table.add_row([
            timestamp(delivery.received_at_ms),
            delivery.status.to_string(),
            delivery.outcome.clone(),
            delivery.delivery_id.clone().unwrap_or_default(),
            delivery.run_id.map(|id| id.to_string()).unwrap_or_default(),
            delivery.reason.clone(),
        ]);
    }
    println!("{table}");
}
