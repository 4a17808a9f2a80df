//! `GET /runs` (newest first, an opaque cursor per page), `GET /runs/{id}` (the run with its
//! steps and log), and retry, rerun and cancel: the engine calls `runs …` makes.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use cairn_core::{RunStatus, StepKey};
use cairn_engine::{RunDetailView, RunView, StartOptions, Violation, Violations};
use cairn_store::{RunFilter, RunId};
use serde_json::Value;

use crate::{
    body::JsonBody,
    error::ApiError,
    params::{Params, run_id},
    responses::{Canceled, Requeued, RunsPage},
    state::AppState,
    workflows::located,
};

/// Most runs one page lists.
const MAX_PAGE: usize = 1_000;
/// Runs a page lists when `limit` is not given.
const DEFAULT_PAGE: usize = 50;
/// What a cursor starts with: cursors are opaque, this marks the encoding's version.
const CURSOR_PREFIX: &str = "r1.";

/// `GET /runs?workflow=&status=&limit=&cursor=`: `{runs, nextCursor}`, newest first;
/// `nextCursor` is null on the last page.
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<RunsPage>, ApiError> {
    let status = params
        .get("status")
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit={text:?} is not a number from 1 to {MAX_PAGE}"
                ))
            })?,
    };
    let before = params.get("cursor").map(decode_cursor).transpose()?;
    let filter = RunFilter {
        workflow: params.get("workflow").map(str::to_owned),
        status,
        before,
        limit,
        ..RunFilter::default()
    };
    let runs = state.engine.list_runs(&filter).await?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|run| encode_cursor(run.run_id)))
        .flatten();
    Ok(Json(RunsPage {
        runs: runs.iter().map(RunView::from).collect(),
        next_cursor: next,
    }))
}

/// `GET /runs/{id}`: as `runs get --json`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetailView>, ApiError> {
    let detail = state.engine.get_run(run_id(&id)?).await?;
    Ok(Json(RunDetailView::from(&detail)))
}

/// `POST /runs/{id}/retry`: a failed or canceled run goes back to the queue (`202`); `409`
/// for any other status.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run_id = run_id(&id)?;
    state.engine.retry(run_id).await?;
    let body = Requeued {
        run_id,
        status: RunStatus::Queued,
    };
    Ok(located(StatusCode::ACCEPTED, run_id, Json(body)))
}

/// `POST /runs/{id}/rerun` `{"fromStep": "post-brief#0"}`: a new run that keeps the
/// original's steps before that step (`201` with the new run).
pub(crate) async fn rerun(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let original = run_id(&id)?;
    let body = body.required("the step to rerun from", r#"{"fromStep": "post-brief#0"}"#)?;
    let from = match body.get("fromStep") {
        Some(Value::String(step)) if !step.is_empty() => StepKey::custom(step.clone()),
        _ => {
            return Err(ApiError::InvalidBody(Violations(vec![Violation {
                path: "/fromStep".into(),
                message: "required: the key of the step to execute from (a string, as \
                          `GET /runs/{id}` lists the steps)"
                    .into(),
            }])));
        }
    };
    let options = StartOptions {
        trigger: Some("rerun".into()),
        ..StartOptions::default()
    };
    let new = state.engine.rerun_from(original, &from, options).await?;
    let detail = state.engine.get_run(new).await?;
    Ok(located(
        StatusCode::CREATED,
        new,
        Json(RunView::from(&detail.run)),
    ))
}

/// `POST /runs/{id}/cancel` (optional body `{"reason": "…"}`): ends a run that has not ended;
/// `409` for an ended one.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Canceled>, ApiError> {
    let run_id = run_id(&id)?;
    let reason = match body.0 {
        None => "canceled over the HTTP API".to_owned(),
        Some(Value::Object(fields)) => match fields.get("reason") {
            None => "canceled over the HTTP API".to_owned(),
            Some(Value::String(reason)) => reason.clone(),
            Some(_) => return Err(reason_violation()),
        },
        Some(_) => return Err(reason_violation()),
    };
    let previous = state.engine.cancel(run_id, &reason).await?;
    Ok(Json(Canceled {
        run_id,
        status: RunStatus::Canceled,
        previous_status: previous,
    }))
}

fn reason_violation() -> ApiError {
    ApiError::InvalidBody(Violations(vec![Violation {
        path: "/reason".into(),
        message: "the body is optional; when sent, it is an object whose `reason` is a string"
            .into(),
    }]))
}

/// A page's cursor: the last run listed, in a form clients should not read.
fn encode_cursor(run: RunId) -> String {
    format!("{CURSOR_PREFIX}{}", run.0.simple())
}

fn decode_cursor(text: &str) -> Result<RunId, ApiError> {
    text.strip_prefix(CURSOR_PREFIX)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "cursor={text:?} is not a cursor this server handed out; pass the nextCursor of \
                 the previous page as it was"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let run = RunId::new();
        assert_eq!(decode_cursor(&encode_cursor(run)).unwrap(), run);
        assert!(decode_cursor("r1.nope").is_err());
        assert!(decode_cursor(&run.to_string()).is_err());
    }
}
