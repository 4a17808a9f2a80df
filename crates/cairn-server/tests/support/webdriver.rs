//! A real browser for the UI tests: Debian's Chromium, headless, driven through
//! `chromedriver` (from the PATH, on a free port) with fantoccini, and a poll of the page with
//! a deadline.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// A chromedriver process, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Starts chromedriver on a free port and a headless Chromium session through it.
pub async fn browser() -> (Client, Driver) {
    let chromedriver = on_path("chromedriver")
        .expect("chromedriver is on the PATH (Debian: apt-get install chromium-driver)");
    let chromium = on_path("chromium")
        .or_else(|| on_path("chromium-browser"))
        .expect("chromium is on the PATH (Debian: apt-get install chromium)");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().expect("a profile directory"),
    };
    let profile = driver._profile.path().display().to_string();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", format!("--user-data-dir={profile}")],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let attempt = ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await;
        match attempt {
            Ok(client) => return (client, driver),
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("no browser session through chromedriver: {err}"),
        }
    }
}

/// Evaluates `script` in the page until it returns `expected`, or panics after 20 s.
pub async fn until(client: &Client, script: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = client
            .execute(script, vec![])
            .await
            .expect("the script runs");
        if value == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{script}` is {value}, never {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
