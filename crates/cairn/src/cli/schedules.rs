//! `schedules create|list|get|pause|resume|trigger|backfill|delete`: the stored cron
//! schedules (declared in code and saved by every worker when it starts, or created here), their next fire times, recent
//! runs and missed ones, pausing them, starting occurrences by hand and deleting them. Each
//! command is one `Engine` call; `--json` prints what the engine returned. The printing is
//! shared with `--server` (`remote::schedules`).

use std::process::ExitCode;

use cairn_engine::{
    BackfillRun, Engine, ScheduleDetail, ScheduleStarted, parse_timestamp, timestamp,
};
use cairn_store::{CatchUpPolicy, OverlapPolicy, ScheduleRecord, ScheduleSpec};
use comfy_table::Table;
use serde_json::Value;

use super::{
    CliError,
    args::{CatchUpArg, CreateScheduleArgs, OverlapArg, SchedulesCommand},
    commands::print_json,
};

/// Runs a `schedules` command.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: SchedulesCommand,
    input: Value,
) -> Result<ExitCode, CliError> {
    match command {
        SchedulesCommand::Create(args) => {
            let (id, spec, json) = spec_of(args, input);
            let (_, saved) = engine.create_schedule(&id, spec).await?;
            print_created(&saved, json);
        }
        SchedulesCommand::List { json } => print_list(&engine.list_schedules().await?, json),
        SchedulesCommand::Get { id, json } => print_get(&engine.get_schedule(&id).await?, json),
        SchedulesCommand::Pause { id, json } => {
            print_paused(&engine.pause_schedule(&id).await?, json);
        }
        SchedulesCommand::Resume { id, json } => {
            print_resumed(&engine.resume_schedule(&id).await?, json);
        }
        SchedulesCommand::Trigger { id, json } => {
            print_triggered(&id, &engine.trigger_schedule(&id).await?, json);
        }
        SchedulesCommand::Backfill { id, from, to, json } => {
            let (from_ms, to_ms) = (time_arg("--from", &from)?, time_arg("--to", &to)?);
            let runs = engine.backfill_schedule(&id, from_ms, to_ms).await?;
            print_backfill(&id, &runs, json);
        }
        SchedulesCommand::Delete { id } => {
            engine.delete_schedule(&id).await?;
            print_deleted(&id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The id, spec and `--json` of `schedules create` with its read `input`.
pub(crate) fn spec_of(args: CreateScheduleArgs, input: Value) -> (String, ScheduleSpec, bool) {
    let CreateScheduleArgs {
        id,
        workflow,
        cron,
        timezone,
        catch_up,
        catch_up_window,
        overlap,
        json,
        ..
    } = args;
    let catch_up = match catch_up {
        CatchUpArg::Latest => CatchUpPolicy::Latest,
        CatchUpArg::All => CatchUpPolicy::All {
            window_ms: u64::try_from(catch_up_window.as_millis()).unwrap_or(u64::MAX),
        },
        CatchUpArg::None => CatchUpPolicy::None,
    };
    let overlap = match overlap {
        OverlapArg::AllowAll => OverlapPolicy::AllowAll,
        OverlapArg::Skip => OverlapPolicy::Skip,
        OverlapArg::BufferOne => OverlapPolicy::BufferOne,
    };
    let spec = ScheduleSpec {
        workflow,
        input,
        expression: cron,
        timezone,
        catch_up,
        overlap,
    };
    (id, spec, json)
}

/// `schedules create`'s output (the same whether it was saved now or before).
pub(crate) fn print_created(saved: &ScheduleRecord, json: bool) {
    if json {
        print_json(saved);
    } else {
        println!(
            "schedule {} saved ({} on {}); next fire {}",
            saved.id,
            saved.spec.expression,
            saved.spec.workflow,
            fire_time(saved.next_fire_at_ms)
        );
    }
}

/// `schedules list`'s output.
pub(crate) fn print_list(listed: &[ScheduleRecord], json: bool) {
    if json {
        print_json(&listed);
    } else if listed.is_empty() {
        println!("no schedules; declare one with Registry::schedule and start a worker");
    } else {
        println!("{}", table(listed));
    }
}

/// `schedules get`'s output.
pub(crate) fn print_get(detail: &ScheduleDetail, json: bool) {
    if json {
        print_json(detail);
    } else {
        print_detail(detail);
    }
}

/// `schedules pause`'s output.
pub(crate) fn print_paused(paused: &ScheduleRecord, json: bool) {
    if json {
        print_json(paused);
    } else {
        let id = &paused.id;
        println!("schedule {id} paused; `schedules resume {id}` starts it again");
    }
}

/// `schedules resume`'s output.
pub(crate) fn print_resumed(resumed: &ScheduleRecord, json: bool) {
    if json {
        print_json(resumed);
    } else {
        println!(
            "schedule {} resumed; next fire {} (fire times passed while paused are not caught up)",
            resumed.id,
            fire_time(resumed.next_fire_at_ms)
        );
    }
}

/// `schedules trigger`'s output.
pub(crate) fn print_triggered(id: &str, started: &ScheduleStarted, json: bool) {
    if json {
        print_json(started);
    } else if started.created {
        println!("schedule {id} triggered: run {}", started.run_id);
    } else {
        println!(
            "schedule {id} was triggered this second already: run {}",
            started.run_id
        );
    }
}

/// `schedules backfill`'s output: each fire time and its run, new or existing.
pub(crate) fn print_backfill(id: &str, runs: &[BackfillRun], json: bool) {
    if json {
        print_json(&runs);
        return;
    }
    let created = runs.iter().filter(|run| run.created).count();
    println!(
        "schedule {id}: {} fire times, {created} runs started, {} had their run already",
        runs.len(),
        runs.len() - created
    );
    for run in runs {
        let state = if run.created { "started" } else { "existing" };
        println!(
            "  {}  {}  {state}",
            timestamp(run.scheduled_at_ms),
            run.run_id
        );
    }
}

/// `schedules delete`'s output.
pub(crate) fn print_deleted(id: &str) {
    println!("schedule {id} deleted (its runs stay)");
}

/// A `--from`/`--to` time as unix ms, or the usage error naming it.
pub(crate) fn time_arg(flag: &str, text: &str) -> Result<i64, CliError> {
    parse_timestamp(text).ok_or_else(|| {
        CliError::Usage(format!(
            "{flag} {text:?} is not an RFC 3339 time; write e.g. 2026-03-29T00:00:00Z"
        ))
    })
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
    println!("  catch-up:  {}", spec.catch_up);
    let overlap = match spec.overlap {
        OverlapPolicy::AllowAll => "allow all",
        OverlapPolicy::Skip => "skip while a run is going",
        OverlapPolicy::BufferOne => "buffer one while a run is going",
    };
    println!("  overlap:   {overlap}");
    let last = schedule
        .last_fire_at_ms
        .map_or_else(|| "never".to_owned(), timestamp);
    println!("  last fire: {last}");
    if let Some(buffered) = detail.buffered_ms {
        println!(
            "waiting: {} (for the running run to end)",
            timestamp(buffered)
        );
    }
    println!("next fire times:");
    for at in &detail.upcoming_ms {
        println!("  {}", fire_time(*at));
    }
    if detail.recent_runs.is_empty() {
        println!("recent runs: none");
    } else {
        println!("recent runs (newest first):");
        for run in &detail.recent_runs {
            println!("  {}  {}  {}", run.created_at, run.run_id, run.status);
        }
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
