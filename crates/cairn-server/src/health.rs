//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too).

use crate::{error::ApiError, responses::Health, state::AppState};
use axum::{Json, extract::State};
use cairn_store::RunId;

/// Liveness: the process serves requests.
pub(crate) async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: one read of the store succeeds (`503` otherwise).
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .engine
        .store()
        .get_run(RunId::new())
        .await
        .map_err(cairn_engine::EngineError::from)?;
    Ok(Json(Health { status: "ready" }))
}
