//! The user binary the end-to-end tests drive: the Cairn CLI over the fixture's workflows.

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn::cli::main(cairn_e2e::registry())
}
