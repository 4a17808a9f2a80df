//! A TCP proxy between one worker and PostgreSQL, to partition them: in [`Mode::Pass`] it
//! forwards both ways; [`Mode::Blackhole`] accepts and keeps connections but forwards nothing
//! (the bytes already read, and a side's close, are held and delivered once it heals, late,
//! as TCP's retransmissions deliver them after a partition shorter than its timeouts);
//! [`Mode::Reset`] closes every connection, open or new; [`Mode::Delay`] forwards each read
//! after a pause. It runs as tasks on the test's tokio runtime.

use std::{net::SocketAddr, time::Duration};

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
}

/// A proxy to one upstream address; see the module docs. Dropping it closes everything.
pub struct Proxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    mode: watch::Sender<Mode>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (in [`Mode::Pass`]).
    /// Call it inside the runtime the proxy is to run on.
    pub async fn start(upstream: SocketAddr) -> Proxy {
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

async fn accept(listener: TcpListener, upstream: SocketAddr, mode: watch::Sender<Mode>) {
    while let Ok((client, _)) = listener.accept().await {
        if *mode.borrow() == Mode::Reset {
            drop(client);
            continue;
        }
        tokio::spawn(carry(client, upstream, mode.subscribe()));
    }
}

/// One connection: once not blackholed, connects upstream and pumps both ways until either
/// side closes or the proxy resets.
async fn carry(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A partitioned client's connection is accepted and left unanswered.
    if !matches!(
        mode.wait_for(|now| *now != Mode::Blackhole)
            .await
            .as_deref(),
        Ok(Mode::Pass | Mode::Delay(_))
    ) {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::select! {
        () = pump(client_in, server_out, mode.clone()) => {}
        () = pump(server_in, client_out, mode) => {}
    }
}

/// Copies `from` to `to` as the mode says, until either closes or the proxy resets.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
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
