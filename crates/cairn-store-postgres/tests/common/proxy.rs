//! The shared TCP proxy ([`cairn_test_support::proxy`]) in front of the test server, with the
//! server's URL pointed at it: a test takes it down and brings it back, to see what a store
//! does while its database restarts (without restarting the shared server), or makes it lose
//! the server's next answer, as a connection failing mid-statement would.
#![allow(dead_code)]

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// The proxy and the URL of the test server through it.
pub struct Proxy {
    /// The URL of the test server, through the proxy.
    pub url: String,
    proxy: cairn_test_support::proxy::Proxy,
}

impl Proxy {
    /// Starts a proxy to the server of `url` (whose host and port must appear in it).
    pub async fn start(url: &str) -> Proxy {
        let options = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let proxy = cairn_test_support::proxy::Proxy::start(upstream.clone()).await;
        let local = format!("127.0.0.1:{}", proxy.port);
        let url = if url.contains(&upstream) {
            url.replacen(&upstream, &local, 1)
        } else {
            format!(
                "postgres://{}@{local}/{}",
                options.get_username(),
                options.get_database().unwrap_or("postgres")
            )
        };
        Proxy { url, proxy }
    }

    /// From now on, whatever the server sends is dropped, and the connection it was sent on
    /// is closed: the client sees its connection fail after the server answered.
    pub fn lose_answers(&self) {
        self.proxy.lose_answers();
    }

    /// Closes every open connection and refuses new ones until [`up`](Self::up).
    pub fn down(&self) {
        self.proxy.down();
    }

    /// Forwards new connections again.
    pub fn up(&self) {
        self.proxy.up();
    }
}
