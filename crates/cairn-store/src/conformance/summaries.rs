//! Conformance: listing runs without their payloads (`list_run_summaries`) lists what
//! `list_runs` lists, in its order, for every filter the web UI makes, page after page.

use std::sync::Arc;

use cairn_core::{Event, RunStatus};
use serde_json::json;

use super::support::{LEASE_MS, T0, create, create_leased, new_run, worker};
use crate::{NewRun, RunFilter, RunId, RunSummary, Store};

/// Nine runs of two workflows over time: queued, running, succeeded and canceled ones, one
/// with an idempotency key, one a child. Each filter's summaries are its `list_runs` records'
/// (payloads left out), and paging by cursor, two at a time, visits the same runs in the same
/// order as one unpaged listing.
pub async fn list_run_summaries_list_what_list_runs_lists(store: Arc<dyn Store>) {
    let store = &*store;
    let holder = worker("w1");
    let mut runs = Vec::new();
    for n in 0..9_i64 {
        let workflow = if n % 3 == 0 { "billing" } else { "etl" };
        let run = NewRun {
            idempotency_key: (n == 4).then(|| "order-42".to_owned()),
            parent_run_id: (n == 7).then(|| runs[0]),
            input: json!({ "big": "x".repeat(1_000), "n": n }),
            now_ms: T0 + n * 10,
            lease: (n % 2 == 1).then(|| super::support::lease(&holder, T0 + LEASE_MS)),
            ..new_run(workflow, json!({}))
        };
        runs.push(create(store, run).await);
    }
    // Runs 1 and 5 succeed, 3 is canceled; 7 stays running; the even ones stay queued.
    for (n, end) in [(1, "done"), (5, "done")] {
        store
            .append(
                runs[n],
                &holder,
                &[Event::RunCompleted { output: json!(end) }],
                T0 + 100,
            )
            .await
            .expect("append");
    }
    store
        .cancel_run(runs[3], "not needed", T0 + 100)
        .await
        .expect("cancel_run");
    let leased = create_leased(store, "etl", &holder, T0 + LEASE_MS).await;
    runs.push(leased);

    let id = runs[6].to_string();
    let filters = [
        RunFilter::default(),
        RunFilter {
            workflow: Some("etl".into()),
            ..RunFilter::default()
        },
        RunFilter {
            status: Some(RunStatus::Queued),
            ..RunFilter::default()
        },
        RunFilter {
            statuses: vec![RunStatus::Succeeded, RunStatus::Canceled],
            ..RunFilter::default()
        },
        RunFilter {
            statuses: vec![RunStatus::Running, RunStatus::Succeeded, RunStatus::Queued],
            workflow: Some("etl".into()),
            ..RunFilter::default()
        },
        RunFilter {
            created_after_ms: Some(T0 + 20),
            created_before_ms: Some(T0 + 70),
            ..RunFilter::default()
        },
        RunFilter {
            created_after_ms: Some(T0 + 10),
            statuses: vec![RunStatus::Queued],
            ..RunFilter::default()
        },
        RunFilter {
            search: Some("order-42".into()),
            ..RunFilter::default()
        },
        RunFilter {
            search: Some(id.clone()),
            ..RunFilter::default()
        },
        RunFilter {
            search: Some(id[..8].to_owned()),
            ..RunFilter::default()
        },
        RunFilter {
            parent_run_id: Some(runs[0]),
            ..RunFilter::default()
        },
    ];
    for filter in filters {
        let records = store.list_runs(&filter).await.expect("list_runs");
        let summaries = store
            .list_run_summaries(&filter)
            .await
            .expect("list_run_summaries");
        let expected: Vec<RunSummary> = records.iter().map(RunSummary::from).collect();
        assert_eq!(summaries, expected, "{filter:?}");
        assert!(!summaries.is_empty(), "{filter:?} lists some runs");
        let mut paged: Vec<RunId> = Vec::new();
        let mut before = None;
        loop {
            let page = RunFilter {
                before,
                limit: 2,
                ..filter.clone()
            };
            let got = store.list_run_summaries(&page).await.expect("a page");
            assert!(got.len() <= 2, "{page:?} keeps to its limit");
            paged.extend(got.iter().map(|run| run.run_id));
            if got.len() < 2 {
                break;
            }
            before = got.last().map(|run| run.run_id);
        }
        let listed: Vec<RunId> = summaries.iter().map(|run| run.run_id).collect();
        assert_eq!(paged, listed, "{filter:?} page by page");
    }
    // What the filters pick, on one example each.
    let ids = |summaries: Vec<RunSummary>| summaries.iter().map(|run| run.run_id).collect();
    let only = |filter: RunFilter| async move {
        ids(store.list_run_summaries(&filter).await.expect("list"))
    };
    let ended: Vec<RunId> = only(RunFilter {
        statuses: vec![RunStatus::Succeeded, RunStatus::Canceled],
        ..RunFilter::default()
    })
    .await;
    assert_eq!(ended, vec![runs[5], runs[3], runs[1]], "newest first");
    let keyed: Vec<RunId> = only(RunFilter {
        search: Some("order-42".into()),
        ..RunFilter::default()
    })
    .await;
    assert_eq!(keyed, vec![runs[4]]);
    let range: Vec<RunId> = only(RunFilter {
        created_after_ms: Some(T0 + 20),
        created_before_ms: Some(T0 + 50),
        ..RunFilter::default()
    })
    .await;
    assert_eq!(range, vec![runs[4], runs[3], runs[2]]);
    let summary = &store
        .list_run_summaries(&RunFilter {
            search: Some(runs[5].to_string()),
            ..RunFilter::default()
        })
        .await
        .expect("list")[0];
    assert_eq!(
        (summary.status, summary.executions, summary.finished_at_ms),
        (RunStatus::Succeeded, 1, Some(T0 + 100))
    );
    assert_eq!(summary.workflow, "etl");
    assert!(
        store
            .list_run_summaries(&RunFilter {
                before: Some(RunId::new()),
                ..RunFilter::default()
            })
            .await
            .expect("list")
            .is_empty(),
        "a cursor run that does not exist lists nothing"
    );
}
