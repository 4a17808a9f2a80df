//! What Cairn's own tests share about their environment: where the test PostgreSQL server is
//! (and PostgreSQL's server programs, for tests that run a private cluster of their own), and
//! how a test whose prerequisite the test command could not provide is *not run*, visibly
//! and counted, rather than silently passed.
//!
//! `scripts/check` (the README's test command) probes for each prerequisite, provides it when
//! it can (e.g. a private PostgreSQL server), and otherwise sets `CAIRN_TEST_SKIP_<NAME>` to a
//! one-line reason. A test that needs the prerequisite asks this crate first: when it is
//! missing, the test prints `not run: <test> (no <prerequisite>)` straight to the terminal (past
//! libtest's capture), appends a line to the file named by `CAIRN_TEST_NOT_RUN_LOG`, and
//! returns. The script counts those lines into its summary: `N passed, N failed, N skipped`.
//!
//! Run without the script (plain `cargo test`), nothing is skipped: a test that cannot reach
//! its server fails and says which variable to set.
//!
//! With the feature `oauth`, [`oauth::FakeProvider`] is a fake OAuth authorization server on
//! loopback for the tests of OAuth connect and refresh; with `signing`, [`signing`] signs
//! webhook deliveries as providers do; with `proxy`, [`proxy::Proxy`] cuts, partitions and
//! slows the connections between a PostgreSQL client and its server.

#[cfg(feature = "oauth")]
pub mod oauth;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "signing")]
pub mod signing;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The variable naming the test PostgreSQL server.
pub const DATABASE_URL_VAR: &str = "CAIRN_TEST_DATABASE_URL";

/// The server the tests use when [`DATABASE_URL_VAR`] is not set: the local server, without
/// TLS (a handshake per test connection adds up).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// The file every skipped test appends a line to (`<prerequisite>\t<test>`).
pub const NOT_RUN_LOG_VAR: &str = "CAIRN_TEST_NOT_RUN_LOG";

/// Something outside the process that some tests need and the test command may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prerequisite {
    /// A PostgreSQL server (`CAIRN_TEST_SKIP_POSTGRES`).
    Postgres,
    /// PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`), for the tests that run a
    /// private cluster of their own and restart or crash it (`CAIRN_TEST_SKIP_POSTGRES_SERVER`).
    PostgresServer,
    /// Chromium and chromedriver, for the web UI's browser tests (`CAIRN_TEST_SKIP_CHROMIUM`).
    Chromium,
    /// `fiu-run` (libfiu), for the injected `fdatasync` errors (`CAIRN_TEST_SKIP_FIU`).
    Fiu,
    /// `faketime` (libfaketime), for a worker whose clock runs ahead
    /// (`CAIRN_TEST_SKIP_FAKETIME`).
    Faketime,
}

impl Prerequisite {
    /// Its name in messages and in the not-run log.
    pub fn name(self) -> &'static str {
        match self {
            Prerequisite::Postgres => "postgres",
            Prerequisite::PostgresServer => "postgres_server",
            Prerequisite::Chromium => "chromium",
            Prerequisite::Fiu => "fiu",
            Prerequisite::Faketime => "faketime",
        }
    }

    /// The variable the test command sets, to the reason, when it could not provide it.
    pub fn skip_var(self) -> &'static str {
        match self {
            Prerequisite::Postgres => "CAIRN_TEST_SKIP_POSTGRES",
            Prerequisite::PostgresServer => "CAIRN_TEST_SKIP_POSTGRES_SERVER",
            Prerequisite::Chromium => "CAIRN_TEST_SKIP_CHROMIUM",
            Prerequisite::Fiu => "CAIRN_TEST_SKIP_FIU",
            Prerequisite::Faketime => "CAIRN_TEST_SKIP_FAKETIME",
        }
    }

    /// Whether the calling test must not run because this is missing. When it is, the test
    /// has been reported as not run (see the crate docs) and should return at once.
    pub fn missing(self) -> bool {
        let Some(reason) = std::env::var_os(self.skip_var()) else {
            return false;
        };
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        let log = std::env::var_os(NOT_RUN_LOG_VAR).map(PathBuf::from);
        // The reason is long and the test command prints it once; without the command, this
        // line is all there is.
        let reason = if log.is_some() {
            format!("no {}", self.name())
        } else {
            reason.to_string_lossy().into_owned()
        };
        report_not_run(self.name(), test, &reason, log.as_deref());
        true
    }
}

/// The test PostgreSQL server's URL, or `None` when PostgreSQL tests are not run here (already
/// reported: the test returns at once).
pub fn postgres_url() -> Option<String> {
    if Prerequisite::Postgres.missing() {
        return None;
    }
    Some(std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned()))
}

/// The variable naming the directory of PostgreSQL's server programs (`scripts/check` sets it
/// to the directory it found).
pub const PG_BINDIR_VAR: &str = "CAIRN_TEST_PG_BINDIR";

/// The directory holding PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`), for a
/// test that runs a private cluster, or `None` when such tests are not run here (already
/// reported: the test returns at once). Looked for as `scripts/check` does:
/// [`PG_BINDIR_VAR`], else `pg_config --bindir`, `initdb` on `PATH`, the newest
/// `/usr/lib/postgresql/*/bin`. Without the test command, missing programs fail the test.
pub fn postgres_server_programs() -> Option<PathBuf> {
    if Prerequisite::PostgresServer.missing() {
        return None;
    }
    let found = match std::env::var_os(PG_BINDIR_VAR) {
        Some(dir) => Some(PathBuf::from(dir)).filter(|dir| has_server_programs(dir)),
        None => find_server_programs(),
    };
    Some(found.unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server programs (initdb, pg_ctl, postgres) found: install them \
             (apt-get install postgresql) or set {PG_BINDIR_VAR} to their directory"
        )
    }))
}

fn has_server_programs(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|program| dir.join(program).is_file())
}

/// `pg_config --bindir`, the directory of `initdb` on `PATH`, the newest
/// `/usr/lib/postgresql/*/bin`: the first that has the server programs.
fn find_server_programs() -> Option<PathBuf> {
    let pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|initdb| initdb.is_file())
            .and_then(|initdb| initdb.canonicalize().ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
    });
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|dir| dir.path().join("bin")).collect())
        .unwrap_or_default();
    // Newest version last (directories named by major version: 9.6, 15, 16…).
    installed.sort_by_key(|dir| {
        dir.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.split('.').next())
            .and_then(|major| major.parse::<u32>().ok())
    });
    pg_config
        .into_iter()
        .chain(on_path)
        .chain(installed.into_iter().rev())
        .find(|dir| has_server_programs(dir))
}

/// Prints the not-run line on the real stderr and records it in `log`, if any.
fn report_not_run(prerequisite: &str, test: &str, reason: &str, log: Option<&Path>) {
    // Written to the handle, not with `eprintln!`: libtest captures the macro's output of a
    // passing test, and this line must be seen.
    let _ = writeln!(std::io::stderr(), "not run: {test} ({reason})");
    if let Some(log) = log {
        record_not_run(prerequisite, test, log);
    }
}

/// Appends `<prerequisite>\t<test>` to `log`; panics if it cannot (the count would be wrong).
fn record_not_run(prerequisite: &str, test: &str, log: &Path) {
    // One short write to an O_APPEND file: lines from parallel tests do not interleave.
    let line = format!("{prerequisite}\t{test}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        panic!(
            "cannot record a test as not run in {} ({NOT_RUN_LOG_VAR}): {error}",
            log.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_not_run_adds_one_line_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("not-run.log");
        record_not_run("postgres", "a::first", &log);
        record_not_run("postgres", "a::second", &log);
        let text = std::fs::read_to_string(&log).expect("log written");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["postgres\ta::first", "postgres\ta::second"]
        );
    }
}
