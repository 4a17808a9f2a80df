//! The example's binary: the whole Cairn CLI over the example's workflows, with Slack's base
//! URL from `CAIRN_SLACK_BASE_URL` when set, and the models' from `CAIRN_OPENAI_BASE_URL` /
//! `CAIRN_ANTHROPIC_BASE_URL`. Without `CAIRN_OPENAI_BASE_URL`, `openai/…` models go to the
//! bundled offline model on loopback, which answers calls made with no key itself and
//! forwards the others (an `openai` credential's) to OpenAI.

use std::process::ExitCode;

use cairn::llm::{LlmConfig, config::OPENAI_BASE_URL_VAR};
use signup_pipeline::fake_model;

fn main() -> ExitCode {
    let config = match cairn_actions::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match model_config() {
        Ok(llm) => cairn::cli::main(signup_pipeline::registry_with(config, llm)),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// The models' configuration: from the environment, with the offline model standing in for
/// OpenAI's API unless `CAIRN_OPENAI_BASE_URL` names a server.
fn model_config() -> Result<LlmConfig, String> {
    let config = LlmConfig::from_env().map_err(|err| err.to_string())?;
    if std::env::var_os(OPENAI_BASE_URL_VAR).is_some() {
        return Ok(config);
    }
    let url = fake_model::start()
        .map_err(|err| format!("cannot start the example's offline model on loopback: {err}"))?;
    config.openai_base_url(&url).map_err(|err| err.to_string())
}
