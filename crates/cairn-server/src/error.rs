//! Every error the API answers, as RFC 9457 problem details (`application/problem+json`):
//! one enum, mapped to a status and a body in one place. Engine errors take their status from
//! the engine's [`ErrorClass`]; internal errors are logged and answered without details (no
//! stack traces, no SQL).

use std::time::Duration;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cairn_engine::{EngineError, ErrorClass, OAuthError, VerifyError, Violations, WebhookError};
use schemars::JsonSchema;
use serde::Serialize;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The body is not JSON.
    #[error(
        "the body is not valid JSON: {message} at line {line}, column {column}; send one JSON value"
    )]
    MalformedJson {
        /// serde's message, without the position.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The request has no body where one is needed.
    #[error("the request has no body; send {what} as JSON (e.g. {example})")]
    EmptyBody {
        /// What the body should hold.
        what: &'static str,
        /// A valid body.
        example: &'static str,
    },
    /// The body is over the payload limit.
    #[error(
        "the body is over the payload limit of {limit} bytes; send less (the server's \
         --max-payload-bytes sets the limit)"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON by its content type.
    #[error("content type {found:?} is not accepted; send the body as application/json")]
    UnsupportedMediaType {
        /// The content type sent.
        found: String,
    },
    /// A body field does not have the shape the route needs.
    #[error("the body does not match what this route takes: {0}")]
    InvalidBody(Violations),
    /// A query parameter or header is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No or a wrong API key.
    #[error(
        "this route needs an API key: send `Authorization: Bearer <key>` with one of the \
         server's keys (CAIRN_API_KEYS or --api-key-file)"
    )]
    Unauthorized,
    /// A run id that is not one (so no run has it).
    #[error("no run has id {0:?}; run ids are UUIDs, as `GET /runs` lists them")]
    MalformedRunId(String),
    /// No such route.
    #[error("no route {0}; the crate docs of cairn-server list the routes there are")]
    NoRoute(String),
    /// The route exists, not with this method.
    #[error("{0} is not a route; the path exists with another method")]
    WrongMethod(String),
    /// A webhook delivery started nothing.
    #[error(transparent)]
    Webhook(WebhookError),
    /// The request took longer than the server allows.
    #[error("the request took longer than {} and was stopped; nothing it had not yet committed was kept", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// A problem details body (RFC 9457).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Problem<'a> {
    /// A URI naming the kind of problem (`urn:cairn:problem:<slug>`).
    #[serde(rename = "type")]
    kind: String,
    /// What kind of problem, in words.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What was wrong with this request and what to do.
    detail: String,
    /// For schema violations: each value that breaks the schema.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError<'a>>,
}

/// One schema violation: the JSON pointer of the value and the rule it breaks.
#[derive(Debug, Serialize, JsonSchema)]
struct FieldError<'a> {
    /// The JSON pointer of the value (`/email`).
    path: &'a str,
    /// The rule it breaks.
    message: &'a str,
}

impl ApiError {
    /// The status, a short stable slug for `type`, and the title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Engine(err) | ApiError::Webhook(WebhookError::Engine(err)) => {
                classify_engine(err)
            }
            ApiError::Webhook(err) => classify_webhook(err),
            ApiError::MalformedJson { .. } => {
                (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
            }
            ApiError::EmptyBody { .. } => (StatusCode::BAD_REQUEST, "empty-body", "Empty body"),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::InvalidBody(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema-violation",
                "The payload does not match its schema",
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::NoRoute(_) | ApiError::MalformedRunId(_) => {
                (StatusCode::NOT_FOUND, "not-found", "Not found")
            }
            ApiError::WrongMethod(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
            ),
        }
    }

    /// The status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        self.classify().0
    }

    /// How a webhook delivery refused with this error is logged: its status, slug and a
    /// reason that holds no body value and no secret (schema violations by JSON path only,
    /// internal failures not described).
    pub(crate) fn delivery_outcome(&self) -> (StatusCode, &'static str, String) {
        let (status, slug, _) = self.classify();
        let reason = match self {
            ApiError::Engine(err) | ApiError::Webhook(WebhookError::Engine(err)) => {
                match violations(err) {
                    Some(violations) => {
                        let paths: Vec<&str> = violations
                            .0
                            .iter()
                            .map(|violation| violation.path.as_str())
                            .collect();
                        format!(
                            "the input breaks the workflow's schema at {}",
                            paths.join(", ")
                        )
                    }
                    None if matches!(
                        err.class(),
                        ErrorClass::Internal | ErrorClass::Unavailable
                    ) =>
                    {
                        "the run could not be started; the server's log says why".to_owned()
                    }
                    None => err.to_string(),
                }
            }
            ApiError::Webhook(
                WebhookError::Secrets { .. } | WebhookError::Verify(VerifyError::BadSecret(_)),
            ) => "the endpoint's signing secret is not set or cannot be read; the server's log \
                  says why"
                .to_owned(),
            other => other.to_string(),
        };
        (status, slug, reason)
    }

    /// What the client is told: internal failures are logged here and not described.
    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Engine(err) | ApiError::Webhook(WebhookError::Engine(err)) => {
                engine_detail(err)
            }
            ApiError::Webhook(
                err @ (WebhookError::Secrets { .. }
                | WebhookError::Verify(VerifyError::BadSecret(_))),
            ) => {
                tracing::error!(error = %err, "a webhook endpoint cannot verify deliveries");
                "the endpoint cannot verify deliveries yet; the server's log says why".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// What the client is told of an engine error: internal failures are logged, not described.
fn engine_detail(err: &EngineError) -> String {
    match err {
        // Configuration and provider failures: no secret in them, and the caller needs them.
        err @ EngineError::OAuth(_) => {
            tracing::warn!(error = %err, "OAuth failed");
            err.to_string()
        }
        err if err.class() == ErrorClass::Internal => {
            tracing::error!(error = %err, "request failed");
            "the server failed to answer; its log has the details".to_owned()
        }
        err if err.class() == ErrorClass::Unavailable => {
            tracing::warn!(error = %err, "store unavailable");
            "the store is unavailable; try again shortly".to_owned()
        }
        other => other.to_string(),
    }
}

/// The status, slug and title of an engine error.
fn classify_engine(err: &EngineError) -> (StatusCode, &'static str, &'static str) {
    match err {
        EngineError::OAuth(OAuthError::Unreachable { .. } | OAuthError::BadResponse { .. }) => (
            StatusCode::BAD_GATEWAY,
            "oauth-provider",
            "The OAuth provider failed",
        ),
        _ => match err.class() {
            ErrorClass::Invalid if violations(err).is_some() => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema-violation",
                "The payload does not match its schema",
            ),
            ErrorClass::Invalid => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ErrorClass::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ErrorClass::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "The request conflicts with the current state",
            ),
            ErrorClass::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ErrorClass::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The store is unavailable",
            ),
            ErrorClass::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        },
    }
}

/// The status, slug and title of a webhook delivery's refusal (the slugs the issue names).
fn classify_webhook(err: &WebhookError) -> (StatusCode, &'static str, &'static str) {
    match err {
        WebhookError::UnknownEndpoint { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
        WebhookError::Verify(VerifyError::MissingSignature { .. }) => (
            StatusCode::UNAUTHORIZED,
            "missing_signature",
            "The delivery is not signed",
        ),
        WebhookError::Verify(VerifyError::TimestampOutOfTolerance { .. }) => (
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_tolerance",
            "The delivery's timestamp is out of tolerance",
        ),
        WebhookError::Verify(VerifyError::InvalidSignature { .. }) => (
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "The delivery's signature is invalid",
        ),
        WebhookError::Verify(VerifyError::BadSecret(_)) | WebhookError::Secrets { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook-secret-unavailable",
            "The endpoint cannot verify deliveries",
        ),
        WebhookError::NotJson { .. } => {
            (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
        }
        WebhookError::Transform(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "transform-refused",
            "The webhook source refused the delivery",
        ),
        WebhookError::Engine(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        ),
    }
}

/// The schema violations an engine error carries.
pub(crate) fn violations(err: &EngineError) -> Option<&Violations> {
    match err {
        EngineError::InvalidInput { violations, .. }
        | EngineError::InvalidPayload { violations, .. }
        | EngineError::InvalidSchedule { violations, .. } => Some(violations),
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.classify();
        let detail = self.detail();
        let listed = match &self {
            ApiError::Engine(err) | ApiError::Webhook(WebhookError::Engine(err)) => violations(err),
            ApiError::InvalidBody(violations) => Some(violations),
            _ => None,
        };
        let errors = listed
            .map(|violations| {
                violations
                    .0
                    .iter()
                    .map(|violation| FieldError {
                        path: &violation.path,
                        message: &violation.message,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let problem = Problem {
            kind: format!("urn:cairn:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use cairn_engine::Violation;

    use super::*;

    #[test]
    fn violations_are_listed_with_their_paths() {
        let err = ApiError::Engine(EngineError::InvalidInput {
            workflow: "w".into(),
            violations: Violations(vec![Violation {
                path: "/email".into(),
                message: "\"x\" is not a \"email\"".into(),
            }]),
        });
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let response = err.into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static(PROBLEM_JSON)
        );
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let err = ApiError::Engine(EngineError::Store(cairn_store::StoreError::Corrupt(
            "SELECT secret FROM runs".into(),
        )));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.detail().contains("SELECT"), "{}", err.detail());
    }
}
