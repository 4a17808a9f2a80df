//! `hooks list` and `hooks resume`.

use std::process::ExitCode;

use cairn_engine::{Engine, HookView};
use cairn_store::{HookFilter, HookRecord, HookState};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

use super::{
    CliError,
    args::HooksCommand,
    commands::{parse_id, print_json},
    view::timestamp,
};

/// Runs a `hooks` command; `payload` is `resume`'s, already read and parsed.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: HooksCommand,
    payload: Value,
) -> Result<ExitCode, CliError> {
    match command {
        HooksCommand::List { run, all, json } => {
            let run_id = run.as_deref().map(parse_id).transpose()?;
            let state = (!all).then_some(HookState::Pending);
            let hooks = engine
                .list_hooks(&HookFilter {
                    run_id,
                    state,
                    limit: 1_000,
                })
                .await?;
            if json {
                print_json(&hooks.iter().map(HookView::from).collect::<Vec<_>>());
            } else if hooks.is_empty() {
                println!("no hooks are waiting");
            } else {
                println!("{}", hooks_table(&hooks));
            }
            Ok(ExitCode::SUCCESS)
        }
        HooksCommand::Resume { token, json, .. } => {
            let hook = engine.resume_hook(&token, payload).await?;
            print_resumed(&HookView::from(&hook), json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints what `hooks resume` did.
pub(crate) fn print_resumed(hook: &HookView, json: bool) {
    if json {
        print_json(hook);
    } else {
        println!(
            "resumed hook {} of run {}; the run continues",
            hook.step_key, hook.run_id
        );
    }
}

fn hooks_table(hooks: &[HookRecord]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(["TOKEN", "RUN ID", "STEP", "STATE", "CREATED", "TIMEOUT"]);
    for hook in hooks {
        table.add_row([
            hook.token.clone(),
            hook.run_id.to_string(),
            hook.step_key.to_string(),
            hook.state.to_string(),
            timestamp(hook.created_at_ms),
            hook.timeout_at_ms.map(timestamp).unwrap_or_default(),
        ]);
    }
    table
}
