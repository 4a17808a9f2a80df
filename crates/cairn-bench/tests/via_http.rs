//! `--via http` end to end, with tiny sizes: the binary serves the engine on a loopback port,
//! drives it over HTTP after the in-process measurements, and reports both with their ratios
//! and the HTTP targets; without `--via http` none of that appears.

use std::{path::Path, process::Command};

use serde_json::Value;

/// Runs the benchmark binary with tiny sizes (and `extra` arguments); returns its stdout and
/// its JSON report.
fn tiny_run(dir: &Path, extra: &[&str]) -> (String, Value) {
    let json = dir.join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args(["--workflows", "5", "--warmup", "2"])
        .args(["--concurrent-workflows", "50", "--concurrency", "4"])
        .args(["--baseline-commits", "20", "--baseline-rows", "640"])
        .arg("--skip-worker")
        .args(extra)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run cairn-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "cairn-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
        .expect("valid JSON");
    (stdout, report)
}

fn is_positive(value: &Value) -> bool {
    value.as_f64().is_some_and(|value| value > 0.0)
}

#[test]
fn via_http_reports_the_http_figures_beside_the_in_process_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stdout, report) = tiny_run(dir.path(), &["--via", "http"]);
    for row in [
        "sequential: 5 wf",
        "concurrent C=4: 50 wf",
        "HTTP sequential: 5 wf",
        "HTTP concurrent C=4: 50 wf",
        "HTTP ÷ in-process: sequential",
        "HTTP ÷ in-process: C=4",
        "HTTP sequential 3-step p50",
    ] {
        assert!(stdout.contains(row), "no {row:?} row in:\n{stdout}");
    }

    assert_eq!(report["sequential"]["latency"]["count"], 5);
    let http = &report["http"];
    assert_eq!(http["sequential"]["workflows"], 5);
    assert_eq!(http["sequential"]["latency"]["count"], 5);
    assert!(is_positive(&http["sequential"]["wf_per_sec"]), "{http:#}");
    let levels = http["concurrent"].as_array().expect("HTTP levels");
    assert_eq!(levels.len(), 1, "{http:#}");
    assert_eq!(levels[0]["concurrency"], 4);
    assert_eq!(levels[0]["latency"]["count"], 50);
    assert!(is_positive(&levels[0]["wf_per_sec"]), "{http:#}");

    let ratios = &http["ratios"];
    assert!(is_positive(&ratios["sequential_p50"]), "{ratios:#}");
    assert!(is_positive(&ratios["sequential_wf_per_sec"]), "{ratios:#}");
    assert_eq!(ratios["concurrent"][0]["concurrency"], 4);
    assert!(
        is_positive(&ratios["concurrent"][0]["wf_per_sec"]),
        "{ratios:#}"
    );

    let targets: Vec<&str> = report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|target| target["name"].as_str())
        .collect();
    assert!(
        targets.contains(&"HTTP sequential 3-step p50"),
        "{targets:?}"
    );
}

#[test]
fn without_via_http_nothing_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stdout, report) = tiny_run(dir.path(), &[]);
    assert!(
        !stdout.contains("HTTP"),
        "HTTP rows without --via http:\n{stdout}"
    );
    assert!(report.get("http").is_none(), "{report:#}");
    assert_eq!(report["sequential"]["latency"]["count"], 5);
}
