//! `schedules …` with `--server`: the same commands over the server's `/schedules` API,
//! printed by the local commands' code.

use std::process::ExitCode;

use cairn_engine::{BackfillRun, ScheduleDetail, ScheduleStarted};
use cairn_store::ScheduleRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::Client;
use crate::cli::{
    CliError,
    args::SchedulesCommand,
    schedules::{
        print_backfill, print_created, print_deleted, print_get, print_list, print_paused,
        print_resumed, print_triggered, spec_of, time_arg,
    },
};

/// `GET /schedules`.
#[derive(Deserialize)]
struct Listed {
    schedules: Vec<ScheduleRecord>,
}

/// `POST /schedules/{id}/backfill`.
#[derive(Deserialize)]
struct Backfilled {
    runs: Vec<BackfillRun>,
}

/// Runs a `schedules` command against the server.
pub(crate) async fn dispatch(
    client: &Client,
    command: SchedulesCommand,
    input: Value,
) -> Result<ExitCode, CliError> {
    match command {
        SchedulesCommand::Create(args) => {
            let (id, spec, json) = spec_of(args, input);
            let body = json!({
                "workflow": spec.workflow,
                "input": spec.input,
                "cron": spec.expression,
                "timezone": spec.timezone,
                "catchUp": spec.catch_up,
                "overlap": spec.overlap,
            });
            let saved: ScheduleRecord = client.put(&["schedules", &id], &body).await?;
            print_created(&saved, json);
        }
        SchedulesCommand::List { json } => {
            let listed: Listed = client.get(&["schedules"], &[]).await?;
            print_list(&listed.schedules, json);
        }
        SchedulesCommand::Get { id, json } => {
            let detail: ScheduleDetail = client.get(&["schedules", &id], &[]).await?;
            print_get(&detail, json);
        }
        SchedulesCommand::Pause { id, json } => {
            let paused: ScheduleRecord =
                client.post(&["schedules", &id, "pause"], None, &[]).await?;
            print_paused(&paused, json);
        }
        SchedulesCommand::Resume { id, json } => {
            let resumed: ScheduleRecord = client
                .post(&["schedules", &id, "resume"], None, &[])
                .await?;
            print_resumed(&resumed, json);
        }
        SchedulesCommand::Trigger { id, json } => {
            let started: ScheduleStarted = client
                .post(&["schedules", &id, "trigger"], None, &[])
                .await?;
            print_triggered(&id, &started, json);
        }
        SchedulesCommand::Backfill { id, from, to, json } => {
            // Checked here too, so a typo is the same usage error as without --server.
            time_arg("--from", &from)?;
            time_arg("--to", &to)?;
            let body = json!({ "from": from, "to": to });
            let backfilled: Backfilled = client
                .post(&["schedules", &id, "backfill"], Some(&body), &[])
                .await?;
            print_backfill(&id, &backfilled.runs, json);
        }
        SchedulesCommand::Delete { id } => {
            client.delete(&["schedules", &id]).await?;
            print_deleted(&id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
