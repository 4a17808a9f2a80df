//! `POST /triggers/{endpoint}`: a webhook delivery (no API key: its signature is the
//! protection). `202 {runId}` (the same runId for a duplicate delivery, and no new run);
//! `200 {"ignored": true}` when the source's transform ignores it (`200 {"challenge": …}` for
//! Slack's `url_verification`); `401` a missing or bad
//! signature or a stale timestamp; `404` unknown endpoint; `413` over the payload limit;
//! `400` not JSON; `422` the transform refused it or its input breaks the workflow's schema.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use cairn_engine::{Delivered, Headers};
use serde_json::json;

use crate::{body::read_bytes, error::ApiError, state::AppState};

/// `POST /triggers/{endpoint}`: hands the raw delivery to the engine.
pub(crate) async fn deliver(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Unknown endpoints are refused before the body is read.
    state
        .engine
        .check_webhook_endpoint(&endpoint)
        .map_err(ApiError::Webhook)?;
    let bytes = read_bytes(&headers, body, state.body_limit).await?;
    let headers: Headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let delivered = state
        .engine
        .deliver_webhook(&endpoint, headers, bytes.to_vec())
        .await
        .map_err(ApiError::Webhook)?;
    Ok(match delivered {
        Delivered::Run { run_id, .. } => {
            (StatusCode::ACCEPTED, Json(json!({ "runId": run_id }))).into_response()
        }
        Delivered::Ignored => (StatusCode::OK, Json(json!({ "ignored": true }))).into_response(),
        Delivered::Challenge(challenge) => {
            (StatusCode::OK, Json(json!({ "challenge": challenge }))).into_response()
        }
    })
}
