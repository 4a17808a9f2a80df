//! `POST /hooks/{token}` (a JSON payload) and `GET /hooks/{token}?field=value…` (the query
//! as the payload: links in emails and chat buttons). The token is the credential, so no API
//! key is asked. `200` with the hook as `hooks resume --json` prints it (its run, step and
//! state); `404` unknown token; `409` resumed or timed out already; `422` a payload that
//! breaks the hook's schema. On every error the run keeps waiting.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use cairn_engine::HookView;
use serde_json::{Map, Value};

use crate::{body::JsonBody, error::ApiError, params::Params, state::AppState};

/// `POST /hooks/{token}`: resumes the hook with the JSON body (`{}` when empty).
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: JsonBody,
) -> Result<Json<HookView>, ApiError> {
    let payload = body.0.unwrap_or_else(|| Value::Object(Map::new()));
    let hook = state.engine.resume_hook(&token, payload).await?;
    Ok(Json(HookView::from(&hook)))
}

/// `GET /hooks/{token}?field=value…`: resumes the hook with the query as an object, each
/// value read as the hook's schema types that field (`true`, `3`), else kept as text. A
/// client that accepts HTML (a browser following a link) gets a small page instead of JSON.
pub(crate) async fn resume_from_query(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let html = wants_html(&headers);
    let outcome = async {
        let hook = state.engine.get_hook(&token).await?;
        let payload = payload_from_query(params.0, &hook.schema);
        state.engine.resume_hook(&token, payload).await
    }
    .await;
    match (outcome, html) {
        (Ok(hook), false) => Json(HookView::from(&hook)).into_response(),
        (Ok(hook), true) => page(
            StatusCode::OK,
            "Thank you",
            &format!("Your answer was recorded; run {} continues.", hook.run_id),
        ),
        (Err(err), false) => ApiError::from(err).into_response(),
        (Err(err), true) => {
            let err = ApiError::from(err);
            page(err.status(), "Not recorded", &err.detail())
        }
    }
}

/// Whether the client prefers a page (it names `text/html` in `Accept`).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The query as a payload: a field the schema types as boolean, integer or number is read as
/// one when it parses; the rest stay text (the schema check names what is still wrong).
fn payload_from_query(query: HashMap<String, String>, schema: &Value) -> Value {
    let fields = query
        .into_iter()
        .map(|(name, text)| {
            let types = field_types(schema, &name);
            let typed = |kind: &str| types.iter().any(|t| t == kind);
            let value = if typed("boolean") && (text == "true" || text == "false") {
                Value::Bool(text == "true")
            } else if (typed("integer") || typed("number"))
                && let Ok(number) = serde_json::from_str::<serde_json::Number>(&text)
            {
                Value::Number(number)
            } else {
                Value::String(text)
            };
            (name, value)
        })
        .collect();
    Value::Object(fields)
}

/// The JSON types the schema allows for the top-level property `name`.
fn field_types(schema: &Value, name: &str) -> Vec<String> {
    match schema.pointer(&format!(
        "/properties/{}",
        name.replace('~', "~0").replace('/', "~1")
    )) {
        Some(property) => match property.get("type") {
            Some(Value::String(kind)) => vec![kind.clone()],
            Some(Value::Array(kinds)) => kinds
                .iter()
                .filter_map(|kind| kind.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// A small HTML page.
pub(crate) fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\
         <h1>{title}</h1><p>{}</p></body></html>",
        escape(message)
    );
    (status, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_values_take_the_schema_types_they_parse_as() {
        let schema = json!({"type": "object", "properties": {
            "approved": {"type": "boolean"},
            "count": {"type": ["integer", "null"]},
            "note": {"type": "string"},
        }});
        let query = HashMap::from([
            ("approved".to_owned(), "true".to_owned()),
            ("count".to_owned(), "3".to_owned()),
            ("note".to_owned(), "42".to_owned()),
            ("other".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(
            payload_from_query(query, &schema),
            json!({"approved": true, "count": 3, "note": "42", "other": "x"})
        );
        let query = HashMap::from([("approved".to_owned(), "yes".to_owned())]);
        assert_eq!(
            payload_from_query(query, &schema),
            json!({"approved": "yes"}),
            "left for the schema check to refuse"
        );
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(
            escape("<b>\"a\" & b</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; b&lt;/b&gt;"
        );
    }
}
