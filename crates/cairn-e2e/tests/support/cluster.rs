//! A private PostgreSQL cluster per test, which the test may stop, restart and crash without
//! touching anyone else's server: `initdb` into a temporary directory, a free port on
//! 127.0.0.1, its socket in the same directory, stopped (`-m immediate`) and removed on drop.
//! As root the server runs as `nobody` (`postgres` refuses root), as `scripts/check`'s does.
//! A cluster left by a test process killed outright (no drop) is stopped and removed by the
//! next `Cluster::start`, which finds its owner's pid gone.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use super::{Sandbox, wait_for};

/// The user the server runs as when this process is root.
const SERVER_USER: &str = "nobody";

/// A running (or stopped) private cluster; see the module docs.
pub struct Cluster {
    /// The temporary directory: the data directory, the socket, the server's log.
    dir: tempfile::TempDir,
    /// Where `initdb`, `pg_ctl`, `postgres` and `psql` are.
    bindir: PathBuf,
    /// The port the server listens on.
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster, or `None` when PostgreSQL's server programs are missing
    /// and the test command said so (the test has been reported as not run and returns).
    pub fn start() -> Option<Cluster> {
        let bindir = cairn_test_support::postgres_server_programs()?;
        reap_stale(&bindir);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("owner"), std::process::id().to_string())
            .expect("write the owner's pid");
        if is_root() {
            chown_to_server_user(dir.path());
        }
        let mut cluster = Cluster {
            dir,
            bindir,
            port: 0,
        };
        let initdb = cluster.as_server_user(
            &cluster.program("initdb"),
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(initdb.status.success(), "initdb failed: {}", text(&initdb));
        // A free port: one the kernel just gave out, taken by the server (another taker makes
        // the start fail, and the next attempt picks another).
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.pg_ctl_start().status.success() {
                return Some(cluster);
            }
        }
        panic!(
            "the private PostgreSQL did not start:\n{}",
            cluster.server_log()
        );
    }

    /// The URL of the cluster's `postgres` database (superuser `postgres`, trust auth).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A sandbox whose processes share a fresh schema of this cluster.
    pub fn sandbox(&self) -> Sandbox {
        Sandbox::on_postgres(self.url())
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, as in a crash; the
    /// next start recovers from the WAL.
    pub fn stop_immediately(&self) {
        let data = self.data().display().to_string();
        let out = self.as_server_user(
            &self.program("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// Starts the stopped server again on its port; returns once it accepts connections.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            self.server_log()
        );
    }

    /// `pg_ctl start` on `self.port`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Output {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        // Durable as a production server is (fsync on): what a crash test finds after a
        // restart is what PostgreSQL itself made durable.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.as_server_user(
            &self.program("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )
    }

    /// Runs `sql` with `psql` and returns its rows (`-At`: unaligned, tuples only). Panics if
    /// psql fails.
    pub fn psql(&self, sql: &str) -> Vec<String> {
        let out = self.try_psql(sql);
        assert!(out.status.success(), "psql `{sql}` failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `sql` with `psql`, whatever happens.
    pub fn try_psql(&self, sql: &str) -> Output {
        Command::new(self.program("psql"))
            .args([self.url().as_str(), "-XAtqc", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .expect("run psql")
    }

    /// Waits until the server answers a query (after a crash, once recovery is done).
    pub fn wait_until_it_answers(&self, deadline: Duration) {
        wait_for("PostgreSQL to answer", deadline, || {
            self.try_psql("SELECT 1").status.success()
        });
    }

    /// Sends `SIGKILL` to server process `pid`, as the server's user: the postmaster then
    /// ends every session and runs crash recovery.
    pub fn kill_backend(&self, pid: u32) {
        let out = self.as_server_user(Path::new("kill"), &["-KILL", &pid.to_string()]);
        assert!(out.status.success(), "kill -9 {pid}: {}", text(&out));
    }

    /// What the server logged.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    fn as_server_user(&self, program: &Path, args: &[&str]) -> Output {
        as_server_user(self.dir.path(), program, args)
    }
}

/// The prefix of the clusters' directories in the temporary directory.
const PREFIX: &str = "cairn-e2e-pg.";

/// Runs `program args…` as the server's user (from `dir`, which that user owns), collecting
/// its output.
fn as_server_user(dir: &Path, program: &Path, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", SERVER_USER, "--"])
            .arg(program)
            .current_dir(dir);
        command
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", program.display()))
}

/// Stops and removes the clusters whose owner (the test process that made them) is gone.
fn reap_stale(bindir: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in entries.flatten().map(|entry| entry.path()) {
        let named = dir
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(PREFIX));
        let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        if !named || Path::new("/proc").join(owner.trim()).exists() {
            continue;
        }
        let data = dir.join("data").display().to_string();
        let stop = ["-D", &data, "-m", "immediate", "-w", "stop"];
        let _ = as_server_user(&dir, &bindir.join("pg_ctl"), &stop);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort: a server already stopped answers with an error, and the directory goes.
        let data = self.data().display().to_string();
        let _ = self.as_server_user(
            &self.program("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Gives `dir` to the server's user.
fn chown_to_server_user(dir: &Path) {
    let status = Command::new("chown")
        .arg(SERVER_USER)
        .arg(dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {SERVER_USER} {}", dir.display());
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A command's stdout and stderr, for a failure message.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
