//! A generic HTTP request: any method, URL, headers and a JSON or text body; the answer's
//! status, headers and body. An `http` credential, when one resolves, authenticates it
//! (bearer token, basic auth, or an API key header); without one the request goes out as is.

use std::{collections::BTreeMap, sync::LazyLock};

use cairn_engine::{Action, ActionCtx, Credential, Field, Registry, ResolvedCredential};
use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ACTION_TIMEOUT, config, retry_policy,
    transport::{Failure, excerpt, send},
};

/// The service's name in messages.
const SERVICE: &str = "the HTTP server";
/// The header an `apiKey` goes in when the credential names none.
const DEFAULT_API_KEY_HEADER: &str = "X-API-Key";

// --- Credential -------------------------------------------------------------------------

/// How to authenticate a request, every field optional: `bearerToken`; or `basicUser` (and
/// `basicPassword`); and/or `apiKey` (in the header `apiKeyHeader`, default `X-API-Key`).
/// The action runs without one.
pub static HTTP: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("http")
        .description("Authentication for generic HTTP requests (all fields optional)")
        .field(
            "bearerToken",
            Field::secret()
                .optional()
                .description("Sent as `Authorization: Bearer <token>`"),
        )
        .field(
            "basicUser",
            Field::text()
                .optional()
                .description("The user name of HTTP basic authentication"),
        )
        .field(
            "basicPassword",
            Field::secret()
                .optional()
                .description("The password of HTTP basic authentication"),
        )
        .field(
            "apiKeyHeader",
            Field::text()
                .optional()
                .description("The header the API key goes in (default X-API-Key)"),
        )
        .field(
            "apiKey",
            Field::secret()
                .optional()
                .description("An API key, sent in the header apiKeyHeader"),
        )
});

// --- Inputs and outputs -----------------------------------------------------------------

/// An HTTP method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
}

impl From<Method> for reqwest::Method {
    fn from(method: Method) -> Self {
        match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            Method::Options => reqwest::Method::OPTIONS,
        }
    }
}

/// A request or response body: `{"json": …}` or `{"text": "…"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// JSON (sent with `Content-Type: application/json` unless a header says otherwise).
    Json(Value),
    /// Text (sent with `Content-Type: text/plain; charset=utf-8` unless a header says
    /// otherwise).
    Text(String),
}

/// A request to make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// The method (default GET).
    #[serde(default)]
    pub method: Method,
    /// The absolute `http` or `https` URL.
    #[schemars(url)]
    pub url: String,
    /// Headers to send. They are recorded with the step: put secrets in the `http`
    /// credential, not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Statuses outside 2xx to return instead of failing the step (e.g. `[404]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_status: Vec<u16>,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            allow_status: Vec::new(),
        }
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case (repeated headers joined with ", ").
    pub headers: BTreeMap<String, String>,
    /// The body: JSON when the answer says it is JSON, else text (invalid UTF-8 replaced);
    /// absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

// --- Actions ----------------------------------------------------------------------------

/// Makes one HTTP request. Credential: [`HTTP`], optional.
pub static REQUEST: LazyLock<Action<Request, Response>> = LazyLock::new(|| {
    Action::new("http-request")
        .name("HTTP request")
        .description(
            "Make an HTTP request and return the status, headers and body (JSON or text); \
             statuses outside 2xx fail the step unless allowed",
        )
        .optional_credential(&HTTP)
        .timeout(ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: Request, ctx: ActionCtx| async move {
            request(input, &ctx).await.map_err(Failure::into_action)
        })
});

/// Registers the HTTP action (and so its credential type).
pub fn register(registry: Registry) -> Registry {
    registry.action(&REQUEST)
}

async fn request(input: Request, ctx: &ActionCtx) -> Result<Response, Failure> {
    let config = config::of(ctx)?;
    let url = reqwest::Url::parse(&input.url)
        .map_err(|err| Failure::Invalid(format!("url {:?} is not a URL: {err}", input.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::Invalid(format!(
            "url {:?} is not http or https; only those are supported",
            input.url
        )));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let (name, value) = header(name, value)
            .ok_or_else(|| Failure::Invalid(format!("header {name:?} is not a valid header")))?;
        headers.append(name, value);
    }
    let mut request = config.client.request(input.method.into(), url);
    match input.body {
        Some(Body::Json(json)) => {
            default_content_type(&mut headers, "application/json");
            let bytes =
                serde_json::to_vec(&json).map_err(|err| Failure::Invalid(err.to_string()))?;
            request = request.body(bytes);
        }
        Some(Body::Text(text)) => {
            default_content_type(&mut headers, "text/plain; charset=utf-8");
            request = request.body(text);
        }
        None => {}
    }
    if let Some(credential) = ctx.optional_credential(&HTTP) {
        authenticate(&mut headers, credential)?;
    }
    let reply = send(ctx, &config, SERVICE, request.headers(headers)).await?;
    let allowed = reply.status.is_success() || input.allow_status.contains(&reply.status.as_u16());
    if !allowed {
        let detail = format!(
            "{} (add {} to allow_status to take it as an answer)",
            excerpt(&reply.body),
            reply.status.as_u16()
        );
        return Err(reply.status_failure(SERVICE, detail));
    }
    Ok(Response {
        status: reply.status.as_u16(),
        headers: response_headers(&reply.headers),
        body: response_body(reply.status, &reply.headers, reply.body),
    })
}

/// Adds the credential's authentication: its headers replace the input's.
fn authenticate(headers: &mut HeaderMap, credential: &ResolvedCredential) -> Result<(), Failure> {
    let unusable = |field: &str| {
        Failure::Invalid(format!(
            "the `http` credential {} has a {field} that is not a valid header value; set it \
             again with `credentials set http --field {field}=@env:VAR`",
            credential.id()
        ))
    };
    if let Some(token) = credential.get("bearerToken") {
        let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| unusable("bearerToken"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    } else if let Some(user) = credential.get("basicUser") {
        let password = credential.get("basicPassword").map(|p| p.expose());
        let mut value = basic_auth(user.expose(), password).map_err(|_| unusable("basicUser"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    if let Some(key) = credential.get("apiKey") {
        let name = credential
            .get("apiKeyHeader")
            .map_or(DEFAULT_API_KEY_HEADER, |name| name.expose());
        let name = HeaderName::try_from(name).map_err(|_| unusable("apiKeyHeader"))?;
        let mut value = HeaderValue::try_from(key.expose()).map_err(|_| unusable("apiKey"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(())
}

/// An `Authorization: Basic …` value (RFC 7617).
fn basic_auth(user: &str, password: Option<&str>) -> Result<HeaderValue, InvalidHeaderValue> {
    use base64::Engine as _;
    let pair = format!("{user}:{}", password.unwrap_or_default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    HeaderValue::try_from(format!("Basic {encoded}"))
}

fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::try_from(name).ok()?,
        HeaderValue::try_from(value).ok()?,
    ))
}

fn default_content_type(headers: &mut HeaderMap, value: &'static str) {
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static(value));
}

fn response_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        shown
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    shown
}

fn response_body(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Option<Body> {
    if body.is_empty() || status == StatusCode::NO_CONTENT {
        return None;
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    if is_json && let Ok(json) = serde_json::from_slice(&body) {
        return Some(Body::Json(json));
    }
    Some(Body::Text(String::from_utf8_lossy(&body).into_owned()))
}
