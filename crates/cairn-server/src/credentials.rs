//! `/credentials`: list, get, set (secrets are write-only: no answer ever holds a value),
//! delete, and make one its holder's default. Behind the API key like every route but hooks.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use cairn_core::{DEFAULT_OWNER_NAME, Holder, Scope};
use cairn_engine::{CredentialView, Secret, SetCredential, Violation, Violations};
use cairn_store::CredentialFilter;
use serde_json::{Map, Value};

use crate::{
    body::JsonBody, error::ApiError, params::Params, responses::CredentialList, state::AppState,
};

/// What a `POST /credentials` body looks like, for error messages.
const EXAMPLE: &str = r#"{"key": "slack", "scope": "org", "fields": {"botToken": "xoxb-…"}}"#;

/// `GET /credentials?key=&org=`: `{credentials}`, without values.
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<CredentialList>, ApiError> {
    let filter = CredentialFilter {
        key: params.get("key").map(str::to_owned),
        org: params.get("org").map(str::to_owned),
        ..CredentialFilter::default()
    };
    let credentials = state.engine.list_credentials(&filter).await?;
    Ok(Json(CredentialList { credentials }))
}

/// `GET /credentials/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(state.engine.credential(&id).await?))
}

/// `POST /credentials`: saves a credential (`201`, without its values).
pub(crate) async fn set(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let body = body.required("the credential", EXAMPLE)?;
    let set = parse(&body).map_err(|violations| ApiError::InvalidBody(Violations(violations)))?;
    let saved = state.engine.set_credential(set).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `DELETE /credentials/{id}`: `204`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_credential(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /credentials/{id}/default`: makes it its holder's default for its type.
pub(crate) async fn set_default(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(state.engine.set_default_credential(&id).await?))
}

/// The credential a body asks for, or every way it breaks the request's shape (by JSON path).
pub(crate) fn parse(body: &Value) -> Result<SetCredential, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut violation = |path: &str, message: &str| {
        violations.push(Violation {
            path: path.to_owned(),
            message: message.to_owned(),
        });
    };
    let empty = Map::new();
    let object = body.as_object().unwrap_or_else(|| {
        violation("", &format!("the body is an object, such as {EXAMPLE}"));
        &empty
    });
    let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
    for name in ["key", "scope", "org", "project", "user", "replace"] {
        if object.get(name).is_some_and(|value| !value.is_string()) {
            violation(&format!("/{name}"), "must be a string");
        }
    }
    let key = text("key").unwrap_or_default();
    if key.is_empty() {
        violation("/key", "required: the credential type, e.g. \"slack\"");
    }
    let scope = match text("scope").as_deref().map(Scope::parse) {
        None => Scope::Organization,
        Some(Some(scope)) => scope,
        Some(None) => {
            violation("/scope", "must be org, organization, project or user");
            Scope::Organization
        }
    };
    let user = text("user");
    if scope == Scope::User && user.is_none() {
        violation("/user", "required for a user-scoped credential");
    }
    if object
        .get("isDefault")
        .is_some_and(|value| !value.is_boolean())
    {
        violation("/isDefault", "must be true or false");
    }
    let mut fields = BTreeMap::new();
    match object.get("fields") {
        Some(Value::Object(given)) if !given.is_empty() => {
            for (name, value) in given {
                match value.as_str() {
                    Some(value) if !value.is_empty() => {
                        fields.insert(name.clone(), Secret::new(value));
                    }
                    _ => violation(&format!("/fields/{name}"), "must be a non-empty string"),
                }
            }
        }
        _ => violation(
            "/fields",
            "required: an object of the credential's fields, each a string",
        ),
    }
    for name in object.keys() {
        let known = [
            "key",
            "scope",
            "org",
            "project",
            "user",
            "fields",
            "isDefault",
            "replace",
        ];
        if !known.contains(&name.as_str()) {
            violation(
                &format!("/{name}"),
                &format!("unknown field; the fields are {}", known.join(", ")),
            );
        }
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(SetCredential {
        key,
        holder: Holder {
            scope,
            org: text("org").unwrap_or_else(|| DEFAULT_OWNER_NAME.to_owned()),
            project: (scope == Scope::Project)
                .then(|| text("project").unwrap_or_else(|| DEFAULT_OWNER_NAME.to_owned())),
            user: user.filter(|_| scope == Scope::User),
        },
        fields,
        is_default: object.get("isDefault").and_then(Value::as_bool) == Some(true),
        id: text("replace"),
        expires_at_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    #[test]
    fn a_body_is_read_or_refused_with_each_path() {
        let set = parse(&json!({"key": "slack", "scope": "project", "project": "web", "fields": {"botToken": "x"}, "isDefault": true}))
            .expect("valid");
        assert_eq!(set.holder.project.as_deref(), Some("web"));
        assert_eq!(set.holder.org, "default");
        assert!(set.is_default);
        let violations =
            parse(&json!({"scope": "team", "fields": {"a": 1}, "extra": 1})).expect_err("invalid");
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["/key", "/scope", "/fields/a", "/extra"]);
        let user = parse(&json!({"key": "k", "scope": "user", "fields": {"t": "x"}}))
            .expect_err("no user");
        assert_eq!(user[0].path, "/user");
    }
}
