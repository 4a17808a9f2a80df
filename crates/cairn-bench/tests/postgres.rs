//! `--store postgres` end to end, with tiny sizes: the binary measures the raw commits, the
//! sequential latency (alone and in turns with raw commits) and two worker-process counts, or
//! none with `--skip-worker`, on the test server
//! (`CAIRN_TEST_DATABASE_URL`, see `cairn_test_support::postgres_url`), writes its
//! JSON and drops its schemas.

use std::process::Command;

use serde_json::Value;
use sqlx::{Connection, PgConnection};

/// Runs `cairn-bench --store postgres` on the test server with `args`; answers its standard
/// output, its JSON report and the server's URL (`None` when the test command found no
/// PostgreSQL).
fn run_bench(args: &[&str]) -> Option<(String, Value, String)> {
    let database_url = cairn_test_support::postgres_url()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args(["--store", "postgres", "--database-url", &database_url])
        .args(args)
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
    Some((stdout, report, database_url))
}

#[test]
fn a_tiny_postgres_run_reports_every_figure() {
    let Some((stdout, report, database_url)) = run_bench(&[
        "--workflows",
        "5",
        "--warmup",
        "2",
        "--concurrent-workflows",
        "40",
        "--baseline-commits",
        "20",
        "--pg-clients",
        "4",
        "--pg-client-commits",
        "5",
        "--pg-workers",
        "1,2",
        "--worker-concurrency",
        "8",
        "--concurrency",
        "8",
    ]) else {
        return;
    };
    for row in [
        "raw PG: 1 row",
        "sequential: 5 wf",
        "measured in turns",
        "W=1 worker",
        "W=2 worker",
    ] {
        assert!(stdout.contains(row), "no {row:?} row in:\n{stdout}");
    }
    assert_eq!(report["settings"]["store"], "postgres");
    assert_eq!(report["baseline"]["single"]["commits"], 20);
    assert_eq!(report["baseline"]["concurrent"]["commits"], 20);
    assert!(report["baseline"]["single"]["ops_per_sec"].as_f64() > Some(0.0));
    assert_eq!(report["sequential"]["latency"]["count"], 5);
    let turns = &report["interleaved"];
    assert_eq!(turns["pairs"], 5);
    assert_eq!(turns["commit"]["count"], 5);
    assert_eq!(turns["workflow"]["count"], 5);
    assert!(turns["workflow_in_commits"].as_f64() > Some(0.0), "{turns}");
    let workers = report["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    for (run, count) in workers.iter().zip([1, 2]) {
        assert_eq!(run["workers"], count);
        assert_eq!(run["drain"]["workflows"], 40);
        assert!(run["drain"]["steps_per_sec"].as_f64() > Some(0.0));
        let children = run["children"].as_array().expect("children");
        assert_eq!(children.len(), count);
        let pids: std::collections::HashSet<_> =
            children.iter().map(|child| child["pid"].clone()).collect();
        assert_eq!(pids.len(), count, "each worker is a process of its own");
    }
    let ratios = report["ratios"]["steps_per_sec_over_single_commits"]
        .as_array()
        .expect("ratios");
    assert_eq!(ratios.len(), 2);

    // The run's schemas are gone.
    let prefix = report["settings"]["schema_prefix"]
        .as_str()
        .expect("schema prefix")
        .to_owned();
    assert!(prefix.starts_with("cairn_bench_"), "{prefix}");
    let left = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut conn = PgConnection::connect(&database_url).await?;
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)",
            )
            .bind(format!("{prefix}_"))
            .fetch_one(&mut conn)
            .await
        })
        .expect("count schemas");
    assert_eq!(left, 0, "schemas {prefix}_* were not dropped");
}

#[test]
fn skip_worker_measures_no_worker_process() {
    let Some((stdout, report, _)) = run_bench(&[
        "--workflows",
        "3",
        "--warmup",
        "1",
        "--skip-worker",
        "--baseline-commits",
        "10",
        "--pg-clients",
        "2",
        "--pg-client-commits",
        "3",
    ]) else {
        return;
    };
    assert!(!stdout.contains("worker processes drain"), "{stdout}");
    assert_eq!(report["workers"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["interleaved"]["pairs"], 3);
}
