//! Tests of schema version 10: a file of every older version upgrades to run owners and
//! credentials, runs created before it read back with the default owner, and the default
//! owner is stored as a NULL (nothing new bound on the hot path).

use cairn_core::{Owner, Scope};
use cairn_store::{CredentialRecord, Lease, NewRun, RunFilter, RunId, WorkerId};
use serde_json::json;
use tokio::sync::oneshot;

use super::{open_writer, tests::file_at_version, tests::upgraded_from_every_version};
use crate::{
    codec::{PreparedRun, RawClaimOutcome},
    credentials::{self, CredentialWrite},
    read,
    run_cache::RunCache,
    writer::{
        Command,
        tests::{NOW, execute_batch},
    },
};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn acme() -> Owner {
    Owner {
        org: "acme".into(),
        project: "web".into(),
        user: Some("ada".into()),
    }
}

/// Creates a queued run of `owner` through the writer, as `create_run` does.
fn create(conn: &rusqlite::Connection, owner: Owner) -> RunId {
    let run = NewRun {
        id: RunId::new(),
        workflow: "w".into(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner,
        history: Vec::new(),
        lease: None,
        now_ms: NOW,
    };
    let id = run.id;
    let (reply, created) = oneshot::channel();
    let run = PreparedRun::new(run).expect("encode");
    execute_batch(
        conn,
        &mut RunCache::default(),
        [Command::CreateRun { run, reply }],
    );
    assert!(
        created
            .blocking_recv()
            .expect("answered")
            .expect("created")
            .created
    );
    id
}

fn owner_of(conn: &rusqlite::Connection, id: RunId) -> Owner {
    read::get_run(conn, id)
        .expect("get_run")
        .expect("the run")
        .owner
}

#[test]
fn a_file_of_every_older_version_upgrades_to_owners_and_credentials() {
    upgraded_from_every_version(|conn, version| {
        let id = create(conn, acme());
        assert_eq!(owner_of(conn, id), acme(), "from version {version}");
        let credential = CredentialRecord {
            id: "cred_1".into(),
            key: "slack".into(),
            holder: acme().holder(Scope::User).expect("a user"),
            is_default: false,
            fields: vec!["botToken".into()],
            sealed: b"sealed".to_vec(),
            expires_at_ms: Some(NOW + 1),
            created_at_ms: NOW,
            updated_at_ms: NOW,
        };
        let (reply, put) = oneshot::channel();
        let fields = credentials::field_names(&credential).expect("encode");
        let write = CredentialWrite::Put {
            credential: Box::new(credential.clone()),
            fields,
            reply,
        };
        execute_batch(conn, &mut RunCache::default(), [Command::Credential(write)]);
        put.blocking_recv().expect("answered").expect("put");
        assert_eq!(
            credentials::get(conn, "cred_1").expect("get"),
            Some(CredentialRecord {
                is_default: true,
                ..credential
            }),
            "from version {version}"
        );
    });
}

#[test]
fn a_run_created_under_version_9_reads_back_with_the_default_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = file_at_version(&path, 9);
    let id = "01a21a74-415a-7499-bb4b-a136a9293b9c";
    old.execute(
        "INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at) \
         VALUES (?1, 'w', 'queued', '{}', 'test', 0, 1, 1)",
        [id],
    )
    .expect("a version 9 run");
    drop(old);

    let conn = open_writer(&path, TIMEOUT).expect("upgrade");

    let id: RunId = id.parse().expect("id");
    assert_eq!(owner_of(&conn, id), Owner::default(), "get_run");
    let listed = read::list_runs(&conn, &RunFilter::default()).expect("list_runs");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owner, Owner::default(), "list_runs");
    let (reply, claimed) = oneshot::channel();
    let lease = Lease {
        worker: WorkerId("w".into()),
        expires_at_ms: NOW,
    };
    execute_batch(
        &conn,
        &mut RunCache::default(),
        [Command::ClaimRun {
            id,
            lease,
            now_ms: 1,
            reply,
        }],
    );
    let claimed = claimed.blocking_recv().expect("answered").expect("claim");
    let RawClaimOutcome::Claimed(claimed) = claimed else {
        panic!("the run is claimable");
    };
    assert_eq!(
        claimed.decode().expect("decode").run.owner,
        Owner::default()
    );
}

#[test]
fn the_default_owner_is_stored_as_null_and_another_as_its_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = open_writer(&dir.path().join("cairn.db"), TIMEOUT).expect("create");
    let plain = create(&conn, Owner::default());
    let owned = create(&conn, acme());
    let project_only = Owner {
        user: None,
        ..acme()
    };
    let without_user = create(&conn, project_only.clone());

    let stored = |id: RunId| -> Option<String> {
        conn.query_row(
            "SELECT owner FROM runs WHERE id = ?1",
            [id.to_string()],
            |row| row.get(0),
        )
        .expect("the run's row")
    };
    assert_eq!(stored(plain), None, "the default owner binds a NULL");
    let json: serde_json::Value =
        serde_json::from_str(&stored(owned).expect("an owner")).expect("JSON");
    assert_eq!(
        json,
        json!({ "org": "acme", "project": "web", "user": "ada" })
    );
    assert_eq!(owner_of(&conn, plain), Owner::default());
    assert_eq!(owner_of(&conn, owned), acme());
    assert_eq!(owner_of(&conn, without_user), project_only);
}
