//! `POST /triggers/{endpoint}`: a webhook delivery (no API key: its signature is the
//! protection). `202 {runId}` (the same runId for a duplicate delivery, and no new run);
//! `200 {"ignored": true}` when the source's transform ignores it (`200 {"challenge": …}` for
//! Slack's `url_verification`); `401` a missing or bad
//! signature or a stale timestamp; `404` unknown endpoint; `413` over the payload limit;
//! `400` not JSON; `422` the transform refused it or its input breaks the workflow's schema.
//!
//! Every delivery to a known endpoint is logged (status, outcome, reason, delivery id, run;
//! never the body), and `GET /webhooks/{endpoint}/deliveries` lists the log.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use cairn_engine::{DELIVERIES_KEPT, Delivered, Headers, WebhookDelivery};
use serde_json::json;

use crate::{
    body::read_bytes, error::ApiError, params::Params, responses::DeliveryList, state::AppState,
};

/// `POST /triggers/{endpoint}`: hands the raw delivery to the engine, then logs what became
/// of it.
pub(crate) async fn deliver(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Unknown endpoints are refused before the body is read, and not logged (anyone could
    // fill a log under any name).
    state
        .engine
        .check_webhook_endpoint(&endpoint)
        .map_err(ApiError::Webhook)?;
    let received_at_ms = state.engine.clock().now_ms();
    let answer = receive(&state, &endpoint, headers, body).await;
    let delivery = logged(&endpoint, received_at_ms, &answer);
    if let Err(err) = state.engine.record_webhook_delivery(delivery).await {
        tracing::warn!(endpoint, error = %err, "a webhook delivery could not be logged");
    }
    answer.map(|delivered| match delivered {
        Delivered::Run { run_id, .. } => {
            (StatusCode::ACCEPTED, Json(json!({ "runId": run_id }))).into_response()
        }
        Delivered::Ignored { .. } => {
            (StatusCode::OK, Json(json!({ "ignored": true }))).into_response()
        }
        Delivered::Challenge(challenge) => {
            (StatusCode::OK, Json(json!({ "challenge": challenge }))).into_response()
        }
    })
}

/// Reads the delivery (up to the payload limit) and hands it to the engine.
async fn receive(
    state: &AppState,
    endpoint: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<Delivered, ApiError> {
    let bytes = read_bytes(&headers, body, state.body_limit).await?;
    let headers: Headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    state
        .engine
        .deliver_webhook(endpoint, headers, bytes.to_vec())
        .await
        .map_err(ApiError::Webhook)
}

/// The log's row for a delivery answered with `answer`.
fn logged(
    endpoint: &str,
    received_at_ms: i64,
    answer: &Result<Delivered, ApiError>,
) -> WebhookDelivery {
    let accepted = |status: StatusCode, outcome: &str| WebhookDelivery {
        endpoint: endpoint.to_owned(),
        received_at_ms,
        status: status.as_u16(),
        outcome: outcome.to_owned(),
        reason: String::new(),
        delivery_id: None,
        run_id: None,
    };
    match answer {
        Ok(Delivered::Run {
            run_id,
            created,
            delivery_id,
        }) => WebhookDelivery {
            delivery_id: Some(delivery_id.clone()),
            run_id: Some(*run_id),
            ..accepted(
                StatusCode::ACCEPTED,
                if *created { "started" } else { "duplicate" },
            )
        },
        Ok(Delivered::Ignored { delivery_id }) => WebhookDelivery {
            delivery_id: Some(delivery_id.clone()),
            ..accepted(StatusCode::OK, "ignored")
        },
        Ok(Delivered::Challenge(_)) => accepted(StatusCode::OK, "challenge"),
        Err(err) => {
            let (status, slug, reason) = err.delivery_outcome();
            WebhookDelivery {
                reason,
                ..accepted(status, slug)
            }
        }
    }
}

/// Deliveries `GET /webhooks/{endpoint}/deliveries` lists when `limit` is not given.
const DEFAULT_DELIVERIES: usize = 50;

/// `GET /webhooks/{endpoint}/deliveries?limit=`: the endpoint's logged deliveries, newest
/// first (50 unless `limit` says otherwise, at most the 1,000 kept).
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    params: Params,
) -> Result<Json<DeliveryList>, ApiError> {
    let limit = match params.get("limit") {
        None => DEFAULT_DELIVERIES,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=DELIVERIES_KEPT).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit={text:?} is not a number from 1 to {DELIVERIES_KEPT}"
                ))
            })?,
    };
    let deliveries = state
        .engine
        .webhook_deliveries(&endpoint, limit)
        .await
        .map_err(ApiError::Webhook)?;
    Ok(Json(DeliveryList { deliveries }))
}
