//! Crash points: named places in the engine where a test can make the worker process die, as
//! `kill -9` would, at an exact moment (between an action's attempt and the commit of its
//! result, say) instead of at a random one.
//!
//! Built on the `fail` crate and compiled only with this crate's `failpoints` feature: without
//! it, [`crash_point!`] expands to nothing and production builds carry no
//! trace of the points. With it, a process that called `fail::FailScenario::setup()` reads
//! `FAILPOINTS` (e.g. `FAILPOINTS=after-action-before-commit=3*off->panic`: the fourth pass
//! dies), and a point whose action is `panic` or `return` **aborts the process** there: no
//! unwinding, no destructor, no further write, so the store sees exactly what a `kill -9`
//! would leave. A plain panic would not do: the engine catches the panics of workflow bodies
//! and action attempts, and a panic in a spawned task ends only that task. Other actions
//! (`sleep`, `pause`, `print`, …) behave as the `fail` crate documents.
//!
//! The points are listed in TESTING.md.

/// Dies here (see the module docs) when the fail point `$name` is configured to `panic` or
/// `return`; nothing at all without the `failpoints` feature.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::base::crash_points::evaluate($name);
    };
}
pub(crate) use crash_point;

/// Evaluates the fail point `name` and aborts the process if it fires.
#[cfg(feature = "failpoints")]
pub(crate) fn evaluate(name: &str) {
    // `fail_point!` panics for `panic` and returns `Some` for `return`; both mean: die here.
    // The panic hook still runs first (the CLI's prints nothing for a panic the engine
    // would catch), and the abort follows before anything unwinds.
    let fired = std::panic::catch_unwind(|| {
        fail::fail_point!(name, |_| true);
        false
    });
    if !matches!(fired, Ok(false)) {
        use std::io::Write;
        // Straight to the handle: a test reads this line to know where the process died.
        let _ = writeln!(
            std::io::stderr(),
            "crash point {name}: the process dies here"
        );
        std::process::abort();
    }
}
