//! `GET /workflows` (what can be started, with schemas) and `POST /workflows/{slug}` (start a
//! run; `Idempotency-Key`; `?wait=` for the result).

use std::time::Duration;

use crate::{
    body::JsonBody,
    error::ApiError,
    params::Params,
    responses::{Catalog, Started},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cairn_core::Owner;
use cairn_engine::{Engine, EngineError, RunView, StartOptions};
use cairn_store::{RunId, RunRecord};
use tokio::{sync::oneshot, time::Instant};

/// The header naming a start's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The headers naming on whose behalf a run executes.
pub(crate) const OWNER_HEADERS: [&str; 3] = ["cairn-org", "cairn-project", "cairn-user"];

/// The owner the `Cairn-Org`, `Cairn-Project` and `Cairn-User` headers name (`None` without
/// them: the default owner). A missing organization or project is `default`.
fn owner_of(headers: &HeaderMap) -> Result<Option<Owner>, ApiError> {
    let [org, project, user] = OWNER_HEADERS.map(|name| {
        headers
            .get(name)
            .map(|value| {
                value.to_str().map(str::to_owned).map_err(|_| {
                    ApiError::BadRequest(format!("the {name} header must be visible ASCII"))
                })
            })
            .transpose()
    });
    let (org, project, user) = (org?, project?, user?);
    if org.is_none() && project.is_none() && user.is_none() {
        return Ok(None);
    }
    let default = Owner::default();
    Ok(Some(Owner {
        org: org.unwrap_or(default.org),
        project: project.unwrap_or(default.project),
        user,
    }))
}

/// `GET /workflows`: the registered workflows and actions, as `workflows list --json`.
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let registry = state.engine.registry();
    let catalog = Catalog {
        workflows: registry.workflows().collect(),
        actions: registry.actions().collect(),
    };
    Json(catalog).into_response()
}

/// `POST /workflows/{slug}`: starts a run with the body as input. `202 {runId, created}` and
/// `Location: /runs/{id}`; an `Idempotency-Key` already used names the same run (`200`,
/// `created: false`). With `?wait=30s`, waits up to that long for the run to end: `200` with
/// the run (output or error) if it ends in time, else `202`.
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let wait = params
        .get("wait")
        .map(|text| parse_wait(text, state.max_wait))
        .transpose()?;
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ApiError::BadRequest("the Idempotency-Key header must be visible ASCII".into())
            })
        })
        .transpose()?;
    let input = body.required("the run's input", "{}")?;
    let options = StartOptions {
        idempotency_key,
        trigger: Some("api".into()),
        execute_here: false,
        owner: owner_of(&headers)?,
    };
    // A start that waits executes its run here when the worker has a free slot: no claim by
    // the worker, and the run's first write creates it (`Engine::run`'s path).
    let slot = wait
        .and(state.executions.as_ref())
        .and_then(|slots| slots.clone().try_acquire_owned().ok());
    let (started, executed) = match slot {
        Some(slot) => {
            let (started, execution) = state.engine.start_to_execute(&slug, input, options).await?;
            let executed = execution.map(|execution| {
                let (done, executed) = oneshot::channel();
                state.executing.spawn(async move {
                    let ended = execution.await;
                    drop(slot);
                    let _ = done.send(ended);
                });
                executed
            });
            (started, executed)
        }
        None => (state.engine.start_json(&slug, input, options).await?, None),
    };
    if let Some(wait) = wait {
        let deadline = Instant::now() + wait;
        let ended = tokio::select! {
            ended = wait_for_end(&state.engine, started.run_id, executed, deadline) => ended?,
            () = state.shutdown.cancelled() => None,
        };
        if let Some(run) = ended {
            return Ok(located(
                StatusCode::OK,
                started.run_id,
                Json(RunView::from(&run)),
            ));
        }
    }
    let status = if started.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let body = Started {
        run_id: started.run_id,
        created: started.created,
    };
    Ok(located(status, started.run_id, Json(body)))
}

/// The run once it has ended, if it does by `deadline`: first from its execution here (if
/// any), then, once that parked or handed it back, from the store's changes.
async fn wait_for_end(
    engine: &Engine,
    run_id: RunId,
    executed: Option<oneshot::Receiver<Result<Option<RunRecord>, EngineError>>>,
    deadline: Instant,
) -> Result<Option<RunRecord>, ApiError> {
    if let Some(executed) = executed {
        match tokio::time::timeout_at(deadline, executed).await {
            Err(_) => return Ok(None),
            Ok(Ok(Ok(Some(run)))) => return Ok(Some(run)),
            Ok(Ok(Err(err))) => return Err(err.into()),
            Ok(Ok(Ok(None)) | Err(_)) => {}
        }
    }
    Ok(
        tokio::time::timeout_at(deadline, engine.wait_until_ended(run_id))
            .await
            .ok()
            .transpose()?,
    )
}

/// A response with `Location: /runs/{id}`.
pub(crate) fn located(status: StatusCode, run_id: RunId, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/runs/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A `?wait=` value (`30s`, `1500ms`, `1m`), cut to `max`.
fn parse_wait(text: &str, max: Duration) -> Result<Duration, ApiError> {
    let wait = humantime::parse_duration(text).map_err(|err| {
        ApiError::BadRequest(format!(
            "wait={text:?} is not a duration ({err}); write e.g. wait=30s or wait=500ms"
        ))
    })?;
    Ok(wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_durations_cut_to_the_maximum() {
        let max = Duration::from_secs(60);
        assert_eq!(parse_wait("30s", max).unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_wait("250ms", max).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_wait("1h", max).unwrap(), max);
        assert!(matches!(
            parse_wait("soon", max),
            Err(ApiError::BadRequest(_))
        ));
    }
}
