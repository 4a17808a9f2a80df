//! The UI's generated forms: starting a run of a workflow from a form made of its input
//! schema (`/ui/workflows/{slug}/start`, "Start like this" with `?from=RUN`), and resuming a
//! pending hook from a form made of its payload schema (`/ui/hooks`,
//! `/ui/runs/{id}/resume?step=KEY`; the hook's token never leaves the server).
//!
//! A form that cannot be read, or whose value breaks the schema, is shown again (422) with
//! the user's values and an error on each field the JSON paths name; nothing is started or
//! resumed. A second resume is a 409 page.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use cairn_core::StepKey;
use cairn_engine::{EngineError, StartOptions, Violations, WorkflowInfo, timestamp};
use cairn_store::{HookFilter, HookRecord, HookState};
use serde_json::Value;

use super::{
    UiError,
    csrf::{CheckedForm, CsrfToken},
    form::Form,
    form_pages::{HookRow, HooksPage, ResumePage, StartPage, WorkflowsPage},
    form_view::rows,
    html,
    pages::encode,
    parse_run,
};
use crate::{error::violations, params::Params, state::AppState};

/// Pending hooks `/ui/hooks` lists.
const HOOKS_LISTED: usize = 200;

/// The generated forms' routes (behind the UI's sign-in).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/workflows", get(workflows))
        .route("/ui/workflows/{slug}/start", get(start_form).post(start))
        .route("/ui/hooks", get(hooks))
        .route("/ui/runs/{id}/resume", get(resume_form).post(resume))
}

/// `GET /ui/workflows`.
async fn workflows(State(state): State<AppState>) -> Response {
    let workflows = state
        .engine
        .registry()
        .workflows()
        .map(|info| {
            (
                info.slug.clone(),
                info.name.clone(),
                info.description.clone(),
            )
        })
        .collect();
    html(&WorkflowsPage { workflows }).into_response()
}

fn workflow<'a>(state: &'a AppState, slug: &str) -> Result<&'a WorkflowInfo, UiError> {
    state
        .engine
        .registry()
        .workflows()
        .find(|info| info.slug == slug)
        .ok_or_else(|| {
            UiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("no workflow has the slug {slug:?}; /ui/workflows lists them"),
            )
        })
}

/// The start page of `info` showing `form`.
fn start_page(info: &WorkflowInfo, form: &Form, like: Option<String>, csrf: String) -> StartPage {
    StartPage {
        slug: info.slug.clone(),
        name: info.name.clone(),
        description: info.description.clone(),
        like,
        rows: rows(form),
        general: form.general.clone(),
        csrf,
    }
}

/// `GET /ui/workflows/{slug}/start?from=RUN`: the form, filled from the run's input.
async fn start_form(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let info = workflow(&state, &slug)?;
    let mut form = Form::of(&info.input_schema);
    let like = match params.get("from") {
        Some(text) => {
            let run_id = parse_run(text)?;
            let run = state.engine.get_run(run_id).await?;
            form = form.filled(&run.run.input);
            Some(run_id.to_string())
        }
        None => None,
    };
    let csrf = CsrfToken::of(&headers);
    let page = start_page(info, &form, like, csrf.token.clone());
    Ok(csrf.set_on(html(&page).into_response()))
}

/// `POST /ui/workflows/{slug}/start`: starts the run and goes to it, or shows the form again.
async fn start(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    posted: CheckedForm,
) -> Result<Response, UiError> {
    let info = workflow(&state, &slug)?;
    let options = StartOptions {
        trigger: Some("ui".into()),
        ..StartOptions::default()
    };
    let page = |form: &Form, csrf| html(&start_page(info, form, None, csrf));
    submit(Form::of(&info.input_schema), posted, page, |input| async {
        let started = state.engine.start_json(&slug, input, options).await?;
        Ok(format!("/ui/runs/{}?notice=Started", started.run_id))
    })
    .await
}

/// Reads the posted form as `empty` says and hands the value to `act` (a start, a resume),
/// then goes where it says; a value that cannot be read, or that `act` refuses for breaking
/// the schema, shows the form again through `page` (422) with the posted values and each
/// error on its field.
async fn submit<Page, Act, Done>(
    empty: Form,
    posted: CheckedForm,
    page: Page,
    act: Act,
) -> Result<Response, UiError>
where
    Page: Fn(&Form, String) -> Html<String>,
    Act: FnOnce(Value) -> Done,
    Done: Future<Output = Result<String, EngineError>>,
{
    let refused = |form: &Form| {
        (StatusCode::UNPROCESSABLE_ENTITY, page(form, posted.token())).into_response()
    };
    let value = match empty.clone().read(&posted.pairs) {
        Ok(value) => value,
        Err(unread) => return Ok(refused(&unread)),
    };
    match act(value).await {
        Ok(location) => Ok(Redirect::to(&location).into_response()),
        Err(err) => match violations(&err) {
            Some(found) => Ok(refused(
                &empty.showing(&posted.pairs).attach(pairs_of(found)),
            )),
            None => Err(err.into()),
        },
    }
}

/// `GET /ui/hooks`: the pending hooks, oldest first.
async fn hooks(State(state): State<AppState>) -> Result<Response, UiError> {
    let filter = HookFilter {
        state: Some(HookState::Pending),
        limit: HOOKS_LISTED,
        ..HookFilter::default()
    };
    let listed = state.engine.list_hooks(&filter).await?;
    let hooks = listed
        .iter()
        .map(|hook| HookRow {
            run_id: hook.run_id.to_string(),
            step: hook.step_key.as_str().to_owned(),
            step_link: encode(hook.step_key.as_str()),
            created_at: timestamp(hook.created_at_ms),
            expires_at: hook
                .timeout_at_ms
                .map_or_else(|| "never".to_owned(), timestamp),
        })
        .collect();
    Ok(html(&HooksPage { hooks }).into_response())
}

/// The pending hook of run `id` at step `?step=`.
async fn pending_hook(state: &AppState, id: &str, params: &Params) -> Result<HookRecord, UiError> {
    let run_id = parse_run(id)?;
    let step = params.get("step").unwrap_or_default();
    let filter = HookFilter {
        run_id: Some(run_id),
        ..HookFilter::default()
    };
    let hooks = state.engine.list_hooks(&filter).await?;
    let hook = hooks
        .into_iter()
        .find(|hook| hook.step_key == StepKey::custom(step))
        .ok_or_else(|| {
            UiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!(
                    "run {run_id} has no hook at step {step:?}; /ui/hooks lists the pending ones"
                ),
            )
        })?;
    if hook.state != HookState::Pending {
        return Err(UiError::new(
            StatusCode::CONFLICT,
            "Not now",
            format!(
                "the hook at step {step:?} is {} already: it resumes once",
                hook.state.as_str()
            ),
        ));
    }
    Ok(hook)
}

fn resume_page(hook: &HookRecord, form: &Form, csrf: String) -> ResumePage {
    ResumePage {
        run_id: hook.run_id.to_string(),
        step: hook.step_key.as_str().to_owned(),
        step_link: encode(hook.step_key.as_str()),
        rows: rows(form),
        general: form.general.clone(),
        csrf,
    }
}

/// `GET /ui/runs/{id}/resume?step=`: the payload form of the step's pending hook.
async fn resume_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let hook = pending_hook(&state, &id, &params).await?;
    let csrf = CsrfToken::of(&headers);
    let page = resume_page(&hook, &Form::of(&hook.schema), csrf.token.clone());
    Ok(csrf.set_on(html(&page).into_response()))
}

/// `POST /ui/runs/{id}/resume?step=`: resumes the hook once and goes to the run.
async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
    posted: CheckedForm,
) -> Result<Response, UiError> {
    let hook = pending_hook(&state, &id, &params).await?;
    let page = |form: &Form, csrf| html(&resume_page(&hook, form, csrf));
    submit(Form::of(&hook.schema), posted, page, |payload| async {
        state.engine.resume_hook(&hook.token, payload).await?;
        Ok(format!("/ui/runs/{}?notice=Resumed", hook.run_id))
    })
    .await
}

/// Schema violations as `(path, message)`.
fn pairs_of(violations: &Violations) -> Vec<(String, String)> {
    violations
        .0
        .iter()
        .map(|violation| (violation.path.clone(), violation.message.clone()))
        .collect()
}
