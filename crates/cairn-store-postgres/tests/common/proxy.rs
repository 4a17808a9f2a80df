//! A TCP proxy in front of the test server that a test can take down and bring back, to
//! see what a store does while its database restarts, without restarting the shared server.

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sqlx::postgres::PgConnectOptions;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// Forwards connections to the test server while up; while down, closes every connection it
/// carried and every new one at once, as a restarting server would.
pub struct Proxy {
    /// The URL of the test server, through the proxy.
    pub url: String,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to the server of `url` (whose host and port must appear in it).
    pub async fn start(url: &str) -> Proxy {
        let options = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local: SocketAddr = listener.local_addr().expect("address");
        let proxied = if url.contains(&upstream) {
            url.replacen(&upstream, &local.to_string(), 1)
        } else {
            format!(
                "postgres://{}@{local}/{}",
                options.get_username(),
                options.get_database().unwrap_or("postgres")
            )
        };
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0_u64);
        let accepting = tokio::spawn(accept(listener, upstream, Arc::clone(&up), cut.clone()));
        Proxy {
            url: proxied,
            up,
            cut,
            accepting,
        }
    }

    /// Closes every open connection and refuses new ones until [`up`](Self::up).
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// Forwards new connections again.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut.send_modify(|generation| *generation += 1);
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if !up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let mut cut = cut.subscribe();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
