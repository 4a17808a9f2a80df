//! Log lines as a user sees them: plain when stderr is captured (no ANSI escape codes),
//! coloured on a terminal unless `NO_COLOR` is set. The terminal is a real pseudo-terminal
//! (util-linux's `script`).

mod support;

use std::process::{Command, Output};

use support::Sandbox;

/// `run --json` of a workflow whose first attempt fails, which logs an INFO line.
const RUN: [&str; 5] = [
    "run",
    "backoff-pipeline",
    "--input",
    r#"{"tag":"logs"}"#,
    "--json",
];

/// The INFO line's text.
const LOGGED: &str = "step attempt failed; retrying";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` (the fixture doing [`RUN`]) at `CAIRN_LOG=info` with `NO_COLOR` as given;
/// checks that it succeeded and returns its output.
fn run_logged(mut command: Command, no_color: Option<&str>) -> Output {
    command.env("CAIRN_LOG", "info");
    match no_color {
        Some(value) => command.env("NO_COLOR", value),
        None => command.env_remove("NO_COLOR"),
    };
    let out = command.output().expect("run the fixture");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn captured_logs_carry_no_escape_codes() {
    let sandbox = Sandbox::new();
    let stderr = text(&run_logged(sandbox.command(&RUN), None).stderr);
    assert!(stderr.contains(LOGGED), "an INFO line was logged: {stderr}");
    assert!(!stderr.contains("\x1b["), "no escape codes: {stderr:?}");
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let sandbox = Sandbox::new();
    let terminal = text(&run_logged(sandbox.command_on_a_terminal(&RUN), None).stdout);
    let line = terminal
        .lines()
        .find(|line| line.contains(LOGGED))
        .unwrap_or_else(|| panic!("an INFO line was logged: {terminal}"));
    assert!(line.contains("\x1b["), "coloured: {line:?}");

    let terminal = text(&run_logged(sandbox.command_on_a_terminal(&RUN), Some("1")).stdout);
    assert!(
        terminal.contains(LOGGED),
        "an INFO line was logged: {terminal}"
    );
    assert!(
        !terminal.contains("\x1b["),
        "NO_COLOR: no escape codes: {terminal:?}"
    );
}
