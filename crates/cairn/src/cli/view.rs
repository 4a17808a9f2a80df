//! How runs and steps are shown on a terminal: comfy-table tables and short texts. Everything
//! here reads the engine's views (`cairn_engine::RunView`, `RunDetailView`), the JSON shapes
//! shared with the HTTP API and the testing harness, so a run read from the local store and
//! one read from a server (`--server`) print alike.

use cairn_core::{ErrorInfo, HookInput, SleepInput, StepKind, StepStatus};
pub(crate) use cairn_engine::timestamp;
use cairn_engine::{ActionInfo, RunDetailView, RunView, WorkflowInfo};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

/// Milliseconds as a short human duration (`12 ms`, `1.5 s`, `3 min`).
pub(crate) fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        ms => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// The short result of a run: what `run --json` prints.
pub(crate) fn outcome_json(run: &RunView) -> Value {
    json!({
        "runId": run.run_id,
        "status": run.status,
        "output": run.output,
        "error": run.error,
    })
}

pub(crate) fn table() -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table
}

/// Text cut to `max` characters, on one line.
pub(crate) fn short(text: &str, max: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn error_text(error: &Option<ErrorInfo>) -> String {
    error.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// `runs list` as a table.
pub(crate) fn runs_table(runs: &[RunView]) -> Table {
    let mut table = table();
    table.set_header([
        "RUN ID", "WORKFLOW", "STATUS", "CREATED", "DURATION", "ERROR",
    ]);
    for run in runs {
        table.add_row([
            run.run_id.to_string(),
            run.workflow.clone(),
            run.status.to_string(),
            run.created_at.clone(),
            run.duration_ms.map(duration).unwrap_or_default(),
            short(&error_text(&run.error), 60),
        ]);
    }
    table
}

/// `runs get` as text: the run, then a table of its steps.
pub(crate) fn detail_text(detail: &RunDetailView) -> String {
    let run = &detail.run;
    let mut out = format!(
        "run       {}\nworkflow  {}\nstatus    {}\n",
        run.run_id, run.workflow, run.status
    );
    out += &format!("created   {} ({})\n", run.created_at, run.trigger);
    let owner = &run.owner;
    out += &format!(
        "owner     organization {}, project {}",
        owner.org, owner.project
    );
    if let Some(user) = &owner.user {
        out += &format!(", user {user}");
    }
    out += "\n";
    if let (Some(end), Some(took)) = (&run.finished_at, run.duration_ms) {
        out += &format!("finished  {end} after {}\n", duration(took));
    }
    if let Some(parent) = run.parent_run_id {
        out += &format!("parent    {parent}\n");
    }
    if let Some(fork) = &run.forked_from {
        out += &format!("forked    from {} at step {}\n", fork.run_id, fork.step);
    }
    out += &format!("input     {}\n", run.input);
    if let Some(output) = &run.output {
        out += &format!("output    {output}\n");
    }
    if let Some(error) = &run.error {
        out += &format!("error     {error}\n");
    }
    let mut steps = table();
    steps.set_header([
        "STEP",
        "KIND",
        "STATUS",
        "ATTEMPTS",
        "DURATION",
        "OUTPUT / ERROR",
    ]);
    for step in &detail.steps {
        let result = match (&step.output, &step.error, step.status) {
            (_, Some(error), _) => error.message.clone(),
            (Some(output), None, _) => output.to_string(),
            (None, None, StepStatus::Sleeping) => step
                .input
                .as_ref()
                .filter(|_| step.kind == StepKind::Sleep)
                .and_then(SleepInput::from_value)
                .map(|sleep| format!("until {}", timestamp(sleep.wake_at_ms)))
                .unwrap_or_default(),
            (None, None, StepStatus::Waiting) => step
                .input
                .as_ref()
                .filter(|_| step.kind == StepKind::Hook)
                .and_then(HookInput::from_value)
                .map(|hook| format!("waiting for `hooks resume {}`", hook.token))
                .unwrap_or_default(),
            (None, None, _) => String::new(),
        };
        steps.add_row([
            step.key.to_string(),
            step.kind.to_string(),
            format!("{:?}", step.status).to_lowercase(),
            step.attempts.to_string(),
            step.duration_ms.map(duration).unwrap_or_default(),
            short(&result, 70),
        ]);
    }
    out += &steps.to_string();
    for step in &detail.steps {
        // Failed and interrupted attempts (a step that ended well may have had some).
        for failed in &step.attempt_errors {
            let kind = format!("{:?}", failed.error.kind).to_lowercase();
            out += &format!(
                "\nattempt   step {} attempt {} ({kind}): {}",
                step.key, failed.attempt, failed.error.message
            );
        }
        for warning in &step.warnings {
            out += &format!("\nwarning   step {}: {warning}", step.key);
        }
        for used in &step.credentials {
            out += &format!(
                "\ncredential step {}: {} {} ({} scope)",
                step.key, used.key, used.id, used.scope
            );
        }
    }
    out
}

/// `workflows list` as a table.
pub(crate) fn registry_table(workflows: &[WorkflowInfo], actions: &[ActionInfo]) -> Table {
    let mut table = table();
    table.set_header(["TYPE", "SLUG", "NAME", "DESCRIPTION"]);
    for workflow in workflows {
        table.add_row([
            "workflow",
            &workflow.slug,
            &workflow.name,
            &workflow.description,
        ]);
    }
    for action in actions {
        table.add_row(["action", &action.slug, &action.name, &action.description]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_text_are_short() {
        assert_eq!(duration(12), "12 ms");
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }
}
