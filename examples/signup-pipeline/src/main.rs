//! The example's binary: the whole Cairn CLI over the example's workflows, with Slack's base
//! URL from `CAIRN_SLACK_BASE_URL` when set.

use std::process::ExitCode;

fn main() -> ExitCode {
    match cairn_actions::Config::from_env() {
        Ok(config) => cairn::cli::main(signup_pipeline::registry_with(config)),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
