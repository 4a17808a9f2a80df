//! The HTTP side of `--server`: requests to a running `serve` with the API key from
//! `CAIRN_API_KEY`, and its answers turned into the CLI's errors. An RFC 9457 problem keeps
//! its `detail` (the engine's own wording, as the local command prints it) and gets the exit
//! code of the engine's error class for its status.

use std::{sync::Once, time::Duration};

use cairn_engine::ErrorClass;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::cli::CliError;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one server.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The server's URL, as given (for messages; it never holds the key).
    base: Url,
    /// `CAIRN_API_KEY`, if set.
    key: Option<String>,
}

/// The part of a problem body the CLI reads.
#[derive(Deserialize)]
struct Problem {
    detail: String,
}

impl Client {
    /// A client of the server at `url`, with the API key from `CAIRN_API_KEY`.
    pub(crate) fn new(url: &str) -> Result<Client, CliError> {
        let base = Url::parse(url)
            .ok()
            .filter(|base| matches!(base.scheme(), "http" | "https") && base.has_host())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--server (or CAIRN_SERVER) {url:?} is not an http:// or https:// URL; give \
                     the address `serve` printed, e.g. http://127.0.0.1:8080"
                ))
            })?;
        static RING: Once = Once::new();
        // rustls needs a crypto provider before the first client; another part of the
        // program may have installed one already, which is as good.
        RING.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| CliError::Failed(format!("cannot make an HTTP client: {err}")))?;
        let key = std::env::var("CAIRN_API_KEY")
            .ok()
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty());
        Ok(Client { http, base, key })
    }

    /// `GET` the path made of `segments`, with `query`, as JSON.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let request = self.request(Method::GET, segments, query);
        self.json(self.send(request).await?).await
    }

    /// `POST` `body` (JSON, if any) to the path made of `segments`, with `headers`; the answer
    /// as JSON.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<T, CliError> {
        let mut request = self.request(Method::POST, segments, &[]);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.json(self.send(request).await?).await
    }

    /// `PUT` `body` (JSON) to the path made of `segments`; the answer as JSON.
    pub(crate) async fn put<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<T, CliError> {
        let request = self.request(Method::PUT, segments, &[]).json(body);
        self.json(self.send(request).await?).await
    }

    /// `DELETE` the path made of `segments` (an answer without a body).
    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<(), CliError> {
        let request = self.request(Method::DELETE, segments, &[]);
        self.send(request).await.map(drop)
    }

    /// Opens the Server-Sent Events at `segments`, after the log entry `last_event_id` when
    /// given.
    pub(crate) async fn stream(
        &self,
        segments: &[&str],
        last_event_id: Option<u64>,
    ) -> Result<Response, CliError> {
        let mut request = self
            .request(Method::GET, segments, &[])
            .header("accept", "text/event-stream");
        if let Some(seq) = last_event_id {
            request = request.header("last-event-id", seq.to_string());
        }
        self.send(request).await
    }

    /// The error a problem (`status`, `detail`) stands for: exit 2 when the request was at
    /// fault, else 1.
    pub(crate) fn problem(&self, status: StatusCode, detail: String) -> CliError {
        if status == StatusCode::UNAUTHORIZED {
            return self.unauthorized();
        }
        let class = match status {
            StatusCode::NOT_FOUND => ErrorClass::NotFound,
            StatusCode::CONFLICT => ErrorClass::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorClass::TooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ErrorClass::Unavailable,
            status if status.is_client_error() => ErrorClass::Invalid,
            _ => ErrorClass::Internal,
        };
        if class.is_caller_error() {
            CliError::Usage(detail)
        } else {
            CliError::Failed(detail)
        }
    }

    /// What a broken connection or stream is reported as.
    pub(crate) fn broken(&self, what: &str, err: &dyn std::error::Error) -> CliError {
        CliError::Failed(format!(
            "{what} from the Cairn server at {} failed: {}",
            self.base,
            chain(err)
        ))
    }

    fn unauthorized(&self) -> CliError {
        CliError::Usage(match self.key {
            None => format!(
                "the Cairn server at {} needs an API key: set CAIRN_API_KEY to one of its keys \
                 (those in the server's CAIRN_API_KEYS or --api-key-file)",
                self.base
            ),
            Some(_) => format!(
                "the Cairn server at {} refused the API key in CAIRN_API_KEY: set CAIRN_API_KEY \
                 to one of its keys (those in the server's CAIRN_API_KEYS or --api-key-file)",
                self.base
            ),
        })
    }

    /// A request for the path made of `segments` (each percent-encoded) after the server's
    /// URL, with `query`, carrying the API key.
    fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.http.request(method, url);
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request`; a refusal (any status but 2xx) is turned into its error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let detail = match serde_json::from_str::<Problem>(&text) {
            Ok(problem) => problem.detail,
            Err(_) => format!(
                "the server at {} answered {status} without a Cairn problem body; is --server \
                 (or CAIRN_SERVER) the address `serve` printed?",
                self.base
            ),
        };
        Err(self.problem(status, detail))
    }

    async fn json<T: DeserializeOwned>(&self, response: Response) -> Result<T, CliError> {
        let path = response.url().path().to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.broken("reading an answer", &err))?;
        serde_json::from_slice(&bytes).map_err(|err| {
            CliError::Failed(format!(
                "the answer of the server at {} to {path} is not what this CLI expects ({err}); \
                 are the server and this binary the same version of Cairn?",
                self.base
            ))
        })
    }

    fn unreachable(&self, err: &reqwest::Error) -> CliError {
        if err.is_connect() || err.is_timeout() {
            CliError::Failed(format!(
                "cannot reach the Cairn server at {} ({}): start it with `serve`, or fix \
                 --server / CAIRN_SERVER",
                self.base,
                chain(err)
            ))
        } else {
            self.broken("a request", err)
        }
    }
}

/// An error with its causes, `a: b: c` (reqwest's own text leaves out why).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(result: Result<Client, CliError>) -> String {
        match result {
            Err(CliError::Usage(message)) => message,
            Err(other) => panic!("a usage error (exit 2), not {other:?}"),
            Ok(_) => panic!("refused"),
        }
    }

    #[test]
    fn only_http_urls_name_a_server() {
        for url in [
            "localhost:8080",
            "ftp://127.0.0.1/",
            "127.0.0.1:8080",
            "http://",
        ] {
            let message = usage(Client::new(url));
            assert!(message.contains("http://127.0.0.1:8080"), "{message}");
        }
    }

    #[test]
    fn paths_are_appended_to_the_url_and_encoded() {
        let client = Client::new("http://127.0.0.1:8080/cairn/").expect("a URL");
        let query = [("status", "failed".to_owned())];
        let request = client
            .request(Method::GET, &["hooks", "a/b c"], &query)
            .build()
            .expect("a request");
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:8080/cairn/hooks/a%2Fb%20c?status=failed"
        );
    }

    #[test]
    fn problems_exit_as_the_engine_error_of_their_status_would() {
        let client = Client::new("http://127.0.0.1:8080").expect("a URL");
        for status in [400, 404, 409, 413, 415, 422] {
            let status = StatusCode::from_u16(status).expect("a status");
            assert!(
                matches!(client.problem(status, "why".into()), CliError::Usage(m) if m == "why"),
                "{status} is the caller's fault (exit 2)"
            );
        }
        for status in [500, 502, 503] {
            let status = StatusCode::from_u16(status).expect("a status");
            assert!(
                matches!(client.problem(status, "why".into()), CliError::Failed(m) if m == "why"),
                "{status} is not the caller's fault (exit 1)"
            );
        }
        let refused = client.problem(StatusCode::UNAUTHORIZED, "server text".into());
        assert!(
            matches!(&refused, CliError::Usage(m) if m.contains("CAIRN_API_KEY")),
            "{refused:?}"
        );
    }
}
