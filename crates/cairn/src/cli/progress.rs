//! Live step progress while a run executes (here, or on a server followed with `--server`): a
//! spinner per step on a terminal, one plain line per change otherwise. Written to stderr, so
//! stdout carries only the result.

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use cairn_core::{Event, StepKey, StepKind};
use cairn_engine::RunEvent;
use cairn_store::RunId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::view::{duration, short};

/// Shows the steps of `run_id` as their events arrive, until the receiver closes or the task
/// is aborted.
pub(crate) async fn show(mut events: Receiver<RunEvent>, run_id: RunId) {
    let mut display = Display::new();
    loop {
        match events.recv().await {
            Ok(event) if event.run_id == run_id => display.on(event.at_ms, &event.event),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// What is shown of one run's steps.
pub(crate) struct Display {
    bars: Option<MultiProgress>,
    steps: HashMap<StepKey, (ProgressBar, i64)>,
}

impl Display {
    /// Shows nothing yet.
    pub(crate) fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Display {
            bars,
            steps: HashMap::new(),
        }
    }

    /// Shows `event`, committed at `at` (unix ms).
    pub(crate) fn on(&mut self, at: i64, event: &Event) {
        match event {
            Event::StepStarted {
                key,
                kind,
                attempt,
                input,
                ..
            } => {
                let text = if let Some(wake) = input["wakeAtMs"]
                    .as_i64()
                    .filter(|_| *kind == StepKind::Sleep)
                {
                    format!("{key} sleeping until {}", super::view::timestamp(wake))
                } else if *attempt > 1 {
                    format!("{key} ({kind}, attempt {attempt})")
                } else {
                    format!("{key} ({kind})")
                };
                self.start(key, at, text);
            }
            Event::StepAttemptFailed {
                key,
                attempt,
                error,
                retry_at_ms,
            } => {
                let wait = duration((retry_at_ms - at).max(0));
                self.update(
                    key,
                    format!(
                        "{key} attempt {attempt} failed: {}; retrying in {wait}",
                        short(&error.message, 80)
                    ),
                );
            }
            Event::StepCompleted { key, kind, .. } => {
                let took = self
                    .steps
                    .get(key)
                    .map(|(_, started)| duration(at - started));
                let text = match took {
                    Some(took) => format!("✓ {key} ({kind}) {took}"),
                    None => format!("✓ {key} ({kind})"),
                };
                self.finish(key, text);
            }
            Event::HookCreated { key, token, .. } => {
                self.start(
                    key,
                    at,
                    format!("{key} waiting for a resume: hooks resume {token} --payload '<json>'"),
                );
            }
            Event::HookResumed { key, .. } => self.finish(key, format!("✓ {key} (hook) resumed")),
            Event::StepFailed {
                key,
                error,
                attempts,
                ..
            } => {
                self.finish(
                    key,
                    format!(
                        "✗ {key} failed after {attempts} attempt(s): {}",
                        short(&error.message, 100)
                    ),
                );
            }
            _ => {}
        }
    }

    fn start(&mut self, key: &StepKey, at: i64, text: String) {
        match &self.bars {
            Some(bars) => {
                let bar = self
                    .steps
                    .remove(key)
                    .map(|(bar, _)| bar)
                    .unwrap_or_else(|| {
                        let bar = bars.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.enable_steady_tick(Duration::from_millis(100));
                        bar
                    });
                bar.set_message(text);
                self.steps.insert(key.clone(), (bar, at));
            }
            None => {
                eprintln!("▸ {text}");
                self.steps
                    .entry(key.clone())
                    .or_insert((ProgressBar::hidden(), at));
            }
        }
    }

    fn update(&mut self, key: &StepKey, text: String) {
        match (&self.bars, self.steps.get(key)) {
            (Some(_), Some((bar, _))) => bar.set_message(text),
            _ => eprintln!("  {text}"),
        }
    }

    fn finish(&mut self, key: &StepKey, text: String) {
        match (&self.bars, self.steps.get(key)) {
            (Some(_), Some((bar, _))) => bar.finish_with_message(text),
            (Some(bars), None) => {
                let _ = bars.println(text);
            }
            (None, _) => eprintln!("{text}"),
        }
    }
}
