//! A TCP proxy in front of the test server that a test can take down and bring back, to
//! see what a store does while its database restarts, without restarting the shared server,
//! or make lose the server's next answer, as a connection failing mid-statement would.
#![allow(dead_code)]

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
    io::{AsyncReadExt, AsyncWriteExt},
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
    mute: Arc<AtomicBool>,
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
        let mute = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0_u64);
        let links = Links {
            up: Arc::clone(&up),
            mute: Arc::clone(&mute),
            cut: cut.clone(),
        };
        let accepting = tokio::spawn(accept(listener, upstream, links));
        Proxy {
            url: proxied,
            up,
            mute,
            cut,
            accepting,
        }
    }

    /// From now on, whatever the server sends is dropped, and the connection it was sent on
    /// is closed: the client sees its connection fail after the server answered.
    pub fn lose_answers(&self) {
        self.mute.store(true, Ordering::SeqCst);
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

/// What the proxy's connections obey.
struct Links {
    up: Arc<AtomicBool>,
    mute: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

async fn accept(listener: TcpListener, upstream: String, links: Links) {
    while let Ok((client, _)) = listener.accept().await {
        if !links.up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let mut cut = links.cut.subscribe();
        let mute = Arc::clone(&links.mute);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut client_in, mut client_out) = client.into_split();
            let (mut server_in, mut server_out) = server.into_split();
            let answers = async {
                let mut buffer = vec![0_u8; 16 * 1024];
                loop {
                    match server_in.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if mute.load(Ordering::SeqCst) => return,
                        Ok(read) => {
                            if client_out.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::io::copy(&mut client_in, &mut server_out) => {}
                _ = answers => {}
                _ = cut.changed() => {}
            }
        });
    }
}
