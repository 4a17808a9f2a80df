//! `cairn-sim`: the simulator from the command line.
//!
//! ```text
//! cairn-sim soak --minutes 60 [--seed N]   seeds N, N+1, … (default: from the commit) until time is up
//! cairn-sim replay --seed N                one seed, its whole trace printed
//! ```
//! Exits 1 at the first seed that breaks an invariant, printing how to replay it.

use std::{process::ExitCode, time::Instant};

use cairn_sim::{commit, derived_seed, parse_seed, run_seed};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let seed = flag("--seed")
        .map(|text| parse_seed(&text).unwrap_or_else(|| usage("--seed takes a number, e.g. 0x1f")));
    match args.first().map(String::as_str) {
        Some("soak") => {
            let minutes: u64 = flag("--minutes")
                .map(|text| {
                    text.parse()
                        .unwrap_or_else(|_| usage("--minutes takes a whole number"))
                })
                .unwrap_or(60);
            soak(minutes, seed)
        }
        Some("replay") => {
            let seed = seed.unwrap_or_else(|| usage("replay needs --seed"));
            let report = run_seed(seed, None, true);
            println!("{}", report.trace.join("\n"));
            println!("trace hash {:#018x}", report.trace_hash);
            match report.violation {
                Some(_) => {
                    eprintln!("{}", report.failure(&commit()));
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        _ => usage("the command is `soak` or `replay`"),
    }
}

/// Seeds one after another until `minutes` have passed.
fn soak(minutes: u64, first: Option<u64>) -> ExitCode {
    let commit = commit();
    let until = Instant::now() + std::time::Duration::from_secs(minutes * 60);
    let (mut seeds, mut runs, mut steps) = (0u64, 0usize, 0usize);
    while Instant::now() < until {
        let seed = first.map_or_else(
            || derived_seed(&commit, seeds),
            |seed| seed.wrapping_add(seeds),
        );
        let report = run_seed(seed, None, false);
        seeds += 1;
        runs += report.runs;
        steps += report.steps;
        if report.violation.is_some() {
            eprintln!("{}", report.failure(&commit));
            return ExitCode::FAILURE;
        }
        if seeds % 100 == 0 {
            println!("soak: {seeds} seeds, {runs} runs, {steps} steps, no violation");
        }
    }
    println!("soak: {seeds} seeds, {runs} runs, {steps} steps in {minutes} min, no violation");
    ExitCode::SUCCESS
}

/// Prints what was wrong and how to call the command, and exits.
fn usage(problem: &str) -> ! {
    eprintln!(
        "cairn-sim: {problem}\nusage: cairn-sim soak [--minutes N] [--seed N] | cairn-sim replay --seed N"
    );
    std::process::exit(2)
}
