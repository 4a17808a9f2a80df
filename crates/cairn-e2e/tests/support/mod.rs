//! What the end-to-end tests share: spawning the fixture binary in an isolated data dir,
//! reading its ledger and polling with a deadline.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The fixture binary's path (built by cargo for this package's tests).
pub fn fixture_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-fixture"))
}

/// One isolated data dir with its ledger and its go-file.
pub struct Sandbox {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A fresh sandbox.
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::TempDir::new().expect("temp dir"),
        }
    }

    /// The data dir the fixture uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The side-effect ledger: one line per action execution.
    pub fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger.log")
    }

    /// The file whose existence lets blocked steps go on.
    pub fn go_file(&self) -> PathBuf {
        self.dir.path().join("go")
    }

    /// A command for the fixture with this sandbox's environment and a short lease.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(fixture_bin());
        command
            .args(args)
            .env("CAIRN_DATA_DIR", self.data_dir())
            .env("CAIRN_LEASE_TTL", "1s")
            .env("CAIRN_POLL_INTERVAL", "50ms")
            .env("FIXTURE_LEDGER", self.ledger())
            .env("FIXTURE_GO_FILE", self.go_file())
            .stdin(Stdio::null());
        command
    }

    /// Runs the fixture to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run fixture")
    }

    /// Starts the fixture in the background (output discarded).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fixture")
    }

    /// The ledger's lines.
    pub fn ledger_lines(&self) -> Vec<String> {
        read_lines(&self.ledger())
    }

    /// `runs get <id> --json`, parsed.
    pub fn run_json(&self, run_id: &str) -> Value {
        let out = self.output(&["runs", "get", run_id, "--json"]);
        assert!(
            out.status.success(),
            "runs get failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("runs get --json prints JSON")
    }
}

/// A file's lines (none if it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(check(), "timed out after {deadline:?} waiting for {what}");
}
