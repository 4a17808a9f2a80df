//! `sources list|poll-now|pause|resume`: the stored poll sources (declared in code, saved by
//! every worker when it starts), their state and error streak, and controlling them. Each
//! command is one `Engine` call; `--json` prints what the engine returned.

use std::process::ExitCode;

use cairn_engine::{Engine, timestamp};
use cairn_store::PollSourceRecord;
use comfy_table::Table;

use super::{CliError, args::SourcesCommand, commands::print_json};

/// Runs a `sources` command.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: SourcesCommand,
) -> Result<ExitCode, CliError> {
    match command {
        SourcesCommand::List { json } => {
            let listed = engine.list_poll_sources().await?;
            if json {
                print_json(&listed);
            } else if listed.is_empty() {
                println!("no poll sources; declare one with Registry::poll and start a worker");
            } else {
                println!("{}", table(&listed));
            }
        }
        SourcesCommand::PollNow { name, json } => {
            let source = engine.poll_source_now(&name).await?;
            say(&source, json, "is due now: the next worker poll takes it");
        }
        SourcesCommand::Pause { name, json } => {
            let source = engine.pause_poll_source(&name).await?;
            say(&source, json, "paused; `sources resume` polls it again");
        }
        SourcesCommand::Resume { name, json } => {
            let source = engine.resume_poll_source(&name).await?;
            say(&source, json, "resumed: polled now");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the source as JSON, or one line saying what happened (and that a paused source
/// stays paused).
fn say(source: &PollSourceRecord, json: bool, what: &str) {
    if json {
        print_json(source);
    } else {
        println!(
            "poll source {} {what} (state {})",
            source.name, source.state
        );
    }
}

fn table(listed: &[PollSourceRecord]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "NAME",
        "WORKFLOW",
        "STATE",
        "NEXT POLL",
        "LAST POLL",
        "ERRORS",
        "LAST ERROR",
    ]);
    for source in listed {
        table.add_row([
            source.name.clone(),
            source.workflow.clone(),
            source.state.to_string(),
            timestamp(source.next_poll_at_ms),
            source
                .last_polled_at_ms
                .map_or_else(|| "-".to_owned(), timestamp),
            source.consecutive_errors.to_string(),
            source.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table
}
