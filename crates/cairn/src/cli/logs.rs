//! Log lines on stderr (`CAIRN_LOG`, default `warn`): coloured on a terminal, plain when stderr
//! is a file or a pipe or when `NO_COLOR` is set (<https://no-color.org>), so captured logs
//! carry no escape codes. Panics the engine catches are not printed as the default
//! "thread … panicked" report: the run's recorded error (`Panic`, or the attempt's error)
//! says what happened, in one line.

use std::{ffi::OsString, io::IsTerminal};

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the process's log subscriber (once; later calls change nothing).
pub(crate) fn init() {
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let colour = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .try_init();
}

/// Installs a panic hook that keeps the panics the engine catches (a workflow body's, an
/// action attempt's) off stderr, but for a `debug` log line with the panic's location
/// (`CAIRN_LOG=debug`); every other panic goes to the hook installed before (Rust's default:
/// the message, the location, and a backtrace on request).
pub(crate) fn quiet_caught_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if cairn_engine::panic_is_caught() {
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("non-text panic payload");
            tracing::debug!(%location, "caught a panic (recorded on its run): {message}");
        } else {
            report(info);
        }
    }));
}

/// Whether log lines get colours: only on a terminal, and not when `NO_COLOR` holds any
/// non-empty value (an empty one counts as unset, as no-color.org says).
fn colour(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "not when piped");
        for value in ["1", "0", "false", "yes"] {
            assert!(!colour(true, Some(value.into())), "NO_COLOR={value}");
        }
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
    }
}
