//! A TCP proxy between a client of PostgreSQL (a store, a worker) and its server, to cut,
//! partition and slow their connections: in [`Mode::Pass`] it forwards both ways;
//! [`Mode::Blackhole`] accepts and keeps connections but forwards nothing (the bytes already
//! read, and a side's close, are held and delivered once it heals, late, as TCP's
//! retransmissions deliver them after a partition shorter than its timeouts); [`Mode::Reset`]
//! closes every connection, open or new, as a restarting server would; [`Mode::Delay`]
//! forwards each read after a pause; [`Mode::LoseAnswers`] closes a connection instead of
//! forwarding what the server sends on it, as a connection failing after the server answered.
//! It runs as tasks on the test's tokio runtime.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::JoinHandle,
};

/// What the proxy does with its connections now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Keep every connection, accept new ones, forward nothing until the mode changes.
    Blackhole,
    /// Close every connection and each new one at once.
    Reset,
    /// Forward each chunk read after this pause.
    Delay(Duration),
    /// Forward what clients send; close a connection when its server answers.
    LoseAnswers,
}

/// A proxy to one upstream address; see the module docs. Dropping it closes everything.
pub struct Proxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    mode: watch::Sender<Mode>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`, in
    /// [`Mode::Pass`]). Call it inside the runtime the proxy is to run on.
    pub async fn start(upstream: impl Into<String>) -> Proxy {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (mode, _) = watch::channel(Mode::Pass);
        let accepting = tokio::spawn(accept(listener, upstream, mode.clone()));
        Proxy {
            port,
            mode,
            accepting,
        }
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Closes every open connection and refuses new ones until [`up`](Self::up)
    /// ([`Mode::Reset`]).
    pub fn down(&self) {
        self.set(Mode::Reset);
    }

    /// Forwards again ([`Mode::Pass`]).
    pub fn up(&self) {
        self.set(Mode::Pass);
    }

    /// From now on, closes a connection instead of forwarding its server's answer
    /// ([`Mode::LoseAnswers`]).
    pub fn lose_answers(&self) {
        self.set(Mode::LoseAnswers);
    }

    /// `url` (a PostgreSQL URL on `127.0.0.1:<port>`) pointed at the proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (head, rest) = url
            .split_once("@127.0.0.1:")
            .expect("a URL on 127.0.0.1 with a port");
        let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        format!("{head}@127.0.0.1:{}{tail}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.set(Mode::Reset);
    }
}

async fn accept(listener: TcpListener, upstream: String, mode: watch::Sender<Mode>) {
    while let Ok((client, _)) = listener.accept().await {
        if *mode.borrow() == Mode::Reset {
            drop(client);
            continue;
        }
        tokio::spawn(carry(client, upstream.clone(), mode.subscribe()));
    }
}

/// One connection: once not blackholed, connects upstream and pumps both ways until either
/// side closes or the proxy resets.
async fn carry(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    // A partitioned client's connection is accepted and left unanswered.
    if !matches!(
        mode.wait_for(|now| *now != Mode::Blackhole)
            .await
            .as_deref(),
        Ok(Mode::Pass | Mode::Delay(_) | Mode::LoseAnswers)
    ) {
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::select! {
        () = pump(client_in, server_out, mode.clone(), false) => {}
        () = pump(server_in, client_out, mode, true) => {}
    }
}

/// Copies `from` to `to` as the mode says, until either closes or the proxy resets;
/// `answers`: `from` is the server.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    answers: bool,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read.unwrap_or(0),
            _ = mode.wait_for(|now| *now == Mode::Reset) => return,
        };
        // Held while blackholed, the stream's end too (a side that closes is not heard of
        // across a partition); a reset (or the proxy dropped) closes the connection.
        let pause = match mode
            .wait_for(|now| *now != Mode::Blackhole)
            .await
            .as_deref()
        {
            Ok(Mode::Pass) => Duration::ZERO,
            Ok(Mode::Delay(pause)) => *pause,
            Ok(Mode::LoseAnswers) if !answers => Duration::ZERO,
            _ => return,
        };
        if read == 0 {
            return;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
