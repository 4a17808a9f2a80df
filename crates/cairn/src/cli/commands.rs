//! What each command does.

use std::process::ExitCode;

use cairn_core::{RunStatus, StepKey};
use cairn_engine::CancellationToken;
use cairn_engine::{Engine, RunDetailView, RunView, StartOptions};
use cairn_store::{PatchFilter, RunFilter, RunId, RunRecord};
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
            let status = status
                .map(|s| s.parse::<RunStatus>())
                .transpose()
                .map_err(CliError::Usage)?;
            let patch = patch_filter(with_patch, without_patch, workflow.as_deref())?;
            let filter = RunFilter {
                workflow,
                status,
                limit,
                // What retiring a patch asks about: the runs that will still replay.
                unended: patch.is_some() && status.is_none(),
                patch,
                ..RunFilter::default()
            };
            let runs = engine.list_runs(&filter).await?;
            if json {
                print_json(&runs.iter().map(RunView::from).collect::<Vec<_>>());
            } else if runs.is_empty() && filter.patch.is_some() {
                let which = if filter.unended { "unended " } else { "" };
                println!("no {which}runs match --with-patch/--without-patch");
            } else if runs.is_empty() && (filter.workflow.is_some() || filter.status.is_some()) {
                println!(
                    "no runs match --workflow/--status; `runs list` without them lists every run"
                );
            } else if runs.is_empty() {
                println!("no runs yet; start one with `run <workflow> --input '<json>'`");
            } else {
                println!("{}", view::runs_table(&runs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Get { run_id, json }) => {
            let detail = engine.get_run(parse_id(&run_id)?).await?;
            if json {
                print_json(&RunDetailView::from(&detail));
            } else {
                println!("{}", view::detail_text(&detail));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(RunsCommand::Retry { run_id, json }) => {
            let run_id = parse_id(&run_id)?;
            engine.retry(run_id).await?;
            if !json {
                eprintln!(
                    "retrying run {run_id}: completed steps are replayed, the rest run again"
                );
            }
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
            if !json {
                eprintln!("run {run_id} forked from {original} at step {from}");
            }
            follow(engine, run_id, json).await
        }
        Command::Runs(RunsCommand::Cancel {
            run_id,
            reason,
            json,
        }) => {
            let run_id = parse_id(&run_id)?;
            let previous = engine.cancel(run_id, &reason).await?;
            if json {
                print_json(
                    &serde_json::json!({"runId": run_id, "status": RunStatus::Canceled, "previousStatus": previous}),
                );
            } else {
                println!("canceled run {run_id} (it was {previous})");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(_) => worker(engine).await,
        #[cfg(feature = "server")]
        Command::Serve(args) => super::serve::serve(engine, args).await,
        Command::Hooks(command) => super::hooks::dispatch(engine, command, json).await,
        Command::Workflows(WorkflowsCommand::List { json }) => {
            let registry = engine.registry();
            if json {
                let workflows: Vec<_> = registry.workflows().collect();
                let actions: Vec<_> = registry.actions().collect();
                print_json(&serde_json::json!({"workflows": workflows, "actions": actions}));
            } else {
                println!("{}", view::registry_table(registry));
            }
            Ok(ExitCode::SUCCESS)
        }
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
    };
    let started = engine.start_json(&args.workflow, input, options).await?;
    if args.detach {
        if args.json {
            print_json(&serde_json::json!({"runId": started.run_id, "created": started.created}));
        } else {
            println!("{}", started.run_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        let verb = if started.created {
            "started"
        } else {
            "resuming existing"
        };
        eprintln!("{verb} run {} of {}", started.run_id, args.workflow);
    }
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
    let run = result?;
    print_outcome(&run, json);
    Ok(match run.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

fn print_outcome(run: &RunRecord, json: bool) {
    if json {
        print_json(&view::outcome_json(run));
        return;
    }
    let took = run
        .finished_at_ms
        .map(|end| view::duration(end - run.created_at_ms))
        .unwrap_or_default();
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
