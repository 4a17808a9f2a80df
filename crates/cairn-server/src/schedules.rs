//! `/schedules`: the cron schedules as the CLI's `schedules` commands show and manage them
//! (list, get with next fire times, recent runs and misses, pause, resume, trigger,
//! backfill, delete), and `PUT /schedules/{id}` creating one, the id being the dedup key.
//! Behind the API key like every route but hooks and webhook deliveries.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use cairn_engine::{ScheduleDetail, Violation, Violations, parse_timestamp};
use cairn_store::{CatchUpPolicy, OverlapPolicy, SchedulePut, ScheduleRecord, ScheduleSpec};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::{
    body::JsonBody,
    error::ApiError,
    responses::{Backfilled, ScheduleList},
    state::AppState,
};

/// What a `PUT /schedules/{id}` body looks like, for error messages.
const SPEC_EXAMPLE: &str = r#"{"workflow": "digest", "input": {}, "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}"#;
/// What a `POST /schedules/{id}/backfill` body looks like.
const RANGE_EXAMPLE: &str = r#"{"from": "2026-03-29T00:00:00Z", "to": "2026-03-30T00:00:00Z"}"#;

/// `GET /schedules`: `{schedules}`, by id.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = state.engine.list_schedules().await?;
    Ok(Json(ScheduleList { schedules }))
}

/// `GET /schedules/{id}`: the schedule, its next 5 fire times, recent runs and misses.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleDetail>, ApiError> {
    Ok(Json(state.engine.get_schedule(&id).await?))
}

/// `PUT /schedules/{id}`: `201` with the new schedule, `200` when the same spec is stored
/// already; `409` for another spec, `422` for a spec that is not valid.
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let body = body.required("the schedule's spec", SPEC_EXAMPLE)?;
    let spec =
        parse_spec(&body).map_err(|violations| ApiError::InvalidBody(Violations(violations)))?;
    let (done, schedule) = state.engine.create_schedule(&id, spec).await?;
    let status = if done == SchedulePut::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(schedule)).into_response())
}

/// `DELETE /schedules/{id}`: `204`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /schedules/{id}/pause`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    Ok(Json(state.engine.pause_schedule(&id).await?))
}

/// `POST /schedules/{id}/resume`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    Ok(Json(state.engine.resume_schedule(&id).await?))
}

/// `POST /schedules/{id}/trigger`: `201` with the new run, `200` when this second's
/// trigger had started it already.
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let started = state.engine.trigger_schedule(&id).await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)).into_response())
}

/// `POST /schedules/{id}/backfill` with `{from, to}`: each fire time and its run.
pub(crate) async fn backfill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Backfilled>, ApiError> {
    let body = body.required("the range to backfill", RANGE_EXAMPLE)?;
    let mut violations = Vec::new();
    let object = object_of(&body, RANGE_EXAMPLE, &mut violations);
    let mut time = |name: &str| {
        let parsed = object
            .get(name)
            .and_then(Value::as_str)
            .and_then(parse_timestamp);
        if parsed.is_none() {
            violations.push(violation(
                &format!("/{name}"),
                "required: an RFC 3339 time such as \"2026-03-29T00:00:00Z\"",
            ));
        }
        parsed
    };
    let (from, to) = (time("from"), time("to"));
    unknown_fields(object, &["from", "to"], &mut violations);
    let (Some(from), Some(to), true) = (from, to, violations.is_empty()) else {
        return Err(ApiError::InvalidBody(Violations(violations)));
    };
    let runs = state.engine.backfill_schedule(&id, from, to).await?;
    Ok(Json(Backfilled { runs }))
}

/// The spec a `PUT` body asks for, or every way it breaks the request's shape (by JSON
/// path). Whether the workflow, input, expression and zone are valid is the engine's call.
fn parse_spec(body: &Value) -> Result<ScheduleSpec, Vec<Violation>> {
    let mut violations = Vec::new();
    let object = object_of(body, SPEC_EXAMPLE, &mut violations);
    let mut text = |name: &str, default: Option<&str>| match (object.get(name), default) {
        (Some(Value::String(value)), _) if !value.is_empty() => value.clone(),
        (None, Some(default)) => default.to_owned(),
        _ => {
            violations.push(violation(
                &format!("/{name}"),
                "required: a non-empty string",
            ));
            String::new()
        }
    };
    let workflow = text("workflow", None);
    let expression = text("cron", None);
    let timezone = text("timezone", Some("UTC"));
    // `"latest"` for `{"kind": "latest"}`.
    let catch_up = object.get("catchUp").map(|given| match given {
        Value::String(kind) => json!({ "kind": kind }),
        other => other.clone(),
    });
    let catch_up = policy::<CatchUpPolicy>(
        catch_up.as_ref(),
        "/catchUp",
        "\"latest\", \"none\" or {\"kind\": \"all\", \"windowMs\": 86400000}",
        CatchUpPolicy::Latest,
        &mut violations,
    );
    let overlap = policy::<OverlapPolicy>(
        object.get("overlap"),
        "/overlap",
        "\"allowAll\", \"skip\" or \"bufferOne\"",
        OverlapPolicy::AllowAll,
        &mut violations,
    );
    let known = [
        "workflow", "input", "cron", "timezone", "catchUp", "overlap",
    ];
    unknown_fields(object, &known, &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(ScheduleSpec {
        workflow,
        input: object.get("input").cloned().unwrap_or(Value::Null),
        expression,
        timezone,
        catch_up,
        overlap,
    })
}

/// A policy field: absent is `default`, else it must read as `T`.
fn policy<T: DeserializeOwned>(
    given: Option<&Value>,
    path: &str,
    expected: &str,
    default: T,
    violations: &mut Vec<Violation>,
) -> T {
    match given.map(|value| serde_json::from_value::<T>(value.clone())) {
        None => default,
        Some(Ok(policy)) => policy,
        Some(Err(_)) => {
            violations.push(violation(path, &format!("must be {expected}")));
            default
        }
    }
}

/// The body as an object (an empty one, with a violation, if it is not).
fn object_of<'a>(
    body: &'a Value,
    example: &str,
    violations: &mut Vec<Violation>,
) -> &'a Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    body.as_object().unwrap_or_else(|| {
        violations.push(violation(
            "",
            &format!("the body is an object, such as {example}"),
        ));
        &EMPTY
    })
}

/// A violation for each field of `object` not in `known`.
fn unknown_fields(object: &Map<String, Value>, known: &[&str], violations: &mut Vec<Violation>) {
    for name in object.keys() {
        if !known.contains(&name.as_str()) {
            violations.push(violation(
                &format!("/{name}"),
                &format!("unknown field; the fields are {}", known.join(", ")),
            ));
        }
    }
}

fn violation(path: &str, message: &str) -> Violation {
    Violation {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_spec_is_read_with_defaults_or_refused_with_each_path() {
        let spec = parse_spec(&json!({"workflow": "greet", "input": {"name": "a"}, "cron": "0 9 * * *", "catchUp": "none", "overlap": "skip"}))
            .expect("valid");
        assert_eq!(spec.timezone, "UTC");
        assert_eq!(spec.catch_up, CatchUpPolicy::None);
        assert_eq!(spec.overlap, OverlapPolicy::Skip);
        let all = parse_spec(
            &json!({"workflow": "w", "cron": "* * * * *", "catchUp": {"kind": "all", "windowMs": 60000}}),
        )
        .expect("valid");
        assert_eq!(all.catch_up, CatchUpPolicy::All { window_ms: 60_000 });
        assert_eq!(all.input, Value::Null);
        let violations = parse_spec(
            &json!({"cron": 5, "timezone": "", "catchUp": "sometimes", "overlap": "never", "x": 1}),
        )
        .expect_err("invalid");
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/workflow",
                "/cron",
                "/timezone",
                "/catchUp",
                "/overlap",
                "/x"
            ]
        );
    }
}
