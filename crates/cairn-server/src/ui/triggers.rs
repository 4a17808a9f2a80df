//! The UI's trigger pages: cron schedules (`/ui/schedules`, `/ui/schedules/{id}` with its
//! next 5 fire times, recent runs and missed ones; Pause, Resume and Trigger) and webhook endpoints
//! (`/ui/webhooks`, `/ui/webhooks/{endpoint}` with its logged deliveries). Each page and
//! action is one engine call, as the CLI's `schedules` and `webhooks` commands make.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use cairn_engine::{DELIVERIES_KEPT, WebhookError, timestamp};
use cairn_store::ScheduleRecord;

use super::{
    UiError,
    csrf::{CheckedForm, CsrfToken},
    html,
    pages::encode,
    trigger_pages::{
        DeliveriesPage, DeliveryRow, EndpointRow, ScheduleDetailPage, ScheduleRow, SchedulesPage,
        WebhooksPage,
    },
};
use crate::{params::Params, state::AppState};

/// The trigger pages' routes (behind the UI's sign-in, like every page).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/schedules", get(schedules))
        .route("/ui/schedules/{id}", get(schedule))
        .route("/ui/schedules/{id}/pause", post(pause))
        .route("/ui/schedules/{id}/resume", post(resume))
        .route("/ui/schedules/{id}/trigger", post(trigger))
        .route("/ui/webhooks", get(webhooks))
        .route("/ui/webhooks/{endpoint}", get(deliveries))
}

/// `GET /ui/schedules`.
async fn schedules(State(state): State<AppState>) -> Result<Response, UiError> {
    let listed = state.engine.list_schedules().await?;
    let page = SchedulesPage {
        schedules: listed.iter().map(schedule_row).collect(),
    };
    Ok(html(&page).into_response())
}

fn schedule_row(schedule: &ScheduleRecord) -> ScheduleRow {
    ScheduleRow {
        id: schedule.id.clone(),
        link: encode(&schedule.id),
        workflow: schedule.spec.workflow.clone(),
        expression: schedule.spec.expression.clone(),
        timezone: schedule.spec.timezone.clone(),
        state: schedule.state(),
        next_fire: fire_time(schedule.next_fire_at_ms),
        last_fire: schedule
            .last_fire_at_ms
            .map_or_else(|| "never".to_owned(), timestamp),
    }
}

/// A fire time, or `never` for a schedule that fires no more.
fn fire_time(ms: i64) -> String {
    if ms == i64::MAX {
        "never".to_owned()
    } else {
        timestamp(ms)
    }
}

/// `GET /ui/schedules/{id}` (`?notice=` after an action).
async fn schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let detail = state.engine.get_schedule(&id).await?;
    let csrf = CsrfToken::of(&headers);
    let spec = &detail.schedule.spec;
    let page = ScheduleDetailPage {
        row: schedule_row(&detail.schedule),
        input: serde_json::to_string_pretty(&spec.input).unwrap_or_default(),
        catch_up: spec.catch_up.to_string(),
        overlap: spec.overlap.to_string(),
        paused: detail.schedule.paused,
        upcoming: detail.upcoming_ms.iter().map(|ms| fire_time(*ms)).collect(),
        buffered: detail.buffered_ms.map(timestamp),
        recent: detail.recent_runs.iter().map(Into::into).collect(),
        missed: detail
            .missed
            .iter()
            .map(|miss| {
                (
                    timestamp(miss.first_ms),
                    timestamp(miss.last_ms),
                    miss.reason.clone(),
                )
            })
            .collect(),
        csrf: csrf.token.clone(),
        notice: params.get("notice").map(str::to_owned),
    };
    Ok(csrf.set_on(html(&page).into_response()))
}

/// `POST /ui/schedules/{id}/pause`.
async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    state.engine.pause_schedule(&id).await?;
    Ok(back_to(&id, "Paused"))
}

/// `POST /ui/schedules/{id}/resume`: from the next fire time after now (no catch-up).
async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    state.engine.resume_schedule(&id).await?;
    Ok(back_to(&id, "Resumed"))
}

/// `POST /ui/schedules/{id}/trigger`: a run now, the schedule's fire times unmoved; to it.
async fn trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    let started = state.engine.trigger_schedule(&id).await?;
    Ok(Redirect::to(&format!(
        "/ui/runs/{}?notice={}",
        started.run_id,
        encode(&format!("Started by schedule {id}"))
    )))
}

/// To the schedule's page with `notice`.
fn back_to(id: &str, notice: &str) -> Redirect {
    Redirect::to(&format!(
        "/ui/schedules/{}?notice={}",
        encode(id),
        encode(notice)
    ))
}

/// `GET /ui/webhooks`: the registered endpoints.
async fn webhooks(State(state): State<AppState>) -> Response {
    let endpoints = state
        .engine
        .registry()
        .webhook_workflows()
        .map(|(endpoint, workflow)| EndpointRow {
            endpoint: endpoint.to_owned(),
            link: encode(endpoint),
            workflow: workflow.to_owned(),
        })
        .collect();
    html(&WebhooksPage { endpoints }).into_response()
}

/// `GET /ui/webhooks/{endpoint}`: its newest deliveries (at most the 1,000 kept).
async fn deliveries(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
) -> Result<Response, UiError> {
    let listed = state
        .engine
        .webhook_deliveries(&endpoint, DELIVERIES_KEPT)
        .await
        .map_err(|err| match err {
            WebhookError::Engine(err) => UiError::from(err),
            other => UiError::new(StatusCode::NOT_FOUND, "Not found", other.to_string()),
        })?;
    let page = DeliveriesPage {
        endpoint,
        deliveries: listed
            .iter()
            .map(|delivery| DeliveryRow {
                received_at: timestamp(delivery.received_at_ms),
                status: delivery.status,
                outcome: delivery.outcome.clone(),
                delivery_id: delivery.delivery_id.clone().unwrap_or_default(),
                run_id: delivery.run_id.map(|id| id.to_string()),
                reason: delivery.reason.clone(),
            })
            .collect(),
    };
    Ok(html(&page).into_response())
}
