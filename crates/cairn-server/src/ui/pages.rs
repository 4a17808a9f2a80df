//! The pages as askama templates (`templates/`, HTML-escaped, checked at compile time) and
//! what they show, made from the engine's views: runs as rows, a run with its step timeline,
//! payloads cut to 64 KB with a link to the whole JSON.

use askama::Template;
use cairn_core::{RunStatus, StepKind, StepStatus};
use cairn_engine::{RunDetailView, RunView, StepView};
use cairn_store::{RunId, RunSummary};
use serde_json::Value;

/// Payloads longer than this (bytes of pretty JSON) are cut, with a download link.
const SHOWN_PAYLOAD_BYTES: usize = 64 * 1024;

/// Steps a run's page shows at once (`?after=N` shows the ones after the N-th).
pub(crate) const STEP_WINDOW: usize = 500;

/// `/ui/runs`.
#[derive(Template)]
#[template(path = "runs.html")]
pub(crate) struct RunsPage {
    pub(crate) runs: Vec<RunRow>,
    /// Every workflow's slug, and whether the filter chose it.
    pub(crate) workflows: Vec<(String, bool)>,
    /// Every status, and whether the filter chose it.
    pub(crate) statuses: Vec<(&'static str, bool)>,
    /// The time range's ends and the search, as given.
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) search: String,
    /// The next page's URL.
    pub(crate) next: Option<String>,
}

/// `/ui/runs/{id}`.
#[derive(Template)]
#[template(path = "run.html")]
pub(crate) struct RunPage {
    pub(crate) run: RunShown,
    /// The window's steps.
    pub(crate) steps: Vec<StepRow>,
    /// Where the window is among the run's steps, when they do not fit in one.
    pub(crate) window: Option<StepWindow>,
    pub(crate) csrf: String,
    pub(crate) notice: Option<String>,
}

/// An error or a notice, with the way back.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub(crate) title: String,
    pub(crate) detail: String,
    pub(crate) back: String,
    pub(crate) back_label: String,
}

/// `/ui/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) next: String,
    pub(crate) error: Option<String>,
}

/// One run in the list.
pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) short_id: String,
    pub(crate) workflow: String,
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) duration: String,
    pub(crate) executions: u32,
}

impl RunRow {
    fn new(
        id: RunId,
        workflow: &str,
        status: RunStatus,
        created_at: String,
        duration_ms: Option<i64>,
        executions: u32,
    ) -> RunRow {
        let id = id.to_string();
        RunRow {
            short_id: short(&id),
            id,
            workflow: workflow.to_owned(),
            status: status.to_string(),
            created_at,
            duration: duration_ms.map(duration).unwrap_or_default(),
            executions,
        }
    }
}

impl From<&RunSummary> for RunRow {
    fn from(run: &RunSummary) -> Self {
        RunRow::new(
            run.run_id,
            &run.workflow,
            run.status,
            cairn_engine::timestamp(run.created_at_ms),
            run.finished_at_ms.map(|end| end - run.created_at_ms),
            run.executions,
        )
    }
}

impl From<&RunView> for RunRow {
    fn from(run: &RunView) -> Self {
        RunRow::new(
            run.run_id,
            &run.workflow,
            run.status,
            run.created_at.clone(),
            run.duration_ms,
            run.executions,
        )
    }
}

/// A run's header.
pub(crate) struct RunShown {
    pub(crate) id: String,
    pub(crate) short_id: String,
    pub(crate) workflow: String,
    pub(crate) status: String,
    pub(crate) owner: String,
    pub(crate) created_at: String,
    pub(crate) trigger: String,
    pub(crate) finished_at: Option<String>,
    pub(crate) duration: String,
    pub(crate) parent: Option<String>,
    pub(crate) forked_from: Option<(String, String)>,
    pub(crate) input: Shown,
    pub(crate) output: Option<Shown>,
    pub(crate) error: Option<String>,
    pub(crate) can_retry: bool,
    pub(crate) can_cancel: bool,
    /// Whether the page follows the run (it has not ended).
    pub(crate) live: bool,
    /// The tokens its model calls used, in and out, when it made any.
    pub(crate) tokens: Option<String>,
}

/// A payload as shown: pretty JSON, cut when long.
pub(crate) struct Shown {
    pub(crate) text: String,
    /// The whole payload's size, when it was cut.
    pub(crate) truncated_from: Option<usize>,
    /// Where the whole payload is.
    pub(crate) download: String,
}

impl Shown {
    fn of(value: &Value, download: String) -> Shown {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        if text.len() <= SHOWN_PAYLOAD_BYTES {
            return Shown {
                text,
                truncated_from: None,
                download,
            };
        }
        let mut cut = SHOWN_PAYLOAD_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Shown {
            truncated_from: Some(text.len()),
            text: format!("{}…", &text[..cut]),
            download,
        }
    }
}

/// What a model call (an `llm` step) recorded of itself: the fields of `cairn_llm`'s
/// `LlmResponse` that the page shows (read from the step's output; the rest is ignored).
#[derive(serde::Deserialize)]
struct ModelCall {
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    latency_ms: u64,
}

impl ModelCall {
    /// The call `step` recorded, if it is a completed model call.
    fn of(step: &StepView) -> Option<ModelCall> {
        if step.kind != StepKind::Llm {
            return None;
        }
        serde_json::from_value(step.output.clone()?).ok()
    }
}

/// The steps a run's page shows, of all its steps, and the links to the windows beside.
pub(crate) struct StepWindow {
    /// The first and last steps shown (counted from 1), of `total`.
    pub(crate) first: usize,
    pub(crate) last: usize,
    pub(crate) total: usize,
    /// The window before this one, and the one after.
    pub(crate) earlier: Option<String>,
    pub(crate) later: Option<String>,
}

impl StepWindow {
    /// The window of the steps after the `after`-th, of `total`, on run `id`'s page.
    fn new(id: &str, after: usize, total: usize) -> StepWindow {
        let last = (after + STEP_WINDOW).min(total);
        let link = |after: usize| format!("/ui/runs/{id}?after={after}");
        StepWindow {
            first: after + 1,
            last,
            total,
            earlier: (after > 0).then(|| link(after.saturating_sub(STEP_WINDOW))),
            later: (last < total).then(|| link(last)),
        }
    }
}

/// One step of the timeline.
pub(crate) struct StepRow {
    /// Its place among the run's steps, from 1.
    pub(crate) number: usize,
    pub(crate) key: String,
    pub(crate) kind: String,
    /// A model call's model, tokens and latency.
    pub(crate) model: Option<String>,
    pub(crate) status: String,
    pub(crate) note: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) offset: String,
    pub(crate) duration: String,
    pub(crate) offset_percent: u32,
    pub(crate) width_percent: u32,
    pub(crate) credentials: Vec<String>,
    pub(crate) input: Option<Shown>,
    pub(crate) output: Option<Shown>,
    /// Failed or interrupted attempts: number and error.
    pub(crate) failures: Vec<(u32, String)>,
    pub(crate) error: Option<String>,
}

/// The run page's content for `detail` (times relative to the run's start), showing the
/// steps after the `after`-th (at most [`STEP_WINDOW`]; `after` is below the step count).
pub(crate) fn run_page(
    detail: &RunDetailView,
    csrf: String,
    notice: Option<String>,
    after: usize,
) -> RunPage {
    let run = &detail.run;
    let id = run.run_id.to_string();
    let download = |part: &str, step: Option<&str>| {
        let step = step
            .map(|key| format!("&step={}", encode(key)))
            .unwrap_or_default();
        format!("/ui/runs/{id}/payload?part={part}{step}")
    };
    let owner = &run.owner;
    let mut owner_text = format!("organization {}, project {}", owner.org, owner.project);
    if let Some(user) = &owner.user {
        owner_text.push_str(&format!(", user {user}"));
    }
    let shown = RunShown {
        short_id: short(&id),
        workflow: run.workflow.clone(),
        status: run.status.to_string(),
        owner: owner_text,
        created_at: run.created_at.clone(),
        trigger: run.trigger.clone(),
        finished_at: run.finished_at.clone(),
        duration: run.duration_ms.map(duration).unwrap_or_default(),
        parent: run.parent_run_id.map(|parent| parent.to_string()),
        forked_from: run
            .forked_from
            .as_ref()
            .map(|fork| (fork.run_id.to_string(), fork.step.to_string())),
        input: Shown::of(&run.input, download("input", None)),
        output: run
            .output
            .as_ref()
            .map(|output| Shown::of(output, download("output", None))),
        error: run.error.as_ref().map(|error| error.message.clone()),
        can_retry: matches!(run.status, RunStatus::Failed | RunStatus::Canceled),
        can_cancel: !run.status.is_terminal(),
        live: !run.status.is_terminal(),
        tokens: tokens(&detail.steps),
        id: id.clone(),
    };
    let start = parse_ms(&run.created_at);
    let end = detail
        .steps
        .iter()
        .filter_map(|step| step.finished_at.as_deref().map(parse_ms))
        .chain(run.finished_at.as_deref().map(parse_ms))
        .fold(start + 1, i64::max);
    let span = (end - start).max(1);
    let total = detail.steps.len();
    let steps = detail
        .steps
        .iter()
        .enumerate()
        .skip(after)
        .take(STEP_WINDOW)
        .map(|(index, step)| step_row(index + 1, step, start, span, &download))
        .collect();
    RunPage {
        window: (total > STEP_WINDOW).then(|| StepWindow::new(&id, after, total)),
        run: shown,
        steps,
        csrf,
        notice,
    }
}

/// A run's model calls' tokens: `N (I in, O out) over C calls`, or `None` without any.
fn tokens(steps: &[StepView]) -> Option<String> {
    let calls: Vec<ModelCall> = steps.iter().filter_map(ModelCall::of).collect();
    if calls.is_empty() {
        return None;
    }
    let input: u64 = calls.iter().map(|call| call.input_tokens).sum();
    let output: u64 = calls.iter().map(|call| call.output_tokens).sum();
    Some(format!(
        "{} ({input} in, {output} out) over {} model calls",
        input + output,
        calls.len()
    ))
}

fn step_row(
    number: usize,
    step: &StepView,
    start: i64,
    span: i64,
    download: &dyn Fn(&str, Option<&str>) -> String,
) -> StepRow {
    let key = step.key.to_string();
    let began = parse_ms(&step.started_at) - start;
    let took = step.duration_ms.unwrap_or(0);
    let percent = |ms: i64| u32::try_from((ms.clamp(0, span) * 100) / span).unwrap_or(100);
    let note = match (step.status, step.kind) {
        (StepStatus::Sleeping, StepKind::Sleep) => step
            .input
            .as_ref()
            .and_then(cairn_core::SleepInput::from_value)
            .map(|sleep| format!("until {}", cairn_engine::timestamp(sleep.wake_at_ms))),
        (StepStatus::Waiting, StepKind::Hook) => Some("waiting for its hook".to_owned()),
        _ => None,
    };
    StepRow {
        kind: step.kind.to_string(),
        model: ModelCall::of(step).map(|call| {
            format!(
                "{}: {} in, {} out tokens, {} ms",
                call.model, call.input_tokens, call.output_tokens, call.latency_ms
            )
        }),
        status: format!("{:?}", step.status).to_lowercase(),
        note,
        attempts: step.attempts,
        offset: duration(began.max(0)),
        duration: step.duration_ms.map(duration).unwrap_or_default(),
        offset_percent: percent(began),
        width_percent: percent(took).max(1),
        credentials: step
            .credentials
            .iter()
            .map(|used| format!("{} {} ({} scope)", used.key, used.id, used.scope))
            .collect(),
        input: step
            .input
            .as_ref()
            .map(|input| Shown::of(input, download("input", Some(&key)))),
        output: step
            .output
            .as_ref()
            .map(|output| Shown::of(output, download("output", Some(&key)))),
        failures: step
            .attempt_errors
            .iter()
            .map(|failed| (failed.attempt, failed.error.message.clone()))
            .collect(),
        error: step.error.as_ref().map(|error| error.message.clone()),
        number,
        key,
    }
}

/// The first 8 characters of an id, for tables (the full id is in the link and the page).
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// `1.2 s`, `340 ms`, `2 min 3 s`, `3 h 0 min`.
pub(crate) fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1_000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// Unix ms of an RFC 3339 time the views print (0 if it does not parse).
fn parse_ms(text: &str) -> i64 {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .unwrap_or(0)
}

/// `text` percent-encoded for a query string.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_payloads_are_cut_with_their_size_and_short_ones_are_not() {
        let small = Shown::of(&serde_json::json!({"a": 1}), "d".into());
        assert_eq!(small.truncated_from, None);
        let big = Shown::of(&serde_json::json!({"a": "é".repeat(40_000)}), "d".into());
        let size = big.truncated_from.expect("cut");
        assert!(size > SHOWN_PAYLOAD_BYTES && big.text.len() <= SHOWN_PAYLOAD_BYTES + 3);
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(encode("a b#1"), "a%20b%231");
    }
}
