//! `/ui/credentials`: the credentials by type and holder, which are defaults, and the names
//! of their fields, never a value; a write-only form per registered credential type (secret
//! fields are password inputs, never filled in), and Delete (confirmed) and Make default.
//! The form is read as the API's `POST /credentials` body is, so both refuse alike.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use cairn_store::CredentialFilter;
use serde_json::{Map, Value};

use super::{
    UiError,
    csrf::{CheckedForm, CsrfToken},
    form_pages::{CredentialRow, CredentialType, CredentialsPage},
    html,
    pages::encode,
};
use crate::{credentials::parse, params::Params, state::AppState};

/// The prefix of a credential field's control name (`field.botToken`).
const FIELD: &str = "field.";

/// The credential pages' routes (behind the UI's sign-in).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/credentials", get(list).post(set))
        .route("/ui/credentials/{id}/delete", post(delete))
        .route("/ui/credentials/{id}/default", post(make_default))
}

/// `GET /ui/credentials` (`?notice=` after an action).
async fn list(
    State(state): State<AppState>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let listed = state
        .engine
        .list_credentials(&CredentialFilter::default())
        .await?;
    let credentials = listed
        .iter()
        .map(|credential| CredentialRow {
            id: credential.id.clone(),
            link: encode(&credential.id),
            key: credential.key.clone(),
            holder: credential.holder.to_string(),
            is_default: credential.is_default,
            fields: credential.fields.join(", "),
            updated_at: credential.updated_at.clone(),
        })
        .collect();
    let types = state
        .engine
        .registry()
        .credentials()
        .map(|credential| CredentialType {
            key: credential.key().to_owned(),
            fields: credential
                .fields()
                .iter()
                .map(|(name, field)| (name.clone(), field.is_secret(), field.is_required()))
                .collect(),
        })
        .collect();
    let csrf = CsrfToken::of(&headers);
    let page = CredentialsPage {
        credentials,
        types,
        csrf: csrf.token.clone(),
        notice: params.get("notice").map(str::to_owned),
    };
    Ok(csrf.set_on(html(&page).into_response()))
}

/// `POST /ui/credentials`: saves a credential from its type's form.
async fn set(State(state): State<AppState>, form: CheckedForm) -> Result<Redirect, UiError> {
    let text = |name: &str| {
        form.get(name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(Value::from)
    };
    let mut body = Map::new();
    for name in ["key", "scope", "org", "project", "user"] {
        if let Some(value) = text(name) {
            body.insert(name.to_owned(), value);
        }
    }
    body.insert("isDefault".into(), Value::Bool(text("default").is_some()));
    let fields: Map<String, Value> = form
        .pairs
        .iter()
        .filter_map(|(name, value)| {
            let field = name.strip_prefix(FIELD)?;
            (!value.is_empty()).then(|| (field.to_owned(), Value::from(value.as_str())))
        })
        .collect();
    body.insert("fields".into(), Value::Object(fields));
    let set = parse(&Value::Object(body)).map_err(|violations| {
        let said: Vec<String> = violations
            .iter()
            .map(|violation| format!("{}: {}", violation.path, violation.message))
            .collect();
        UiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not saved",
            format!("the credential was not saved: {}", said.join("; ")),
        )
    })?;
    let saved = state.engine.set_credential(set).await?;
    Ok(Redirect::to(&format!(
        "/ui/credentials?notice={}",
        encode(&format!("Saved {} ({})", saved.id, saved.key))
    )))
}

/// `POST /ui/credentials/{id}/delete` (the form asks for a confirmation box first).
async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    state.engine.delete_credential(&id).await?;
    Ok(Redirect::to(&format!(
        "/ui/credentials?notice={}",
        encode(&format!("Deleted {id}"))
    )))
}

/// `POST /ui/credentials/{id}/default`.
async fn make_default(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Result<Redirect, UiError> {
    let made = state.engine.set_default_credential(&id).await?;
    Ok(Redirect::to(&format!(
        "/ui/credentials?notice={}",
        encode(&format!(
            "{} is the default {} of {}",
            made.id, made.key, made.holder
        ))
    )))
}
