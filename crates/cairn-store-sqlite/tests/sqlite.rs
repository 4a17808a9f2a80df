//! What only the SQLite backend promises, through its public API: several stores (as several
//! processes would) sharing one file, fencing and the credentials' default rule included, a
//! busy file reported as transient, data surviving a reopen, and queued writes committed when
//! the store is dropped.

use std::{collections::HashSet, sync::Arc, time::Duration};

use cairn_core::{Event, Holder, Scope, StepKey, StepKind};
use cairn_store::{
    CredentialFilter, CredentialRecord, Lease, NewRun, Reseal, RunId, Store, StoreError, WorkerId,
};
use cairn_store_sqlite::{DATABASE_FILE, SqliteOptions, SqliteStore};
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn new_run(workflow: &str, lease: Option<Lease>) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.into(),
        input: json!({ "n": 1 }),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease,
        now_ms: NOW,
    }
}

fn lease(worker: &str) -> Lease {
    Lease {
        worker: WorkerId(worker.into()),
        expires_at_ms: NOW + 60_000,
    }
}

fn started(n: u32) -> Event {
    let slug = "step".to_owned();
    Event::StepStarted {
        call: None,
        key: StepKey::numbered(&slug, n),
        kind: StepKind::Action,
        slug,
        input: json!(n),
        attempt: 1,
        credentials: Vec::new(),
    }
}

/// Creates a run of `workflow` leased by `holder` and appends its first step's start.
async fn create_and_start(store: &SqliteStore, workflow: &str, holder: &Lease) -> RunId {
    let id = store
        .create_run(new_run(workflow, Some(holder.clone())))
        .await
        .expect("create")
        .run_id;
    store
        .append(id, &holder.worker, &[started(0)], NOW + 1)
        .await
        .expect("the holder appends");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_never_claim_one_run_twice() {
    const RUNS: usize = 120;
    let dir = tempfile::tempdir().expect("temp dir");
    let first: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open the first store"));
    let second: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open the second store"));
    let mut created = HashSet::new();
    for n in 0..RUNS {
        let store = if n % 2 == 0 { &first } else { &second };
        created.insert(
            store
                .create_run(new_run("shared", None))
                .await
                .expect("create")
                .run_id,
        );
    }

    let claimers: Vec<_> = [&first, &second, &first, &second]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mine = lease(&format!("worker-{n}"));
                let mut claimed = Vec::new();
                loop {
                    let batch = store
                        .claim_ready(&["shared".into()], &mine, NOW + 1, 4)
                        .await
                        .expect("claim_ready");
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch.into_iter().map(|run| run.run.run_id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("a claimer panicked"));
    }
    let unique: HashSet<RunId> = claimed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "a run was claimed by two stores"
    );
    assert_eq!(unique, created, "together the stores claimed every run");
    for id in created {
        assert_eq!(
            first
                .get_run(id)
                .await
                .expect("get")
                .expect("exists")
                .executions,
            1
        );
    }
}

/// The default rule's check and write are one transaction: stores on one file (as processes
/// would be) saving a holder's first credentials of a key at once leave exactly one default,
/// and a rotation sees them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_one_file_saving_credentials_at_once_leave_one_default() {
    const STORES: usize = 4;
    const EACH: usize = 5;
    let dir = tempfile::tempdir().expect("temp dir");
    let stores: Vec<Arc<SqliteStore>> = (0..STORES)
        .map(|_| Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open a store")))
        .collect();
    let holder = Holder {
        scope: Scope::Organization,
        org: "acme".into(),
        project: None,
        user: None,
    };
    let savers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let (store, holder) = (Arc::clone(store), holder.clone());
            tokio::spawn(async move {
                for k in 0..EACH {
                    let credential = CredentialRecord {
                        id: format!("cred_{n}_{k}"),
                        key: "slack".into(),
                        holder: holder.clone(),
                        is_default: false,
                        fields: vec!["botToken".into()],
                        sealed: format!("sealed-{n}-{k}").into_bytes(),
                        expires_at_ms: None,
                        created_at_ms: NOW,
                        updated_at_ms: NOW,
                    };
                    store.put_credential(credential).await.expect("put");
                }
            })
        })
        .collect();
    for saver in savers {
        saver.await.expect("a saver panicked");
    }
    let listed = stores[0]
        .list_credentials(&CredentialFilter::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), STORES * EACH);
    let defaults = listed.iter().filter(|credential| credential.is_default);
    assert_eq!(defaults.count(), 1, "one default per key and holder");

    let reseals: Vec<Reseal> = listed
        .iter()
        .map(|credential| Reseal {
            id: credential.id.clone(),
            old: credential.sealed.clone(),
            new: b"rotated".to_vec(),
        })
        .collect();
    stores[1]
        .reseal_credentials(&reseals, NOW + 1)
        .await
        .expect("a rotation naming every credential, read through another store");
}

/// Each store's writer remembers the runs it writes (to skip the fencing read); a lease taken
/// over through another store, as another process would, must still fence the old holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_through_another_store_fences_the_old_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = SqliteStore::open_in_dir(dir.path()).expect("open the first store");
    let second = SqliteStore::open_in_dir(dir.path()).expect("open the second store");
    let holder = lease("holder");
    let id = create_and_start(&first, "shared", &holder).await;

    let lapsed = holder.expires_at_ms + 1;
    let thief = Lease {
        worker: WorkerId("thief".into()),
        expires_at_ms: lapsed + 60_000,
    };
    let taken = second.claim_run(id, &thief, lapsed).await.expect("claim");
    assert!(
        matches!(taken, cairn_store::ClaimOutcome::Claimed(_)),
        "the lease had lapsed"
    );

    let refused = first
        .append(id, &holder.worker, &[started(1)], lapsed + 1)
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "the old holder is fenced off: {refused:?}"
    );
    second
        .append(id, &thief.worker, &[started(1)], lapsed + 2)
        .await
        .expect("the new holder appends");
    let log = first.events(id).await.expect("read the log");
    assert_eq!(
        log.iter().map(|record| record.seq).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "one log, numbered without a gap or a repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_too_long_elsewhere_is_a_transient_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join(DATABASE_FILE), options).expect("open");
    let existing = store
        .create_run(new_run("busy", None))
        .await
        .expect("create")
        .run_id;

    let other_process = rusqlite::Connection::open(store.path()).expect("open a second connection");
    other_process
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let error = store
        .create_run(new_run("busy", None))
        .await
        .expect_err("the write lock is held elsewhere");
    assert!(
        matches!(error, StoreError::Unavailable(_)) && error.is_transient(),
        "{error}"
    );
    assert!(
        error.to_string().contains("busy timeout"),
        "the message says what to do: {error}"
    );
    let read = store
        .get_run(existing)
        .await
        .expect("reads go on while another process writes");
    assert!(read.is_some());

    other_process
        .execute_batch("COMMIT")
        .expect("release the write lock");
    store
        .create_run(new_run("busy", None))
        .await
        .expect("writes work again once the lock is free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_their_logs_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("deeper").join(DATABASE_FILE);
    let holder = lease("holder");
    let store = SqliteStore::open(&path).expect("open creates the parent directories");
    let id = create_and_start(&store, "durable", &holder).await;
    for n in 1..=20 {
        store
            .append(id, &holder.worker, &[started(n)], NOW + 2)
            .await
            .expect("append");
    }
    let before = store.get_run(id).await.expect("get").expect("exists");
    drop(store);

    let reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        reopened
            .get_run(id)
            .await
            .expect("get")
            .expect("exists")
            .workflow,
        before.workflow
    );
    let seqs: Vec<u64> = reopened
        .events(id)
        .await
        .expect("events")
        .iter()
        .map(|record| record.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=22).collect::<Vec<u64>>(),
        "every append is there after reopening"
    );
}

#[test]
fn opening_a_directory_as_the_database_fails_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = SqliteStore::open(dir.path()).expect_err("a directory is not a database file");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "the message names the path: {error}"
    );
}
