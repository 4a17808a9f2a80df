//! Request bodies: JSON only (415 otherwise), at most the payload limit, enforced while
//! reading (413 as soon as the limit is passed, without buffering the rest), and parse errors
//! with their line and column (400).

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::{HeaderMap, header},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::{error::ApiError, state::AppState};

/// A request's JSON body; `None` when the request has none.
pub(crate) struct JsonBody(pub(crate) Option<Value>);

impl JsonBody {
    /// The body, or a 400 saying what it should hold.
    pub(crate) fn required(
        self,
        what: &'static str,
        example: &'static str,
    ) -> Result<Value, ApiError> {
        self.0.ok_or(ApiError::EmptyBody { what, example })
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_json(&parts.headers, body, state.body_limit)
            .await
            .map(JsonBody)
    }
}

/// Reads and parses a JSON body of at most `limit` bytes.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Option<Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    if let Some(found) = &content_type
        && !is_json(found)
    {
        return Err(ApiError::UnsupportedMediaType {
            found: found.clone(),
        });
    }
    let bytes = read_bytes(headers, body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if content_type.is_none() {
        return Err(ApiError::UnsupportedMediaType {
            found: "(none)".to_owned(),
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| ApiError::MalformedJson {
            message: without_position(&err),
            line: err.line(),
            column: err.column(),
        })
}

/// Reads a body of at most `limit` bytes: refused at once when `Content-Length` says more,
/// else as soon as the bytes read pass it.
pub(crate) async fn read_bytes(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit })
        }
        Err(err) => Err(ApiError::BadRequest(format!(
            "the body could not be read: {err}"
        ))),
    }
}

/// Whether a content type is JSON: `application/json` or `application/<something>+json`,
/// with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// serde_json's message without its trailing " at line L column C".
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_while_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        // No Content-Length: the limit is found while reading.
        let chunks =
            futures::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1_000])));
        let body = Body::from_stream(chunks);
        let err = read_json(&headers, body, 10_000).await.unwrap_err();
        assert!(
            matches!(err, ApiError::TooLarge { limit: 10_000 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn malformed_json_names_its_line_and_column() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let err = read_json(&headers, Body::from("{\n  \"a\": 1,\n}"), 100)
            .await
            .unwrap_err();
        let ApiError::MalformedJson { line, column, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(
            (line, column),
            (3, 1),
            "the trailing comma is found at the brace"
        );
    }
}
