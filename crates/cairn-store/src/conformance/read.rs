//! Conformance: reading logs (`events`), listing runs (`list_runs`) and JSON fidelity.

use std::sync::Arc;

use cairn_core::{Event, PATCH_SLUG, RunStatus, StepKey, StepKind, patch_key};
use serde_json::{Value, json};

use super::support::{
    LEASE_MS, T0, completed, create, create_leased, create_queued_at, events, expect_claimed, get,
    lease, new_run, run_created, started, worker,
};
use crate::{NewRun, PatchFilter, RunFilter, RunId, Store};

/// Each run's log is numbered 1..=n in append order, however appends are batched and
/// interleaved with other runs' appends, and each event keeps the time of its append.
pub async fn events_are_numbered_in_order_without_gaps(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let first = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    let second = create_leased(store, "etl", &w, T0 + LEASE_MS).await;

    store
        .append(first, &w, &[started("a", 0)], T0 + 1)
        .await
        .expect("append");
    store
        .append(second, &w, &[started("z", 0)], T0 + 1)
        .await
        .expect("append");
    store
        .append(
            first,
            &w,
            &[completed("a", 0, json!(1)), started("b", 0)],
            T0 + 2,
        )
        .await
        .expect("append");
    store
        .append(first, &w, &[], T0 + 3)
        .await
        .expect("an empty append is accepted");
    store
        .append(first, &w, &[completed("b", 0, json!(2))], T0 + 4)
        .await
        .expect("append");

    let records = store.events(first).await.expect("events");
    let stamps: Vec<(u64, i64)> = records
        .iter()
        .map(|record| (record.seq, record.at_ms))
        .collect();
    assert_eq!(
        stamps,
        vec![(1, T0), (2, T0 + 1), (3, T0 + 2), (4, T0 + 2), (5, T0 + 4)]
    );
    let expected = vec![
        run_created("etl", json!({})),
        started("a", 0),
        completed("a", 0, json!(1)),
        started("b", 0),
        completed("b", 0, json!(2)),
    ];
    assert_eq!(events(store, first).await, expected);
    assert_eq!(
        events(store, second).await,
        vec![run_created("etl", json!({})), started("z", 0)]
    );
}

/// `list_runs` filters by workflow, status and parent (all together), honours the limit
/// (0 meaning 50) and returns the newest runs first.
pub async fn list_runs_filters_and_orders_newest_first(store: Arc<dyn Store>) {
    let store = &*store;
    let child = |parent: RunId, at_ms: i64| NewRun {
        parent_run_id: Some(parent),
        now_ms: at_ms,
        trigger: "child".into(),
        ..new_run("child", json!({}))
    };
    let a1 = create_queued_at(store, "a", T0 + 1).await;
    let b1 = create_queued_at(store, "b", T0 + 2).await;
    let a2 = create_queued_at(store, "a", T0 + 3).await;
    let c1 = create(store, child(a1, T0 + 4)).await;
    let c2 = create(store, child(a2, T0 + 5)).await;
    store
        .cancel_run(b1, "not needed", T0 + 6)
        .await
        .expect("cancel_run");
    expect_claimed(
        store
            .claim_run(a2, &lease(&worker("w"), T0 + LEASE_MS), T0 + 7)
            .await
            .expect("claim"),
        "a2",
    );

    let list = |workflow: Option<&str>,
                status: Option<RunStatus>,
                parent_run_id: Option<RunId>,
                limit: usize| {
        let filter = RunFilter {
            workflow: workflow.map(str::to_owned),
            status,
            parent_run_id,
            before: None,
            limit,
            ..RunFilter::default()
        };
        async move {
            let runs = store.list_runs(&filter).await.expect("list_runs");
            runs.into_iter().map(|run| run.run_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, None, None, 0).await,
        vec![c2, c1, a2, b1, a1],
        "newest first"
    );
    assert_eq!(
        list(Some("a"), None, None, 0).await,
        vec![a2, a1],
        "by workflow"
    );
    assert_eq!(
        list(None, Some(RunStatus::Canceled), None, 0).await,
        vec![b1],
        "by status"
    );
    assert_eq!(
        list(None, Some(RunStatus::Running), None, 0).await,
        vec![a2],
        "by status"
    );
    assert_eq!(
        list(None, Some(RunStatus::Queued), None, 0).await,
        vec![c2, c1, a1],
        "by status"
    );
    assert_eq!(list(None, None, Some(a1), 0).await, vec![c1], "by parent");
    assert_eq!(
        list(Some("child"), Some(RunStatus::Queued), Some(a2), 0).await,
        vec![c2],
        "filters combine"
    );
    assert_eq!(
        list(Some("a"), Some(RunStatus::Canceled), None, 0).await,
        Vec::<RunId>::new(),
        "filters combine"
    );
    assert_eq!(
        list(None, None, None, 2).await,
        vec![c2, c1],
        "limit keeps the newest"
    );
    assert_eq!(
        list(Some("nothing"), None, None, 0).await,
        Vec::<RunId>::new()
    );
    let page = |before: RunId, workflow: Option<&str>, status: Option<RunStatus>| {
        let filter = RunFilter {
            workflow: workflow.map(str::to_owned),
            status,
            before: Some(before),
            limit: 2,
            ..RunFilter::default()
        };
        async move {
            let runs = store.list_runs(&filter).await.expect("list_runs");
            runs.into_iter().map(|run| run.run_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(c1, None, None).await, vec![a2, b1], "the next page");
    assert_eq!(page(b1, None, None).await, vec![a1], "the last page");
    assert_eq!(
        page(a1, None, None).await,
        Vec::<RunId>::new(),
        "past the end"
    );
    assert_eq!(
        page(c2, None, Some(RunStatus::Queued)).await,
        vec![c1, a1],
        "pages combine with filters"
    );
    assert_eq!(page(a2, Some("a"), None).await, vec![a1]);
    assert_eq!(
        page(RunId::new(), None, None).await,
        Vec::<RunId>::new(),
        "an unknown run lists nothing"
    );

    let listed = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list_runs");
    let canceled = listed
        .iter()
        .find(|run| run.run_id == b1)
        .expect("b1 is listed");
    assert_eq!(
        canceled,
        &get(store, b1).await,
        "listed records are whole records"
    );

    for n in 0..52 {
        create_queued_at(store, "bulk", T0 + 10 + n).await;
    }
    assert_eq!(
        list(Some("bulk"), None, None, 0).await.len(),
        50,
        "limit 0 means 50"
    );
    assert_eq!(list(Some("bulk"), None, None, 51).await.len(), 51);
}

/// `list_runs` keeps the runs whose history has (or lacks) a patch's marker, wherever the
/// marker is in the log (written alone, among other events, or in the history a run was
/// created with), and no other patch's; `unended` keeps the runs that have not ended. Both
/// combine with the other filters and the limit.
pub async fn list_runs_filters_by_patch_marker_and_unended(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let marker = |id: &str, call: u32| Event::StepCompleted {
        key: StepKey::custom(patch_key(id)),
        kind: StepKind::Patch,
        slug: PATCH_SLUG.to_owned(),
        output: json!(id),
        call: Some(call),
    };
    let append = async |run: RunId, events: &[Event]| {
        store.append(run, &w, events, T0 + 1).await.expect("append");
    };
    let step_a = [started("a", 0), completed("a", 0, json!(1))];
    let unmarked = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    append(unmarked, &step_a).await;
    let alone = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    append(alone, &step_a).await;
    append(alone, &[marker("sms", 1)]).await;
    let among = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    let mut events = step_a.to_vec();
    events.extend([marker("sms", 1), started("b", 0)]);
    append(among, &events).await;
    let other_patch = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    append(other_patch, &[marker("sms-2", 0), marker("sm", 1)]).await;
    let forked = NewRun {
        history: vec![marker("sms", 0)],
        ..new_run("etl", json!({}))
    };
    let forked = create(store, forked).await;
    let ended = create_leased(store, "etl", &w, T0 + LEASE_MS).await;
    let output = json!({"done": true});
    append(ended, &[marker("sms", 0), Event::RunCompleted { output }]).await;
    let elsewhere = create_queued_at(store, "other", T0).await;

    let list = |patch: Option<PatchFilter>, unended: bool, workflow: Option<&str>| {
        let filter = RunFilter {
            workflow: workflow.map(str::to_owned),
            unended,
            patch,
            ..RunFilter::default()
        };
        async move {
            let runs = store.list_runs(&filter).await.expect("list_runs");
            runs.into_iter().map(|run| run.run_id).collect::<Vec<_>>()
        }
    };
    let with = || Some(PatchFilter::With("sms".into()));
    let without = || Some(PatchFilter::Without("sms".into()));
    assert_eq!(
        list(with(), false, None).await,
        vec![ended, forked, among, alone],
        "runs with the marker, newest first"
    );
    assert_eq!(
        list(without(), false, None).await,
        vec![elsewhere, other_patch, unmarked],
        "runs without it; another patch's marker is not it"
    );
    assert_eq!(
        list(with(), true, None).await,
        vec![forked, among, alone],
        "unended runs with the marker"
    );
    assert_eq!(
        list(without(), true, Some("etl")).await,
        vec![other_patch, unmarked],
        "filters combine"
    );
    assert_eq!(
        list(None, true, None).await,
        vec![elsewhere, forked, other_patch, among, alone, unmarked],
        "unended runs"
    );
    let newest = RunFilter {
        patch: with(),
        status: Some(RunStatus::Running),
        limit: 2,
        ..RunFilter::default()
    };
    let newest: Vec<RunId> = store
        .list_runs(&newest)
        .await
        .expect("list_runs")
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(newest, vec![among, alone], "status and limit combine");
    assert_eq!(
        list(Some(PatchFilter::With("nothing".into())), false, None).await,
        Vec::<RunId>::new()
    );
}

/// JSON payloads come back exactly as given (nested values, unicode and escapes, extreme
/// integers and floats, a large string) from every place the store keeps them.
pub async fn payloads_round_trip_exactly(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let payload = tricky_payload();
    let run = NewRun {
        history: vec![completed("seed", 0, payload.clone())],
        ..new_run("json", payload.clone())
    };
    let id = create(store, run).await;
    let claimed = expect_claimed(
        store
            .claim_run(id, &lease(&w, T0 + LEASE_MS), T0)
            .await
            .expect("claim"),
        "json",
    );
    assert_eq!(claimed.run.input, payload, "claimed input");
    assert_eq!(
        claimed.events.last().map(|record| &record.event),
        Some(&completed("seed", 0, payload.clone()))
    );

    let big = json!({ "blob": "x".repeat(300_000), "inner": payload.clone() });
    let appended = vec![
        completed("copy", 0, payload.clone()),
        completed("big", 0, big.clone()),
    ];
    store
        .append(id, &w, &appended, T0 + 1)
        .await
        .expect("append");
    store
        .append(
            id,
            &w,
            &[Event::RunCompleted {
                output: payload.clone(),
            }],
            T0 + 2,
        )
        .await
        .expect("complete");

    let record = get(store, id).await;
    assert_eq!(record.input, payload, "stored input");
    assert_eq!(record.output, Some(payload.clone()), "stored output");
    let listed = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list_runs");
    assert_eq!(
        listed.first().map(|run| &run.input),
        Some(&payload),
        "listed input"
    );
    let expected = vec![
        run_created("json", payload.clone()),
        completed("seed", 0, payload.clone()),
        completed("copy", 0, payload.clone()),
        completed("big", 0, big),
        Event::RunCompleted { output: payload },
    ];
    assert_eq!(events(store, id).await, expected, "logged payloads");
}

fn tricky_payload() -> Value {
    json!({
        "nested": { "deep": { "list": [1, [2, [3, { "x": null }]]], "emptyObject": {}, "emptyList": [] } },
        "text": "héllo wörld — 你好 🦀 \u{1F600} \"quoted\" \\ back\nslash\ttab \u{0007} \u{0000} end",
        "key with spaces & ünïcode 🔑": true,
        "": "empty key",
        "integers": [0, -1, i64::MAX, i64::MIN, 9_007_199_254_740_993_i64],
        "floats": [0.1, 2.5, -1.5e-7, 1.7976931348623157e308, 5e-324, 123456.789],
        "flags": [true, false, null],
        "emptyText": "",
    })
}

/// The runs list's search filters: any of several statuses, a creation time range, and a
/// run id prefix or an idempotency key.
pub async fn list_runs_filters_by_statuses_time_and_search(store: Arc<dyn Store>) {
    let store = &*store;
    let first = create_queued_at(store, "w", T0 + 10).await;
    let keyed = create(
        store,
        NewRun {
            idempotency_key: Some("order-42".into()),
            now_ms: T0 + 20,
            ..new_run("w", json!({}))
        },
    )
    .await;
    let last = create_queued_at(store, "w", T0 + 30).await;
    store
        .cancel_run(first, "not needed", T0 + 40)
        .await
        .expect("cancel_run");
    let list = |filter: RunFilter| async move {
        let runs = store.list_runs(&filter).await.expect("list_runs");
        runs.into_iter().map(|run| run.run_id).collect::<Vec<_>>()
    };
    let statuses = |statuses: Vec<RunStatus>| RunFilter {
        statuses,
        ..RunFilter::default()
    };
    assert_eq!(
        list(statuses(vec![RunStatus::Canceled, RunStatus::Queued])).await,
        vec![last, keyed, first],
        "any of the statuses"
    );
    assert_eq!(
        list(statuses(vec![RunStatus::Canceled, RunStatus::Failed])).await,
        vec![first],
        "ended statuses only"
    );
    assert_eq!(
        list(statuses(vec![RunStatus::Queued])).await,
        vec![last, keyed],
        "unended statuses only"
    );
    let range = RunFilter {
        created_after_ms: Some(T0 + 20),
        created_before_ms: Some(T0 + 30),
        ..RunFilter::default()
    };
    assert_eq!(
        list(range).await,
        vec![keyed],
        "from inclusive, to exclusive"
    );
    let search = |text: &str| RunFilter {
        search: Some(text.to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(
        list(search("order-42")).await,
        vec![keyed],
        "by idempotency key"
    );
    assert_eq!(list(search("order-4")).await, vec![], "a key matches whole");
    let id = last.to_string();
    assert_eq!(list(search(&id)).await, vec![last], "by the whole id");
    let prefix: Vec<RunId> = list(search(&id[..20])).await;
    assert!(prefix.contains(&last), "by an id prefix: {prefix:?}");
    assert!(
        prefix
            .iter()
            .all(|run| run.to_string().starts_with(&id[..20])),
        "only ids with the prefix: {prefix:?}"
    );
}
