//! The CLI as a client of a running server (`--server URL` or `CAIRN_SERVER`): each command
//! makes the HTTP API call that matches its engine call, reads the engine's views back from
//! the JSON and prints them with the same code as the local command, so output and exit
//! codes are the same. No store is opened. Commands with no route (`worker`, `serve`,
//! `hooks list`, `runs list --with-patch`) are refused with exit 2.

mod client;
mod credentials;
mod follow;
mod schedules;

use std::process::ExitCode;

use cairn_core::RunStatus;
use cairn_engine::{ActionInfo, HookView, RunDetailView, RunView, WebhookDelivery, WorkflowInfo};
use cairn_store::{RunFilter, RunId};
use serde::Deserialize;
use serde_json::{Value, json};

use self::{
    client::Client,
    follow::{ShowFrom, follow},
};
use super::{
    CliError,
    args::{Command, HooksCommand, RunArgs, RunsCommand, WebhooksCommand, WorkflowsCommand},
    commands::{self, parse_id},
    hooks::print_resumed,
    webhooks,
};

/// Most runs one `GET /runs` page may hold (the server's limit).
const MAX_PAGE: usize = 1_000;

/// What `POST /workflows/{slug}` answers without `?wait`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    run_id: RunId,
    created: bool,
}

/// A page of `GET /runs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    runs: Vec<RunView>,
    next_cursor: Option<String>,
}

/// What `POST /runs/{id}/cancel` answers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Canceled {
    previous_status: RunStatus,
}

/// What `GET /webhooks/{endpoint}/deliveries` answers.
#[derive(Deserialize)]
struct DeliveryList {
    deliveries: Vec<WebhookDelivery>,
}

/// What `GET /workflows` answers.
#[derive(Deserialize)]
struct Registered {
    workflows: Vec<WorkflowInfo>,
    actions: Vec<ActionInfo>,
}

/// Runs `command` against the server at `url`; `json` is its JSON argument (`run --input`,
/// `hooks resume --payload`), already read and parsed.
pub(crate) async fn dispatch(
    url: &str,
    command: Command,
    argument: Value,
) -> Result<ExitCode, CliError> {
    let client = Client::new(url)?;
    match command {
        Command::Run(args) => start(&client, args, argument).await,
        Command::Runs(RunsCommand::List {
            workflow,
            status,
            limit,
            with_patch,
            without_patch,
            json,
        }) => {
            if with_patch.is_some() || without_patch.is_some() {
                return Err(not_served("runs list --with-patch/--without-patch"));
            }
            let filter = commands::runs_filter(workflow, status, limit, None, None)?;
            commands::print_runs(&list(&client, &filter).await?, &filter, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Get { run_id, json }) => {
            let detail = get(&client, parse_id(&run_id)?).await?;
            commands::print_detail(&detail, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Retry { run_id, json }) => {
            let run_id = parse_id(&run_id)?;
            // Follow from the end of the log as it is now: what the retry adds.
            let last = get(&client, run_id).await?.events.last().map(|e| e.seq);
            let id = run_id.to_string();
            client
                .post::<Value>(&["runs", &id, "retry"], None, &[])
                .await?;
            commands::say_retrying(run_id, json);
            follow(&client, run_id, ShowFrom::After(last.unwrap_or(0)), json).await
        }
        Command::Runs(RunsCommand::Rerun { run_id, from, json }) => {
            let original = parse_id(&run_id)?;
            let id = original.to_string();
            let body = json!({ "fromStep": from });
            let forked: RunView = client
                .post(&["runs", &id, "rerun"], Some(&body), &[])
                .await?;
            commands::say_forked(forked.run_id, original, &from, json);
            follow(&client, forked.run_id, ShowFrom::Step(from), json).await
        }
        Command::Runs(RunsCommand::Cancel {
            run_id,
            reason,
            json,
        }) => {
            let run_id = parse_id(&run_id)?;
            let id = run_id.to_string();
            let body = json!({ "reason": reason });
            let canceled: Canceled = client
                .post(&["runs", &id, "cancel"], Some(&body), &[])
                .await?;
            commands::print_canceled(run_id, canceled.previous_status, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Hooks(HooksCommand::Resume { token, json, .. }) => {
            let hook: HookView = client
                .post(&["hooks", &token], Some(&argument), &[])
                .await?;
            print_resumed(&hook, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Hooks(HooksCommand::List { .. }) => Err(not_served("hooks list")),
        Command::Workflows(WorkflowsCommand::List { json }) => {
            let registered: Registered = client.get(&["workflows"], &[]).await?;
            commands::print_registry(&registered.workflows, &registered.actions, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(_) => Err(not_served("worker")),
        Command::Credentials(command) => credentials::dispatch(&client, command).await,
        Command::Schedules(command) => schedules::dispatch(&client, command, argument).await,
        Command::Sources(_) => Err(not_served("sources")),
        Command::Webhooks(WebhooksCommand::Deliveries {
            endpoint,
            limit,
            json,
        }) => {
            let listed: DeliveryList = client
                .get(
                    &["webhooks", &endpoint, "deliveries"],
                    &[("limit", limit.to_string())],
                )
                .await?;
            webhooks::print_deliveries(&endpoint, &listed.deliveries, json);
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "server")]
        Command::Serve(_) => Err(not_served("serve")),
    }
}

/// `run`: start (or find, by idempotency key) a run on the server and follow it there.
async fn start(client: &Client, args: RunArgs, input: Value) -> Result<ExitCode, CliError> {
    let owner = &args.owner;
    let headers: Vec<(&str, &str)> = [
        ("idempotency-key", args.idempotency_key.as_deref()),
        ("cairn-org", Some(owner.org.as_str())),
        ("cairn-project", Some(owner.project.as_str())),
        ("cairn-user", owner.user.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect();
    let started: Started = client
        .post(&["workflows", &args.workflow], Some(&input), &headers)
        .await?;
    if args.detach {
        commands::print_detached(started.run_id, started.created, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    commands::say_started(started.run_id, &args.workflow, started.created, args.json);
    // A new run is shown from its start; an existing one from where it is now, as `run` does
    // when it resumes one here.
    let from = if started.created {
        ShowFrom::Start
    } else {
        let last = get(client, started.run_id)
            .await?
            .events
            .last()
            .map(|e| e.seq);
        ShowFrom::After(last.unwrap_or(0))
    };
    follow(client, started.run_id, from, args.json).await
}

/// `runs list`: pages of `GET /runs` until `filter.limit` runs (or the last page).
async fn list(client: &Client, filter: &RunFilter) -> Result<Vec<RunView>, CliError> {
    let mut runs = Vec::new();
    let mut cursor: Option<String> = None;
    while runs.len() < filter.limit {
        let mut query = vec![(
            "limit",
            (filter.limit - runs.len()).min(MAX_PAGE).to_string(),
        )];
        if let Some(workflow) = &filter.workflow {
            query.push(("workflow", workflow.clone()));
        }
        if let Some(status) = filter.status {
            query.push(("status", status.to_string()));
        }
        if let Some(cursor) = cursor.take() {
            query.push(("cursor", cursor));
        }
        let page: Page = client.get(&["runs"], &query).await?;
        runs.extend(page.runs);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(runs)
}

async fn get(client: &Client, run_id: RunId) -> Result<RunDetailView, CliError> {
    client.get(&["runs", &run_id.to_string()], &[]).await
}

/// The refusal of a command that has no HTTP route.
fn not_served(command: &str) -> CliError {
    CliError::Usage(format!(
        "`{command}` is not available with --server (the HTTP API has no route for it): run it \
         where the store is, without --server and CAIRN_SERVER"
    ))
}
