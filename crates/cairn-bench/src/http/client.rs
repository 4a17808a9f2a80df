//! One benchmark client: a keep-alive HTTP/1.1 connection (hyper's own client connection over
//! a `TcpStream` with `TCP_NODELAY`, no pool) that starts the no-op workflow with
//! `POST /workflows/{slug}?wait=…` and checks the answer, as a caller of `serve` would.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use cairn_engine::RunView;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::workload::{Count, WORKFLOW, ensure_succeeded};

/// How long the server is asked to hold each request for the run's end (`?wait=`): far
/// longer than a no-op run takes, so every answer is the ended run (a `202` is an error).
pub const WAIT: &str = "60s";

/// A client's connection to the server, reused for every request it makes.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    path: String,
}

impl Connection {
    /// Opens a connection to `addr` and spawns the task that drives it.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the benchmark's server at {addr}"))?;
        stream
            .set_nodelay(true)
            .context("setting TCP_NODELAY on the client's socket")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("the HTTP/1.1 handshake with the benchmark's server")?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server closes the connection; a failure
            // shows up as the next request's error.
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            host: addr.to_string(),
            path: format!("/workflows/{WORKFLOW}?wait={WAIT}"),
        })
    }

    /// `GET /healthz` (no engine call, no store): the price of the HTTP round trip alone;
    /// returns how long it took. Anything but a `200` is an error.
    pub async fn health(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let request = Request::builder()
            .uri("/healthz")
            .header(header::HOST, self.host.as_str())
            .body(Full::new(Bytes::new()))
            .context("building the request")?;
        let (status, bytes) = self.send(request).await?;
        let took = started.elapsed();
        ensure!(
            status == StatusCode::OK,
            "GET /healthz answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(took)
    }

    /// Sends `request` once the connection is ready; returns the answer's status and body.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender
            .ready()
            .await
            .context("the connection to the benchmark's server closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("sending a request to the benchmark's server")?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the server's answer")?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Starts the workflow with input `n` and waits for its answer; returns how long that
    /// took, from encoding the input to the answer's last byte (its parsing and checks are
    /// not timed). Anything but a `200` with a run that succeeded with output `n` is an
    /// error.
    pub async fn run_one(&mut self, n: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let body = serde_json::to_vec(&Count { n })?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        let (status, bytes) = self.send(request).await?;
        let took = started.elapsed();
        if status != StatusCode::OK {
            bail!(
                "POST /workflows/{WORKFLOW}?wait={WAIT} answered {status} instead of 200 with \
                 the ended run: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let run: RunView = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the answer is not a run: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        ensure_succeeded(run.run_id, run.status, run.error.as_ref())?;
        ensure!(
            run.output == Some(serde_json::json!({ "n": n })),
            "run {} succeeded with output {:?}, not its input {{\"n\": {n}}}",
            run.run_id,
            run.output
        );
        Ok(took)
    }
}
