//! What each command does.

use std::process::ExitCode;

use cairn_core::{RunStatus, StepKey};
use cairn_engine::CancellationToken;
use cairn_engine::{ActionInfo, Engine, RunDetailView, RunView, StartOptions, WorkflowInfo};
use cairn_store::{PatchFilter, RunFilter, RunId};
use serde_json::Value;

use super::{
    CliError,
    args::{Command, RunArgs, RunsCommand, WorkflowsCommand},
    progress, view,
};

/// Runs `command` with its JSON argument (`run --input`, `hooks resume --payload`, already
/// read and parsed) and returns the process exit code.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: Command,
    json: Value,
    data_dir: &std::path::Path,
) -> Result<ExitCode, CliError> {
    match command {
        Command::Run(args) => start(engine, args, json).await,
        Command::Runs(RunsCommand::List {
            workflow,
            status,
            limit,
            with_patch,
            without_patch,
            json,
        }) => {
            let filter = runs_filter(workflow, status, limit, with_patch, without_patch)?;
            let runs = engine.list_runs(&filter).await?;
            print_runs(
                &runs.iter().map(RunView::from).collect::<Vec<_>>(),
                &filter,
                json,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Get { run_id, json }) => {
            let detail = engine.get_run(parse_id(&run_id)?).await?;
            print_detail(&RunDetailView::from(&detail), json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Retry { run_id, json }) => {
            let run_id = parse_id(&run_id)?;
            engine.retry(run_id).await?;
            say_retrying(run_id, json);
            follow(engine, run_id, json).await
        }
        Command::Runs(RunsCommand::Rerun { run_id, from, json }) => {
            let original = parse_id(&run_id)?;
            let options = StartOptions {
                trigger: Some("rerun".into()),
                execute_here: true,
                ..StartOptions::default()
            };
            let run_id = engine
                .rerun_from(original, &StepKey::custom(from.clone()), options)
                .await?;
            say_forked(run_id, original, &from, json);
            follow(engine, run_id, json).await
        }
        Command::Runs(RunsCommand::Cancel {
            run_id,
            reason,
            json,
        }) => {
            let run_id = parse_id(&run_id)?;
            let previous = engine.cancel(run_id, &reason).await?;
            print_canceled(run_id, previous, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(_) => worker(engine).await,
        #[cfg(feature = "server")]
        Command::Serve(args) => super::serve::serve(engine, args).await,
        Command::Hooks(command) => super::hooks::dispatch(engine, command, json).await,
        Command::Credentials(command) => {
            super::credentials::dispatch(engine, command, data_dir).await
        }
        Command::Schedules(command) => super::schedules::dispatch(engine, command, json).await,
        Command::Sources(command) => super::sources::dispatch(engine, command).await,
        Command::Webhooks(command) => super::webhooks::dispatch(engine, command).await,
        Command::Workflows(WorkflowsCommand::List { json }) => {
            let registry = engine.registry();
            let workflows: Vec<_> = registry.workflows().cloned().collect();
            let actions: Vec<_> = registry.actions().cloned().collect();
            print_registry(&workflows, &actions, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The filter of `runs list`, refused (exit 2) before anything is read when malformed.
pub(crate) fn runs_filter(
    workflow: Option<String>,
    status: Option<String>,
    limit: usize,
    with_patch: Option<String>,
    without_patch: Option<String>,
) -> Result<RunFilter, CliError> {
    let status = status
        .map(|s| s.parse::<RunStatus>())
        .transpose()
        .map_err(CliError::Usage)?;
    let patch = patch_filter(with_patch, without_patch, workflow.as_deref())?;
    Ok(RunFilter {
        workflow,
        status,
        limit,
        // What retiring a patch asks about: the runs that will still replay.
        unended: patch.is_some() && status.is_none(),
        patch,
        ..RunFilter::default()
    })
}

/// Prints `runs list`: a JSON array, a table, or why nothing matched `filter`.
pub(crate) fn print_runs(runs: &[RunView], filter: &RunFilter, json: bool) {
    if json {
        print_json(&runs);
    } else if runs.is_empty() && filter.patch.is_some() {
        let which = if filter.unended { "unended " } else { "" };
        println!("no {which}runs match --with-patch/--without-patch");
    } else if runs.is_empty() && (filter.workflow.is_some() || filter.status.is_some()) {
        println!("no runs match --workflow/--status; `runs list` without them lists every run");
    } else if runs.is_empty() {
        println!("no runs yet; start one with `run <workflow> --input '<json>'`");
    } else {
        println!("{}", view::runs_table(runs));
    }
}

/// Prints `workflows list`.
pub(crate) fn print_registry(workflows: &[WorkflowInfo], actions: &[ActionInfo], json: bool) {
    if json {
        print_json(&serde_json::json!({"workflows": workflows, "actions": actions}));
    } else {
        println!("{}", view::registry_table(workflows, actions));
    }
}

/// Prints `runs get`.
pub(crate) fn print_detail(detail: &RunDetailView, json: bool) {
    if json {
        print_json(detail);
    } else {
        println!("{}", view::detail_text(detail));
    }
}

/// Prints what `runs cancel` did.
pub(crate) fn print_canceled(run_id: RunId, previous: RunStatus, json: bool) {
    if json {
        print_json(
            &serde_json::json!({"runId": run_id, "status": RunStatus::Canceled, "previousStatus": previous}),
        );
    } else {
        println!("canceled run {run_id} (it was {previous})");
    }
}

/// Says on stderr (unless `json`) that `run` started or found its run.
pub(crate) fn say_started(run_id: RunId, workflow: &str, created: bool, json: bool) {
    if !json {
        let verb = if created {
            "started"
        } else {
            "resuming existing"
        };
        eprintln!("{verb} run {run_id} of {workflow}");
    }
}

/// Says on stderr (unless `json`) that a run is being retried.
pub(crate) fn say_retrying(run_id: RunId, json: bool) {
    if !json {
        eprintln!("retrying run {run_id}: completed steps are replayed, the rest run again");
    }
}

/// Says on stderr (unless `json`) that a run was forked.
pub(crate) fn say_forked(run_id: RunId, original: RunId, from: &str, json: bool) {
    if !json {
        eprintln!("run {run_id} forked from {original} at step {from}");
    }
}

/// What `run --detach` prints.
pub(crate) fn print_detached(run_id: RunId, created: bool, json: bool) {
    if json {
        print_json(&serde_json::json!({"runId": run_id, "created": created}));
    } else {
        println!("{run_id}");
    }
}

/// The patch filter of `runs list`. Every run of another workflow lacks a patch's marker, so
/// `--without-patch` needs `--workflow`.
fn patch_filter(
    with: Option<String>,
    without: Option<String>,
    workflow: Option<&str>,
) -> Result<Option<PatchFilter>, CliError> {
    match (with, without) {
        (Some(id), _) => Ok(Some(PatchFilter::With(id))),
        (None, Some(id)) if workflow.is_none() => Err(CliError::Usage(format!(
            "--without-patch {id} needs --workflow <slug>: the workflow whose code calls \
             ctx.patched({id:?}) (runs of every other workflow lack the marker too)"
        ))),
        (None, Some(id)) => Ok(Some(PatchFilter::Without(id))),
        (None, None) => Ok(None),
    }
}

/// `run`: start (or find, by idempotency key) a run with `input` and execute it here.
async fn start(engine: &Engine, args: RunArgs, input: Value) -> Result<ExitCode, CliError> {
    let options = StartOptions {
        idempotency_key: args.idempotency_key,
        trigger: Some("cli".into()),
        execute_here: !args.detach,
        owner: Some(args.owner.owner()),
    };
    let started = engine.start_json(&args.workflow, input, options).await?;
    if args.detach {
        print_detached(started.run_id, started.created, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    say_started(started.run_id, &args.workflow, started.created, args.json);
    follow(engine, started.run_id, args.json).await
}

/// Executes `run_id` here with live progress (unless `json`), prints how it ended and
/// returns the exit code. Ctrl-C stops at the next step boundary; the run stays resumable.
async fn follow(engine: &Engine, run_id: RunId, json: bool) -> Result<ExitCode, CliError> {
    let display = (!json).then(|| tokio::spawn(progress::show(engine.subscribe(), run_id)));
    let interrupt = {
        let engine = engine.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "stopping after the step in flight; the run stays resumable (`worker` finishes it)"
                );
                engine.stop();
            }
        })
    };
    let result = engine.execute(run_id).await;
    interrupt.abort();
    if let Some(display) = display {
        tokio::task::yield_now().await;
        display.abort();
    }
    Ok(outcome(&RunView::from(&result?), json))
}

/// Prints how a followed run ended (or where it stopped) and returns the exit code: 0 when it
/// succeeded, else 1.
pub(crate) fn outcome(run: &RunView, json: bool) -> ExitCode {
    print_outcome(run, json);
    match run.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn print_outcome(run: &RunView, json: bool) {
    if json {
        print_json(&view::outcome_json(run));
        return;
    }
    let took = run.duration_ms.map(view::duration).unwrap_or_default();
    match run.status {
        RunStatus::Succeeded => {
            eprintln!("✓ run {} succeeded in {took}", run.run_id);
            let output = run.output.clone().unwrap_or(Value::Null);
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_default()
            );
        }
        RunStatus::Failed | RunStatus::Canceled => {
            let error = run
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            eprintln!("✗ run {} {} after {took}: {error}", run.run_id, run.status);
            eprintln!(
                "  inspect it with `runs get {}`; replay it with `runs retry {}`",
                run.run_id, run.run_id
            );
        }
        status => eprintln!("run {} is {status}; a `worker` will finish it", run.run_id),
    }
}

/// `worker`: executes queued runs until Ctrl-C or SIGTERM; a second signal exits at once.
async fn worker(engine: &Engine) -> Result<ExitCode, CliError> {
    let shutdown = CancellationToken::new();
    let (signals, stopping) = (shutdown.clone(), engine.clone());
    tokio::spawn(async move {
        wait_for_signal().await;
        // No step starts after this line; the message tells scripts (and tests) so.
        stopping.stop();
        eprintln!("stopping: finishing steps in flight (signal again to exit at once)");
        signals.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    eprintln!(
        "worker {} executing runs of: {}",
        engine.worker_id(),
        engine
            .registry()
            .workflows()
            .map(|w| w.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    engine.run_worker(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(term) => { term.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

pub(crate) fn parse_id(text: &str) -> Result<RunId, CliError> {
    text.parse().map_err(CliError::Usage)
}

pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
