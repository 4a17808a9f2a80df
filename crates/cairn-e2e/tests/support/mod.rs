//! What the end-to-end tests share: spawning the fixture binary in an isolated data dir,
//! reading its ledger and polling with a deadline; `invariant` checks invariant 1 on the
//! ledger of `marked` runs; `cluster` is a private PostgreSQL a test may restart and crash
//! (`cairn_test_support::proxy` partitions a worker from it).

#![allow(dead_code)]

pub mod cluster;
pub mod invariant;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use cairn::{PostgresOptions, PostgresStore, SqliteStore, Store};
use serde_json::Value;

/// The fixture binary's path (built by cargo for this package's tests).
pub fn fixture_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-fixture"))
}

/// One isolated data dir with its ledger and its go-file; optionally a PostgreSQL schema of
/// its own instead of the SQLite file.
pub struct Sandbox {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// `(database URL, schema)` when the sandbox uses PostgreSQL.
    pub postgres: Option<(String, String)>,
    /// The processes' lease TTL: short, so a killed process's runs are taken over quickly.
    pub lease_ttl: &'static str,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.postgres {
            // Best effort: a leftover schema only costs space.
            let _ = Command::new("psql")
                .args([
                    url.as_str(),
                    "-qc",
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
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
            postgres: None,
            lease_ttl: "1s",
        }
    }

    /// A sandbox whose processes share a fresh schema of the test PostgreSQL database
    /// (`CAIRN_TEST_DATABASE_URL`). `None` when the test command found no PostgreSQL: the
    /// test has been reported as not run and returns.
    pub fn postgres() -> Option<Sandbox> {
        Some(Sandbox::on_postgres(cairn_test_support::postgres_url()?))
    }

    /// A sandbox whose processes share a fresh schema of the database at `url`.
    pub fn on_postgres(url: String) -> Sandbox {
        let schema = format!("cairn_e2e_{}", uuid::Uuid::new_v4().simple());
        Sandbox {
            dir: tempfile::TempDir::new().expect("temp dir"),
            postgres: Some((url, schema)),
            // Several worker processes and PostgreSQL share 2 cores in CI: a 1 s lease could
            // lapse under load (legal, but it makes steps in flight run twice).
            lease_ttl: "5s",
        }
    }

    /// The PostgreSQL URL and schema of a PostgreSQL sandbox.
    pub fn postgres_target(&self) -> Option<(String, String)> {
        self.postgres.clone()
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
        command.args(args);
        self.environment(command)
    }

    /// The fixture run on a terminal: a pseudo-terminal from util-linux's `script`, whose
    /// stdout carries everything the fixture wrote to the terminal (stdout and stderr).
    pub fn command_on_a_terminal(&self, args: &[&str]) -> Command {
        let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
        let line: Vec<String> = std::iter::once(fixture_bin().display().to_string())
            .chain(args.iter().map(|arg| arg.to_string()))
            .map(|word| quote(&word))
            .collect();
        let mut command = Command::new("script");
        command
            .args([
                "--quiet",
                "--return",
                "--command",
                &line.join(" "),
                "/dev/null",
            ])
            .env("SHELL", "/bin/sh");
        self.environment(command)
    }

    /// `command` with this sandbox's environment and a short lease.
    fn environment(&self, mut command: Command) -> Command {
        command
            .env("CAIRN_DATA_DIR", self.data_dir())
            .env("CAIRN_LEASE_TTL", self.lease_ttl)
            .env("CAIRN_POLL_INTERVAL", "50ms")
            .env("FIXTURE_LEDGER", self.ledger())
            .env("FIXTURE_GO_FILE", self.go_file())
            // Local unless a test says otherwise, whatever the developer's shell has.
            .env_remove("CAIRN_SERVER")
            .env_remove("CAIRN_API_KEY")
            .env_remove("CAIRN_MASTER_KEY")
            .env_remove("CAIRN_ORG")
            .env_remove("CAIRN_PROJECT")
            .env_remove("CAIRN_USER")
            .stdin(Stdio::null());
        if let Some((url, schema)) = &self.postgres {
            command
                .env("CAIRN_DATABASE_URL", url)
                .env("CAIRN_DATABASE_SCHEMA", schema);
        }
        command
    }

    /// Runs the fixture to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run fixture")
    }

    /// Starts the fixture in the background: stdout discarded, stderr appended to
    /// `processes.log` in the sandbox (see [`Sandbox::process_log`]).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with(args, &[])
    }

    /// [`Sandbox::spawn`] with more environment variables (e.g. `FIXTURE_VERSION`).
    pub fn spawn_with(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.command(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(self.process_log_file())
            .spawn()
            .expect("spawn fixture")
    }

    /// [`Sandbox::spawn`] through a wrapper program: `wrapper… <fixture> args…` (e.g.
    /// `fiu-run -x …`, `faketime +2h`), with the sandbox's environment.
    pub fn spawn_under(&self, wrapper: &[&str], args: &[&str]) -> Child {
        let (program, wrapper_args) = wrapper.split_first().expect("a wrapper program");
        let mut command = Command::new(program);
        command.args(wrapper_args).arg(fixture_bin()).args(args);
        self.environment(command)
            .stdout(Stdio::null())
            .stderr(self.process_log_file())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {program}: {error}"))
    }

    /// `processes.log`, opened for appending.
    fn process_log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("processes.log"))
            .expect("process log")
    }

    /// Runs the fixture to completion with more environment variables.
    pub fn output_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run fixture")
    }

    /// The ledger lines that contain `needle`.
    pub fn ledger_count(&self, needle: &str) -> usize {
        self.ledger_lines()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// What the background processes wrote to stderr.
    pub fn process_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("processes.log")).unwrap_or_default()
    }

    /// The ledger's lines.
    pub fn ledger_lines(&self) -> Vec<String> {
        read_lines(&self.ledger())
    }

    /// Starts `run approval` (stdout piped, `--json`) and waits for its hook to be pending:
    /// the process and the hook as `hooks list --json` shows it.
    pub fn start_approval(&self, tag: &str) -> (KillOnDrop, Value) {
        let input = serde_json::json!({ "tag": tag }).to_string();
        let runner = KillOnDrop::new(
            self.command(&["run", "approval", "--input", &input, "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn run"),
        );
        let mut hooks = Value::Null;
        wait_for("a pending hook", Duration::from_secs(60), || {
            let out = self.output(&["hooks", "list", "--json"]);
            hooks = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            hooks.as_array().is_some_and(|hooks| hooks.len() == 1)
        });
        (runner, hooks[0].clone())
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

/// A `serve` process of the fixture and the address it listens on.
pub struct Served {
    /// The process (killed if dropped first).
    pub process: KillOnDrop,
    /// Its pid, for signals.
    pub pid: u32,
    /// `host:port`.
    pub base: String,
}

impl Served {
    /// The server's URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.base)
    }
}

impl Sandbox {
    /// The sandbox's store, opened in this process (the processes' SQLite file, or their
    /// PostgreSQL schema).
    pub async fn store(&self) -> Arc<dyn Store> {
        match &self.postgres {
            Some((url, schema)) => {
                let options = PostgresOptions {
                    schema: Some(schema.clone()),
                    // Not the processes' `cairn`: a test tells their connections from its own.
                    application_name: "cairn-e2e".to_owned(),
                    ..PostgresOptions::default()
                };
                Arc::new(
                    PostgresStore::connect_with(url, options)
                        .await
                        .expect("connect"),
                )
            }
            None => Arc::new(SqliteStore::open_in_dir(self.data_dir()).expect("open")),
        }
    }

    /// Starts `serve --listen 127.0.0.1:0 <extra>` (with `env` besides the sandbox's) and
    /// waits for the address it prints.
    pub fn serve(&self, extra: &[&str], env: &[(&str, &str)]) -> Served {
        const LISTENING: &str = "listening on http://";
        let before = self.process_log().matches(LISTENING).count();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let child = self.spawn_with(&args, env);
        let pid = child.id();
        let process = KillOnDrop::new(child);
        let mut base = None;
        wait_for("serve to listen", Duration::from_secs(60), || {
            base = self
                .process_log()
                .lines()
                .filter_map(|line| line.strip_prefix(LISTENING))
                .nth(before)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            base.is_some()
        });
        let base = base.unwrap_or_else(|| panic!("serve never listened:\n{}", self.process_log()));
        Served { process, pid, base }
    }
}

/// A child process that is killed (and reaped) if dropped before it was waited for, so a
/// failing test leaves no process behind.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Guards `child`.
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The process's id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("not waited for yet").id()
    }

    /// Kills the process (`SIGKILL`, as `kill -9`) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("kill -9");
            child.wait().ok();
        }
    }

    /// The process's exit status if it has ended (then reaped), else `None`.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.0.as_mut().expect("not waited for yet");
        child.try_wait().expect("the process's status")
    }

    /// Waits for the process to end and collects its output.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("not waited for yet");
        child.wait_with_output().expect("wait for the process")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A file's lines (none if it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// xorshift64*: enough to pick fault points, and the same from the same seed.
pub struct Seeded(pub u64);

impl Seeded {
    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// The seed in variable `var` (hexadecimal, `0x` optional), else `default`.
pub fn seed_from(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok())
        .unwrap_or(default)
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
