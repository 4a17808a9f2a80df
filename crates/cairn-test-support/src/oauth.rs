//! A fake OAuth 2.0 authorization server on a loopback port (feature `oauth`), strict where
//! a real one is: `GET /authorize` takes only its client, `response_type=code` and an S256
//! PKCE challenge, and redirects to the redirect URI with a one-time code and the state;
//! `POST /token` checks the client id and secret (request body), and for
//! `grant_type=authorization_code` the code, the redirect URI and that the `code_verifier`
//! hashes to the challenge; for `grant_type=refresh_token` that the token is one it handed
//! out. Anything else is a `400` with an OAuth error. Tests read what it was asked and tell
//! it how to answer next ([`FakeProvider::refuse_refresh`], [`FakeProvider::fail_with`]).
//!
//! The tokens it hands out start with [`TOKEN_MARKER`], so a test can search answers and logs
//! for a leaked token.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// Every token the fake server hands out starts with this.
pub const TOKEN_MARKER: &str = "tok-SECRET-";

/// One request the token endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// Its `grant_type`.
    pub grant_type: String,
    /// The status answered.
    pub status: u16,
    /// The OAuth error answered, if any (`invalid_grant`, with what was wrong).
    pub error: Option<String>,
}

/// A code handed out, waiting to be exchanged.
struct Pending {
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, Pending>,
    refresh_tokens: Vec<String>,
    issued: u32,
    requests: Vec<TokenRequest>,
    refuse_refresh: bool,
    fail_with: Option<u16>,
    expires_in: u64,
}

#[derive(Clone)]
struct Shared {
    client_id: String,
    client_secret: String,
    inner: Arc<Mutex<Inner>>,
}

/// The running fake server; stops when dropped.
pub struct FakeProvider {
    base: String,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Serves on an ephemeral loopback port for the client `client_id` with `client_secret`;
    /// access tokens it hands out last `expires_in` seconds.
    pub async fn start(client_id: &str, client_secret: &str, expires_in: u64) -> FakeProvider {
        let shared = Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                expires_in,
                ..Inner::default()
            })),
        };
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake provider serves");
        });
        FakeProvider { base, shared, task }
    }

    /// `http://127.0.0.1:<port>/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base)
    }

    /// `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// The token endpoint's requests so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.inner().requests.clone()
    }

    /// From now on, refresh requests are refused with `400 invalid_grant`.
    pub fn refuse_refresh(&self) {
        self.inner().refuse_refresh = true;
    }

    /// From now on, the token endpoint answers every request with `status` (e.g. 503), or
    /// normally again with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.inner().fail_with = status;
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Params = HashMap<String, String>;

/// `GET /authorize`: a person who approves at once.
async fn authorize(State(shared): State<Shared>, Query(params): Query<Params>) -> Response {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let problems = [
        (param("client_id") != shared.client_id, "unknown client_id"),
        (
            param("response_type") != "code",
            "response_type must be code",
        ),
        (
            param("code_challenge_method") != "S256",
            "code_challenge_method must be S256",
        ),
        (param("code_challenge").is_empty(), "no code_challenge"),
        (param("redirect_uri").is_empty(), "no redirect_uri"),
        (param("state").is_empty(), "no state"),
    ];
    if let Some((_, problem)) = problems.iter().find(|(bad, _)| *bad) {
        return (StatusCode::BAD_REQUEST, *problem).into_response();
    }
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.issued += 1;
    let code = format!("code-{}", inner.issued);
    let redirect_uri = param("redirect_uri");
    inner.codes.insert(
        code.clone(),
        Pending {
            challenge: param("code_challenge"),
            redirect_uri: redirect_uri.clone(),
        },
    );
    let location = format!(
        "{redirect_uri}?code={code}&state={}",
        encode(&param("state"))
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `POST /token`.
async fn token(State(shared): State<Shared>, Form(form): Form<Params>) -> Response {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let grant_type = field("grant_type");
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = if let Some(status) = inner.fail_with {
        Err((status, "temporarily_unavailable".to_owned()))
    } else if field("client_id") != shared.client_id
        || field("client_secret") != shared.client_secret
    {
        Err((401, "invalid_client".to_owned()))
    } else {
        match grant_type.as_str() {
            "authorization_code" => match inner.codes.remove(&field("code")) {
                None => Err((400, "invalid_grant: unknown or used code".to_owned())),
                Some(pending) if pending.redirect_uri != field("redirect_uri") => {
                    Err((400, "invalid_grant: redirect_uri differs".to_owned()))
                }
                Some(pending) if challenge(&field("code_verifier")) != pending.challenge => Err((
                    400,
                    "invalid_grant: code_verifier does not match".to_owned(),
                )),
                Some(_) => Ok(()),
            },
            "refresh_token" if inner.refuse_refresh => {
                Err((400, "invalid_grant: refresh token revoked".to_owned()))
            }
            "refresh_token" if !inner.refresh_tokens.contains(&field("refresh_token")) => {
                Err((400, "invalid_grant: unknown refresh token".to_owned()))
            }
            "refresh_token" => Ok(()),
            _ => Err((400, "unsupported_grant_type".to_owned())),
        }
    };
    let (status, body) = match outcome {
        Ok(()) => {
            inner.issued += 1;
            let refresh = format!("{TOKEN_MARKER}refresh-{}", inner.issued);
            inner.refresh_tokens.push(refresh.clone());
            let body = json!({
                "access_token": format!("{TOKEN_MARKER}access-{}", inner.issued),
                "refresh_token": refresh,
                "token_type": "bearer",
                "expires_in": inner.expires_in,
            });
            (200, body)
        }
        Err((status, error)) => {
            let (code, description) = error.split_once(": ").unwrap_or((&error, ""));
            let body = json!({"error": code, "error_description": description});
            (status, body)
        }
    };
    inner.requests.push(TokenRequest {
        grant_type,
        status,
        error: body["error"].as_str().map(|code| {
            let description = body["error_description"].as_str().unwrap_or_default();
            format!("{code}: {description}")
        }),
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

/// The S256 challenge of `verifier`.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Percent-encodes a query value (the state is base64url, so only a few signs need it).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
