//! What Cairn's own tests share about their environment: where the test PostgreSQL server is,
//! and how a test whose prerequisite the test command could not provide is *not run*, visibly
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
//! webhook deliveries as providers do.

#[cfg(feature = "oauth")]
pub mod oauth;
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
            Prerequisite::Chromium => "chromium",
            Prerequisite::Fiu => "fiu",
            Prerequisite::Faketime => "faketime",
        }
    }

    /// The variable the test command sets, to the reason, when it could not provide it.
    pub fn skip_var(self) -> &'static str {
        match self {
            Prerequisite::Postgres => "CAIRN_TEST_SKIP_POSTGRES",
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
