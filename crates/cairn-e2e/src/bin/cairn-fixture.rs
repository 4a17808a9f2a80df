//! The user binary the end-to-end tests drive: the Cairn CLI over the fixture's workflows,
//! with the engine's crash points armed from `FAILPOINTS` (e.g.
//! `FAILPOINTS=after-action-before-commit=panic`: the process aborts there; see TESTING.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    // Reads FAILPOINTS (nothing when unset); the points stay armed until main returns.
    let _crash_points = fail::FailScenario::setup();
    cairn::cli::main(cairn_e2e::registry())
}
