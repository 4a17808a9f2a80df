//! `schedules list|get|pause|resume`: the stored cron schedules (declared in code, saved by
//! every worker when it starts), their next fire times and missed ones, and pausing them.
//! Each command is one `Engine` call; `--json` prints what the engine returned.

use std::process::ExitCode;

use cairn_engine::{Engine, ScheduleDetail, timestamp};
use cairn_store::{CatchUpPolicy, ScheduleRecord};
use comfy_table::Table;

use super::{CliError, args::SchedulesCommand, commands::print_json};

/// Runs a `schedules` command.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: SchedulesCommand,
) -> Result<ExitCode, CliError> {
    match command {
        SchedulesCommand::List { json } => {
            let listed = engine.list_schedules().await?;
            if json {
                print_json(&listed);
            } else if listed.is_empty() {
                println!("no schedules; declare one with Registry::schedule and start a worker");
            } else {
                println!("{}", table(&listed));
            }
        }
        SchedulesCommand::Get { id, json } => {
            let detail = engine.get_schedule(&id).await?;
            if json {
                print_json(&detail);
            } else {
                print_detail(&detail);
            }
        }
        SchedulesCommand::Pause { id, json } => {
            let paused = engine.pause_schedule(&id).await?;
            if json {
                print_json(&paused);
            } else {
                println!("schedule {id} paused; `schedules resume {id}` starts it again");
            }
        }
        SchedulesCommand::Resume { id, json } => {
            let resumed = engine.resume_schedule(&id).await?;
            if json {
                print_json(&resumed);
            } else {
                println!(
                    "schedule {id} resumed; next fire {} (fire times passed while paused are not caught up)",
                    fire_time(resumed.next_fire_at_ms)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(listed: &[ScheduleRecord]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "ID",
        "WORKFLOW",
        "CRON",
        "ZONE",
        "STATE",
        "NEXT FIRE",
        "LAST FIRE",
    ]);
    for schedule in listed {
        table.add_row([
            schedule.id.clone(),
            schedule.spec.workflow.clone(),
            schedule.spec.expression.clone(),
            schedule.spec.timezone.clone(),
            state(schedule).to_owned(),
            fire_time(schedule.next_fire_at_ms),
            schedule
                .last_fire_at_ms
                .map_or_else(|| "-".to_owned(), timestamp),
        ]);
    }
    table
}

fn print_detail(detail: &ScheduleDetail) {
    let schedule = &detail.schedule;
    let spec = &schedule.spec;
    println!("schedule {} ({})", schedule.id, state(schedule));
    println!("  workflow:  {}", spec.workflow);
    println!("  input:     {}", spec.input);
    println!("  cron:      {} ({})", spec.expression, spec.timezone);
    let catch_up = match spec.catch_up {
        CatchUpPolicy::Latest => "latest".to_owned(),
        CatchUpPolicy::All { window_ms } => format!("all within {} s", window_ms / 1_000),
        CatchUpPolicy::None => "none".to_owned(),
    };
    println!("  catch-up:  {catch_up}");
    let last = schedule
        .last_fire_at_ms
        .map_or_else(|| "never".to_owned(), timestamp);
    println!("  last fire: {last}");
    println!("next fire times:");
    for at in &detail.upcoming_ms {
        println!("  {}", fire_time(*at));
    }
    if detail.missed.is_empty() {
        println!("missed: none");
    } else {
        println!("missed (newest first):");
        for miss in &detail.missed {
            println!(
                "  {} .. {}: {}",
                timestamp(miss.first_ms),
                timestamp(miss.last_ms),
                miss.reason
            );
        }
    }
}

fn state(schedule: &ScheduleRecord) -> &'static str {
    if schedule.paused { "paused" } else { "active" }
}

/// A fire time, or `never` for a schedule that fires no more.
fn fire_time(ms: i64) -> String {
    if ms == i64::MAX {
        "never".to_owned()
    } else {
        timestamp(ms)
    }
}
