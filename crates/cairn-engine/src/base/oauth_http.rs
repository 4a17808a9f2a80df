//! OAuth over HTTP: the authorize URL with its PKCE challenge, and the token endpoint's two
//! grants (authorization code with the PKCE verifier, refresh token), through the `oauth2`
//! crate with the workspace's `reqwest` (rustls on ring) as its HTTP client. A 5xx or 429
//! answer counts as the endpoint being unreachable (worth retrying); other refusals are the
//! provider's word. The client follows no redirects (a token endpoint that redirects would
//! have the client's secret sent on).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicErrorResponse, BasicTokenResponse},
    url::Url,
};

use crate::base::{
    oauth::{OAuth, OAuthClient, OAuthError, Tokens},
    vault::Secret,
};

/// How long one request to a token endpoint may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine's HTTP client for OAuth (made on first use), and one lock per credential being
/// refreshed, so steps of this process that need the same expiring token refresh it once.
#[derive(Debug, Default)]
pub(crate) struct OAuthHttp {
    client: OnceLock<Http>,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a request to a token endpoint got no answer worth reading.
#[derive(Debug, thiserror::Error)]
enum Transport {
    /// The request failed (connection, timeout, TLS).
    #[error("{0}")]
    Failed(String),
    /// The endpoint answered with a server error or asked to slow down.
    #[error("it answered HTTP {0}")]
    Status(u16),
}

impl OAuthHttp {
    /// The HTTP client: rustls on ring (installed as the process's provider if none is), no
    /// redirects, a timeout per request.
    fn client(&self) -> &Http {
        self.client.get_or_init(|| {
            // Another part of the process may have installed a provider already: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Http(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .expect("an HTTP client with rustls on ring builds"),
            )
        })
    }

    /// The lock refreshes of credential `id` take turns on.
    pub(crate) fn refresh_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays small.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// Exchanges an authorization code (with the PKCE verifier it was asked for with).
    pub(crate) async fn exchange_code(
        &self,
        client: &OAuthClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, OAuthError> {
        let oauth = basic(client)?.set_redirect_uri(redirect(client, redirect_uri)?);
        let answer = oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(self.client())
            .await;
        tokens(client, answer)
    }

    /// Exchanges a refresh token for a new access token.
    pub(crate) async fn refresh(
        &self,
        client: &OAuthClient,
        refresh_token: &Secret,
    ) -> Result<Tokens, OAuthError> {
        let oauth = basic(client)?;
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let answer = oauth
            .exchange_refresh_token(&refresh_token)
            .request_async(self.client())
            .await;
        tokens(client, answer)
    }
}

/// The URL a person is sent to: the client, the scopes, the redirect URI, `state` and a
/// fresh S256 PKCE challenge; with the verifier the callback needs.
pub(crate) fn authorize_url(
    client: &OAuthClient,
    oauth: &OAuth,
    redirect_uri: &str,
    state: impl FnOnce(&str) -> String,
) -> Result<Url, OAuthError> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state(verifier.secret());
    let (url, _) = basic(client)?
        .set_redirect_uri(redirect(client, redirect_uri)?)
        .authorize_url(|| CsrfToken::new(state))
        .add_scopes(oauth.scope_names().iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    Ok(url)
}

/// The `oauth2` client for `client`: its id and secret sent in the request body (as GitHub,
/// Slack and Google all accept), its endpoints checked.
fn basic(
    client: &OAuthClient,
) -> Result<
    BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    OAuthError,
> {
    let authorize = AuthUrl::new(client.authorize_url.clone())
        .map_err(|err| bad_url(client, "authorize URL", &client.authorize_url, &err))?;
    let token = TokenUrl::new(client.token_url.clone())
        .map_err(|err| bad_url(client, "token URL", &client.token_url, &err))?;
    let mut basic = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri(authorize)
        .set_token_uri(token);
    if let Some(secret) = &client.client_secret {
        basic = basic.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    Ok(basic)
}

fn redirect(client: &OAuthClient, redirect_uri: &str) -> Result<RedirectUrl, OAuthError> {
    RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|err| bad_url(client, "redirect URI", redirect_uri, &err))
}

fn bad_url(client: &OAuthClient, what: &str, url: &str, err: &dyn std::error::Error) -> OAuthError {
    OAuthError::BadUrl {
        key: client.key.clone(),
        what: what.to_owned(),
        url: url.to_owned(),
        why: err.to_string(),
    }
}

/// The tokens of a token endpoint's answer, or what went wrong, without the body (which may
/// hold a token).
fn tokens(
    client: &OAuthClient,
    answer: Result<BasicTokenResponse, RequestTokenError<Transport, BasicErrorResponse>>,
) -> Result<Tokens, OAuthError> {
    let key = client.key.clone();
    match answer {
        Ok(response) => Ok(Tokens {
            access: Secret::new(response.access_token().secret().clone()),
            refresh: response
                .refresh_token()
                .map(|token| Secret::new(token.secret().clone())),
            expires_in: response.expires_in(),
        }),
        Err(RequestTokenError::ServerResponse(refusal)) => Err(OAuthError::Refused {
            key,
            error: refusal.error().to_string(),
            description: refusal.error_description().cloned(),
        }),
        Err(RequestTokenError::Request(transport)) => Err(OAuthError::Unreachable {
            key,
            why: transport.to_string(),
        }),
        Err(RequestTokenError::Parse(err, _body)) => Err(OAuthError::BadResponse {
            key,
            why: format!("it is not the JSON expected (at {})", err.path()),
        }),
        Err(RequestTokenError::Other(why)) => Err(OAuthError::BadResponse { key, why }),
    }
}

/// The `oauth2` crate's HTTP client over the workspace's `reqwest`.
#[derive(Debug)]
struct Http(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = Transport;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Transport>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(self.0.clone(), request))
    }
}

/// Sends `request` with `client`; a 5xx or 429 answer is a [`Transport`] error.
async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Transport::Status(status.as_u16()));
    }
    let mut answer = http_response(status);
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let body = response.bytes().await.map_err(describe)?;
    answer
        .body(body.to_vec())
        .map_err(|err| Transport::Failed(err.to_string()))
}

fn http_response(status: reqwest::StatusCode) -> oauth2::http::response::Builder {
    oauth2::http::Response::builder().status(status.as_u16())
}

/// A request error and its causes, without the URL.
fn describe(err: reqwest::Error) -> Transport {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Transport::Failed(text)
}
