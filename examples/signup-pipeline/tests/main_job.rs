//! The README's main job through the example's real binary: a run on the embedded store, its
//! brief appended to the outbox under the data dir given on the command line.

use std::process::Command;

#[test]
fn the_main_job_posts_to_the_outbox_under_the_data_dir_it_was_given() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_signup-pipeline"))
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["run", "signup-pipeline", "--json", "--input"])
        .arg(r#"{"name":"Ada Lovelace","email":"ada@analytical.engines"}"#)
        .env_remove("CAIRN_DATA_DIR")
        .current_dir(dir.path())
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON result");
    assert_eq!(result["status"], "succeeded", "{result}");
    let outbox = std::fs::read_to_string(data_dir.join("outbox.log")).expect("the outbox");
    let brief = result["output"]["brief"].as_str().expect("a brief");
    assert!(outbox.contains(brief), "{outbox}");
    assert!(
        !dir.path().join(".cairn").exists(),
        "nothing under the default data dir"
    );
}
