//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too).

use axum::{Json, extract::State};
use cairn_store::RunId;
use serde_json::{Value, json};

use crate::{error::ApiError, state::AppState};

/// Liveness: the process serves requests.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: one read of the store succeeds (`503` otherwise).
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .engine
        .store()
        .get_run(RunId::new())
        .await
        .map_err(cairn_engine::EngineError::from)?;
    Ok(Json(json!({"status": "ready"})))
}
