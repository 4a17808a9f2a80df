//! `/credentials/connect/{key}` and `/credentials/callback/{key}`: a person connects their
//! account at a provider (authorization code with PKCE) as their user-scoped credential.
//! The application's backend calls `connect` with the API key and sends its user to the
//! `Location` it answers; the provider sends the person's browser back to `callback`, which
//! is open (the sealed `state` is what protects it) and answers a small page, or the
//! credential as JSON for `Accept: application/json`; never a token.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use cairn_core::DEFAULT_OWNER_NAME;
use cairn_engine::{EngineError, OAuthError};

use crate::{
    error::ApiError, hooks::page, params::Params, responses::AuthorizeUrl, state::AppState,
};

/// `GET /credentials/connect/{key}?user=…&org=…`: `302` to the provider's authorize URL,
/// or `200 {"authorizeUrl"}` for `Accept: application/json`.
pub(crate) async fn connect(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let user = params.get("user").ok_or_else(|| {
        ApiError::BadRequest(format!(
            "connecting a credential needs the user it is for: \
             /credentials/connect/{key}?user=<user>&org=<org>"
        ))
    })?;
    let org = params.get("org").unwrap_or(DEFAULT_OWNER_NAME);
    let engine = &state.engine;
    let redirect_uri = engine.oauth_redirect_uri(&key);
    let url = engine.oauth_authorize_url(&key, org, user, &redirect_uri)?;
    if wants_json(&headers) {
        let body = AuthorizeUrl {
            authorize_url: url.into(),
        };
        return Ok(Json(body).into_response());
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, String::from(url))]).into_response())
}

/// `GET /credentials/callback/{key}?code=…&state=…` (or `?error=…` when the person
/// declined): stores the tokens as the user's credential.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let json = wants_json(&headers);
    let outcome = async {
        if let Some(error) = params.get("error") {
            return Err(ApiError::from(EngineError::from(OAuthError::Refused {
                key: key.clone(),
                error: error.to_owned(),
                description: params.get("error_description").map(str::to_owned),
            })));
        }
        let (Some(code), Some(sealed)) = (params.get("code"), params.get("state")) else {
            return Err(ApiError::BadRequest(format!(
                "the provider's redirect lacks code or state; start again from \
                 /credentials/connect/{key}"
            )));
        };
        let engine = &state.engine;
        let redirect_uri = engine.oauth_redirect_uri(&key);
        Ok(engine
            .oauth_callback(&key, code, sealed, &redirect_uri)
            .await?)
    }
    .await;
    match (outcome, json) {
        (Ok(view), true) => Json(view).into_response(),
        (Ok(view), false) => page(
            StatusCode::OK,
            "Connected",
            &format!(
                "Your {key} account is connected for {} in {}. You can close this page.",
                view.holder.user.as_deref().unwrap_or_default(),
                view.holder.org
            ),
        ),
        (Err(err), true) => err.into_response(),
        (Err(err), false) => page(err.status(), "Not connected", &err.detail()),
    }
}

/// Whether the client asks for JSON (it names `application/json` in `Accept`).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}
