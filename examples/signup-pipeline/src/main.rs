//! The example's binary: the whole Cairn CLI over the example's workflows.

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn::cli::main(signup_pipeline::registry())
}
