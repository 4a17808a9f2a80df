//! Tests of the credential writes on the writer thread: each in its own savepoint, so a
//! refused one fails alone and the others of its batch commit; and the listing's index.

use cairn_core::{Holder, Scope};
use cairn_store::{CredentialFilter, CredentialRecord, Reseal, StoreError, StoreResult};
use tokio::sync::oneshot;

use super::{CredentialWrite, field_names, get, list, list_query};
use crate::{
    run_cache::RunCache,
    schema::tests::plan,
    writer::{
        Command,
        tests::{NOW, execute_batch, writer_connection},
    },
};

fn credential(id: &str, is_default: bool) -> CredentialRecord {
    CredentialRecord {
        id: id.into(),
        key: "slack".into(),
        holder: Holder {
            scope: Scope::Project,
            org: "acme".into(),
            project: Some("web".into()),
            user: None,
        },
        is_default,
        fields: vec!["botToken".into()],
        sealed: vec![0, 159, 146, 150, 255],
        expires_at_ms: None,
        created_at_ms: NOW,
        updated_at_ms: NOW,
    }
}

fn put(credential: CredentialRecord) -> (Command, oneshot::Receiver<StoreResult<()>>) {
    let (reply, answer) = oneshot::channel();
    let fields = field_names(&credential).expect("encode");
    let write = CredentialWrite::Put {
        credential: Box::new(credential),
        fields,
        reply,
    };
    (Command::Credential(write), answer)
}

fn answered<T>(answer: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
    answer.blocking_recv().expect("answered")
}

#[test]
fn a_refused_credential_write_fails_alone_and_its_batch_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let (first, first_put) = put(credential("cred_1", false));
    let (missing_reply, missing) = oneshot::channel();
    let (stale_reply, stale) = oneshot::channel();
    let (second, second_put) = put(credential("cred_2", true));
    execute_batch(
        &conn,
        &mut runs,
        [
            first,
            Command::Credential(CredentialWrite::SetDefault {
                id: "cred_none".into(),
                now_ms: NOW,
                reply: missing_reply,
            }),
            Command::Credential(CredentialWrite::Reseal {
                reseals: vec![Reseal {
                    id: "cred_1".into(),
                    old: b"not what is stored".to_vec(),
                    new: b"new".to_vec(),
                }],
                now_ms: NOW,
                reply: stale_reply,
            }),
            second,
        ],
    );

    answered(first_put).expect("the first put");
    assert!(matches!(
        answered(missing),
        Err(StoreError::CredentialNotFound(id)) if id == "cred_none"
    ));
    assert!(matches!(
        answered(stale),
        Err(StoreError::CredentialsChanged)
    ));
    answered(second_put).expect("the second put, after two refusals");
    let listed = list(&conn, &CredentialFilter::default()).expect("list");
    let defaults: Vec<(&str, bool)> = listed
        .iter()
        .map(|credential| (credential.id.as_str(), credential.is_default))
        .collect();
    assert_eq!(
        defaults,
        [("cred_1", false), ("cred_2", true)],
        "the holder's first was its default until the second, asked to be, took the flag"
    );
    let read = get(&conn, "cred_1").expect("get").expect("there");
    assert_eq!(
        read.sealed,
        credential("cred_1", false).sealed,
        "the refused reseal wrote nothing; bytes that are not UTF-8 read back exactly"
    );
}

#[test]
fn listing_a_key_of_an_organization_goes_through_the_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let filter = CredentialFilter {
        key: Some("slack".into()),
        org: Some("acme".into()),
        ..CredentialFilter::default()
    };
    let (sql, values) = list_query(&filter);
    assert_eq!(values.len(), 2);
    let steps = plan(&conn, &sql);
    assert!(
        steps
            .iter()
            .any(|step| step.contains("credentials_by_key") && step.contains("key=? AND org=?")),
        "{steps:?}"
    );
}
