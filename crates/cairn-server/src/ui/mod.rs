//! The web UI at `/ui`, in the server's binary: server-rendered pages (askama), one
//! hand-written `app.js` that keeps pages live over the API's Server-Sent Events, no build
//! step. Every page works without JavaScript: forms post and redirect (303).
//!
//! - `/ui/runs`: runs, newest first, filtered by workflow and status (in the URL), paged.
//! - `/ui/runs/{id}`: the run, its input and output, its steps as a timeline with each
//!   step's payloads and attempts; Retry, Cancel (confirmed) and Rerun from a step.
//! - `/ui/workflows`, `/ui/workflows/{slug}/start`: a run started from a form generated from
//!   the workflow's input schema ("Start like this" fills it from a run); `/ui/hooks` and
//!   `/ui/runs/{id}/resume?step=`: a pending hook resumed from its payload schema's form
//!   (see `forms` and `form`).
//! - `/ui/credentials`: credentials by type and holder (never a value), a write-only form per
//!   registered type, Delete and Make default (see `credentials`).
//! - `/ui/schedules`, `/ui/schedules/{id}`: cron schedules, each with its next 5 fire times
//!   and missed ones; Pause and Resume. `/ui/webhooks`, `/ui/webhooks/{endpoint}`: webhook
//!   endpoints and each one's logged deliveries (see `triggers`).
//! - `/ui/login`: with API keys configured, the key is asked once and kept in an HttpOnly,
//!   SameSite=Strict cookie. Every form carries a CSRF token (a random cookie of its own,
//!   repeated in the form); a post without it is refused (403) and changes nothing.
//!
//! Errors are pages: 404 for an unknown run, 400 for a bad filter, 409 when a run's state
//! does not allow an action, with a link back.

mod credentials;
mod csrf;
mod form;
mod form_pages;
mod form_view;
mod forms;
mod pages;
mod runs_query;
mod trigger_pages;
mod triggers;

use axum::{
    Form, Router,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use cairn_core::StepKey;
use cairn_engine::{EngineError, ErrorClass, RunDetailView, RunView, StartOptions, StepView};
use cairn_store::{RunFilter, RunId};
use serde::Deserialize;

use self::{
    csrf::{CheckedForm, CsrfToken},
    pages::{LoginPage, MessagePage, RunsPage, encode, run_page},
    runs_query::RunsQuery,
};
use crate::{
    auth::{KEY_COOKIE, signed_in_key, to_hex},
    params::Params,
    state::AppState,
};

/// Runs a page lists.
const PAGE: usize = 50;
/// The statuses the filter offers.
const STATUSES: &[&str] = &[
    "queued",
    "running",
    "sleeping",
    "waiting",
    "succeeded",
    "failed",
    "canceled",
];

/// The UI's routes.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/runs/{id}/payload", get(payload))
        .route("/ui/runs/{id}/retry", post(retry))
        .route("/ui/runs/{id}/cancel", post(cancel))
        .route("/ui/runs/{id}/rerun", post(rerun))
        .merge(triggers::router())
        .merge(forms::router())
        .merge(credentials::router())
        .route_layer(middleware::from_fn_with_state(state, signed_in));
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/static/app.js", get(script))
        .route("/ui/static/app.css", get(style))
        .merge(pages)
}

/// A page answering an error: its status and text.
pub(crate) struct UiError {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl UiError {
    pub(crate) fn new(
        status: StatusCode,
        title: &'static str,
        detail: impl Into<String>,
    ) -> UiError {
        UiError {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl From<EngineError> for UiError {
    fn from(err: EngineError) -> Self {
        let (status, title) = match err.class() {
            ErrorClass::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            ErrorClass::Conflict => (StatusCode::CONFLICT, "Not now"),
            ErrorClass::Invalid => (StatusCode::BAD_REQUEST, "Bad request"),
            ErrorClass::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
            ErrorClass::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            ErrorClass::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Server error"),
        };
        let detail = if err.class() == ErrorClass::Internal {
            tracing::error!(error = %err, "a UI request failed");
            "the server failed to answer; its log has the details".to_owned()
        } else {
            err.to_string()
        };
        UiError::new(status, title, detail)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = MessagePage {
            title: self.title.to_owned(),
            detail: self.detail,
            back: "/ui/runs".to_owned(),
            back_label: "Back to the runs".to_owned(),
        };
        (self.status, html(&page)).into_response()
    }
}

pub(crate) fn html(page: &impl askama::Template) -> Html<String> {
    Html(page.render().unwrap_or_else(|err| {
        tracing::error!(error = %err, "a UI page failed to render");
        "<!doctype html><title>Cairn</title><p>This page failed to render.</p>".to_owned()
    }))
}

/// Lets a request through when no key is configured or its sign-in cookie holds one; else a
/// page is sent to sign in first, and a post is refused.
async fn signed_in(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.keys.is_empty()
        || signed_in_key(request.headers()).is_some_and(|key| state.keys.accepts(&key))
    {
        return next.run(request).await;
    }
    if request.method() == axum::http::Method::GET {
        let here = request
            .uri()
            .path_and_query()
            .map_or("/ui/runs", |path| path.as_str());
        return Redirect::to(&format!("/ui/login?next={}", encode(here))).into_response();
    }
    UiError::new(
        StatusCode::UNAUTHORIZED,
        "Sign in first",
        "this server needs an API key: sign in at /ui/login",
    )
    .into_response()
}

/// `GET /ui/runs?workflow=&status=…&from=&to=&q=&cursor=` (`status` repeated for several).
async fn runs(State(state): State<AppState>, uri: axum::http::Uri) -> Result<Response, UiError> {
    let query = RunsQuery::parse(&uri)?;
    let filter = RunFilter {
        limit: PAGE,
        ..query.filter.clone()
    };
    let runs = state.engine.list_run_summaries(&filter).await?;
    let next = (runs.len() == PAGE).then(|| query.page_after(&runs[PAGE - 1].run_id));
    let workflow = query.filter.workflow.as_ref();
    let page = RunsPage {
        runs: runs.iter().map(Into::into).collect(),
        workflows: state
            .engine
            .registry()
            .workflows()
            .map(|info| (info.slug.clone(), Some(&info.slug) == workflow))
            .collect(),
        statuses: STATUSES
            .iter()
            .map(|name| {
                let chosen = query
                    .filter
                    .statuses
                    .iter()
                    .any(|status| status.as_str() == *name);
                (*name, chosen)
            })
            .collect(),
        from: query.text("from"),
        to: query.text("to"),
        search: query.text("q"),
        next,
    };
    Ok(html(&page).into_response())
}

/// `GET /ui/runs/{id}` (`?notice=` after an action; `?after=N`: the steps after the N-th, at
/// most `pages::STEP_WINDOW` of them).
async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let run_id = parse_run(&id)?;
    let after = params
        .get("after")
        .map(str::trim)
        .filter(|text| !text.is_empty());
    let after = match after {
        None => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            bad_request(format!(
                "after={text:?} is not a step count; follow the page's Load more link"
            ))
        })?,
    };
    let detail = state.engine.get_run(run_id).await?;
    // The page shows the run and its steps, never the log itself: not copied.
    let detail = RunDetailView {
        run: RunView::from(&detail.run),
        steps: detail.steps.iter().map(StepView::from).collect(),
        events: Vec::new(),
    };
    let total = detail.steps.len();
    if after > 0 && after >= total {
        return Err(bad_request(format!(
            "after={after} is past the run's last step: it has {total} steps"
        )));
    }
    let csrf = CsrfToken::of(&headers);
    let notice = params.get("notice").map(str::to_owned);
    let page = run_page(&detail, csrf.token.clone(), notice, after);
    Ok(csrf.set_on(html(&page).into_response()))
}

/// A 400 page.
fn bad_request(detail: String) -> UiError {
    UiError::new(StatusCode::BAD_REQUEST, "Bad request", detail)
}

#[derive(Deserialize)]
struct PayloadQuery {
    part: String,
    step: Option<String>,
}

/// `GET /ui/runs/{id}/payload?part=input|output[&step=KEY]`: the whole JSON, as a download.
async fn payload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<PayloadQuery>,
) -> Result<Response, UiError> {
    let detail = state.engine.get_run(parse_run(&id)?).await?;
    let value = match (&query.step, query.part.as_str()) {
        (None, "input") => Some(detail.run.input.clone()),
        (None, "output") => detail.run.output.clone(),
        (Some(key), part @ ("input" | "output")) => detail
            .steps
            .iter()
            .find(|step| step.key.as_str() == key)
            .and_then(|step| {
                if part == "input" {
                    step.input.clone()
                } else {
                    step.output.clone()
                }
            }),
        _ => None,
    };
    let value = value.ok_or_else(|| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "the run has no such payload",
        )
    })?;
    let disposition = format!("attachment; filename=\"{id}-{}.json\"", query.part);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        serde_json::to_vec_pretty(&value).unwrap_or_default(),
    )
        .into_response())
}

/// `POST /ui/runs/{id}/retry`.
async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    let run_id = parse_run(&id)?;
    state.engine.retry(run_id).await?;
    Ok(Redirect::to(&format!(
        "/ui/runs/{run_id}?notice=Queued+again"
    )))
}

/// `POST /ui/runs/{id}/cancel` (the page's form asks for a confirmation box first).
async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    let run_id = parse_run(&id)?;
    state
        .engine
        .cancel(run_id, "canceled from the web UI")
        .await?;
    Ok(Redirect::to(&format!("/ui/runs/{run_id}?notice=Canceled")))
}

/// `POST /ui/runs/{id}/rerun` (`from`: the step to execute from): to the new run.
async fn rerun(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Redirect, UiError> {
    let original = parse_run(&id)?;
    let from = form.get("from").map(str::to_owned).ok_or_else(|| {
        UiError::new(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "choose the step to rerun from",
        )
    })?;
    let options = StartOptions {
        trigger: Some("rerun".into()),
        ..StartOptions::default()
    };
    let new = state
        .engine
        .rerun_from(original, &StepKey::custom(from), options)
        .await?;
    Ok(Redirect::to(&format!(
        "/ui/runs/{new}?notice=Rerun+of+{original}"
    )))
}

#[derive(Deserialize)]
struct Login {
    key: String,
    next: Option<String>,
}

/// `GET /ui/login?next=`.
async fn login_page(params: Params) -> Html<String> {
    html(&LoginPage {
        next: safe_next(params.get("next")),
        error: None,
    })
}

/// `POST /ui/login`: a right key sets the sign-in cookie and goes on to `next`.
async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Response {
    let next = safe_next(form.next.as_deref());
    if state.keys.is_empty() || state.keys.accepts(form.key.trim().as_bytes()) {
        let cookie = format!(
            "{KEY_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            to_hex(form.key.trim().as_bytes())
        );
        let mut response = Redirect::to(&next).into_response();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    let page = LoginPage {
        next,
        error: Some("That is not one of this server's API keys.".to_owned()),
    };
    (StatusCode::UNAUTHORIZED, html(&page)).into_response()
}

/// Where to go after signing in: a UI path only (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/ui/") && !path.starts_with("//") => path.to_owned(),
        _ => "/ui/runs".to_owned(),
    }
}

pub(crate) fn parse_run(id: &str) -> Result<RunId, UiError> {
    id.parse().map_err(|_| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("{id:?} is not a run id; the runs list links to every run"),
        )
    })
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
}
