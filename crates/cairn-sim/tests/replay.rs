//! One seed is one execution: run twice, it gives the same trace, bit for bit (invariant 6,
//! FoundationDB's unseed check). With `CAIRN_SIM_SEED=0x…` this replays that seed (e.g. one
//! a failure printed) and prints its whole trace:
//! `CAIRN_SIM_SEED=0x… cargo test -p cairn-sim --release replay -- --nocapture`.

use cairn_sim::{commit, derived_seed, parse_seed, run_seed};

#[test]
fn replay() {
    let chosen = std::env::var("CAIRN_SIM_SEED").ok();
    let seeds: Vec<u64> = match &chosen {
        Some(text) => vec![parse_seed(text).expect("CAIRN_SIM_SEED is a number, e.g. 0x1f")],
        None => (0..3).map(|n| derived_seed("replay", n)).collect(),
    };
    for seed in seeds {
        let first = run_seed(seed, None, chosen.is_some());
        if chosen.is_some() {
            println!("{}", first.trace.join("\n"));
        }
        let second = run_seed(seed, None, false);
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed:#x} ran twice gave two traces: something in the engine or the simulator \
             is not driven by the seed"
        );
        assert!(first.violation.is_none(), "{}", first.failure(&commit()));
        println!(
            "seed {seed:#x}: trace hash {:#018x}, {} runs, {} steps, {} ms virtual",
            first.trace_hash, first.runs, first.steps, first.virtual_ms
        );
    }
}
