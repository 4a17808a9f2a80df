//! Tests of schema version 14: a file of every older version upgrades to the re-keyed
//! idempotency index (keys stay unique per workflow) and `runs_by_created`, and every
//! listing the web UI makes reads an index, newest first, without sorting more than a few
//! rows.

use cairn_core::RunStatus;
use cairn_store::{RunFilter, RunId};
use rusqlite::Connection;

use super::{open_writer, tests::file_at_version, tests::plan, tests::upgraded_from_every_version};
use crate::{listing, read};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const INSERT: &str = "INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, \
    ready_at, created_at, updated_at) VALUES (?1, ?2, 'queued', '{}', ?3, 'test', 0, ?4, ?4) \
    ON CONFLICT DO NOTHING";

/// The columns of index `name`, in order.
fn index_columns(conn: &Connection, name: &str) -> Vec<String> {
    let mut statement = conn
        .prepare(&format!("PRAGMA index_info('{name}')"))
        .expect("index_info");
    statement
        .query_map([], |row| row.get(2))
        .expect("columns")
        .collect::<rusqlite::Result<_>>()
        .expect("read")
}

#[test]
fn a_file_of_every_older_version_upgrades_to_the_listing_indexes() {
    upgraded_from_every_version(|conn, version| {
        assert_eq!(
            index_columns(conn, "runs_idempotency"),
            ["idempotency_key", "workflow"],
            "from version {version}"
        );
        assert_eq!(index_columns(conn, "runs_by_created"), ["created_at"]);
    });
}

#[test]
fn a_version_13_keyed_run_stays_unique_and_is_found_by_key_and_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = file_at_version(&path, 13);
    let first = RunId::new().to_string();
    old.execute(INSERT, rusqlite::params![first, "w", "order-42", 1_000])
        .expect("a version 13 run");
    drop(old);
    let conn = open_writer(&path, TIMEOUT).expect("upgrade");
    let again = conn
        .execute(
            INSERT,
            rusqlite::params![RunId::new().to_string(), "w", "order-42", 2_000],
        )
        .expect("insert");
    assert_eq!(again, 0, "one run per workflow and key, as before");
    let other = RunId::new().to_string();
    let inserted = conn
        .execute(INSERT, rusqlite::params![other, "v", "order-42", 3_000])
        .expect("insert");
    assert_eq!(
        inserted, 1,
        "the same key in another workflow is another run"
    );
    let ids = |filter: RunFilter| -> Vec<String> {
        read::list_run_summaries(&conn, &filter)
            .expect("list")
            .iter()
            .map(|run| run.run_id.to_string())
            .collect()
    };
    let by_key = RunFilter {
        search: Some("order-42".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(by_key), [other.clone(), first.clone()]);
    let by_time = RunFilter {
        created_after_ms: Some(500),
        created_before_ms: Some(2_500),
        ..RunFilter::default()
    };
    assert_eq!(ids(by_time), [first]);
}

/// Whether a plan reads the runs table through an index (or by `rowid`), never scanning it
/// from end to end, and whether it sorts.
fn scans_and_sorts(steps: &[String]) -> (bool, bool) {
    let scans = steps
        .iter()
        .any(|step| step.starts_with("SCAN runs") && !step.contains("USING"));
    let sorts = steps.iter().any(|step| step.contains("TEMP B-TREE"));
    (scans, sorts)
}

#[test]
fn every_listing_of_the_web_ui_reads_an_index_newest_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = open_writer(&dir.path().join("cairn.db"), TIMEOUT).expect("create");
    let id = RunId::new().to_string();
    let statuses = |statuses: &[RunStatus]| RunFilter {
        statuses: statuses.to_vec(),
        ..RunFilter::default()
    };
    let search = |text: &str| RunFilter {
        search: Some(text.to_owned()),
        ..RunFilter::default()
    };
    let range = RunFilter {
        created_after_ms: Some(1),
        created_before_ms: Some(2),
        ..RunFilter::default()
    };
    // (what, filter, the index each statement reads); none sorts but where said.
    let cases: Vec<(&str, RunFilter, &[&str])> = vec![
        ("no filter", RunFilter::default(), &["SCAN runs"]),
        (
            "a workflow",
            RunFilter {
                workflow: Some("w".into()),
                ..RunFilter::default()
            },
            &["runs_by_workflow"],
        ),
        (
            "an ended status",
            statuses(&[RunStatus::Failed]),
            &["runs_by_status"],
        ),
        (
            "two ended statuses",
            statuses(&[RunStatus::Failed, RunStatus::Canceled]),
            &["runs_by_status", "runs_by_status"],
        ),
        ("a time range", range.clone(), &["runs_by_created"]),
        (
            "from a time on",
            RunFilter {
                created_after_ms: Some(1),
                ..RunFilter::default()
            },
            &["runs_by_created"],
        ),
        (
            "a time range and a status",
            RunFilter {
                statuses: vec![RunStatus::Succeeded],
                ..range.clone()
            },
            &["runs_by_created"],
        ),
        (
            "an id prefix",
            search(&id[..8]),
            &["sqlite_autoindex_runs_1", "runs_idempotency"],
        ),
        (
            "a whole id",
            search(&id),
            &["sqlite_autoindex_runs_1", "runs_idempotency"],
        ),
        (
            "an idempotency key",
            search("order-42"),
            &["runs_idempotency"],
        ),
        (
            "a workflow and a time range",
            RunFilter {
                workflow: Some("w".into()),
                ..range.clone()
            },
            &["runs_by_created"],
        ),
        (
            "a workflow and an id prefix",
            RunFilter {
                workflow: Some("w".into()),
                ..search(&id[..8])
            },
            &["sqlite_autoindex_runs_1", "runs_idempotency"],
        ),
        (
            "statuses and an id prefix",
            RunFilter {
                statuses: vec![RunStatus::Failed, RunStatus::Queued],
                ..search(&id[..8])
            },
            &["sqlite_autoindex_runs_1", "runs_idempotency"],
        ),
        (
            "a workflow and two statuses",
            RunFilter {
                workflow: Some("w".into()),
                statuses: vec![RunStatus::Failed, RunStatus::Canceled],
                ..RunFilter::default()
            },
            &["runs_by_", "runs_by_"],
        ),
    ];
    for (what, filter, reads) in cases {
        for before in [None, Some(RunId::new())] {
            let filter = RunFilter {
                before,
                ..filter.clone()
            };
            let listing = listing::listing(&filter, "id");
            assert_eq!(listing.queries.len(), reads.len(), "{what}: {filter:?}");
            for ((sql, _), index) in listing.queries.iter().zip(reads) {
                let steps = plan(&conn, sql);
                let runs_step = steps
                    .iter()
                    .find(|step| step.contains(" runs"))
                    .expect("reads runs");
                assert!(
                    runs_step.contains(index) || before.is_some() && *index == "SCAN runs",
                    "{what} reads {index}: {steps:?}"
                );
                let (scans, sorts) = scans_and_sorts(&steps);
                assert!(
                    !scans || *index == "SCAN runs" && before.is_none(),
                    "{what} scans the runs: {steps:?}"
                );
                // Only the key's runs (one per workflow at most) are sorted.
                assert_eq!(
                    sorts,
                    !sql.contains("id >= ") && sql.contains("idempotency_key = "),
                    "{what} sorts: {steps:?}"
                );
            }
        }
    }
}
