//! Credentials written by several stores at once (two pools, as two worker processes) on one
//! schema: the default rule's check and write, and a rotation's check and write, are never
//! split by another process's save.

mod common;

use std::sync::Arc;

use cairn_core::{Holder, Scope};
use cairn_store::{CredentialFilter, CredentialRecord, Reseal, Store, StoreError};
use common::TestSchema;
use tokio::sync::Barrier;

const T0: i64 = 1_700_000_000_000;

fn org() -> Holder {
    Holder {
        scope: Scope::Organization,
        org: "acme".into(),
        project: None,
        user: None,
    }
}

fn credential(id: &str) -> CredentialRecord {
    CredentialRecord {
        id: id.into(),
        key: "slack".into(),
        holder: org(),
        is_default: false,
        fields: vec!["botToken".into()],
        sealed: format!("sealed-{id}").into_bytes(),
        expires_at_ms: None,
        created_at_ms: T0,
        updated_at_ms: T0,
    }
}

async fn all(store: &dyn Store) -> Vec<CredentialRecord> {
    store
        .list_credentials(&CredentialFilter::default())
        .await
        .expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_saving_a_holders_first_credentials_at_once_leave_one_default() {
    const KEYS: usize = 24;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let barrier = Arc::new(Barrier::new(2));
    let savers: Vec<_> = [&a, &b]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            tokio::spawn(async move {
                for k in 0..KEYS {
                    // Both processes save the first credentials of key k at the same moment.
                    barrier.wait().await;
                    let saved = CredentialRecord {
                        key: format!("key-{k}"),
                        ..credential(&format!("cred_{n}_{k}"))
                    };
                    store.put_credential(saved).await.expect("put");
                }
            })
        })
        .collect();
    for saver in savers {
        saver.await.expect("a saver panicked");
    }
    let listed = all(&*a).await;
    assert_eq!(listed.len(), 2 * KEYS);
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let defaults = listed
            .iter()
            .filter(|credential| credential.key == key && credential.is_default);
        assert_eq!(defaults.count(), 1, "one default for {key} and its holder");
    }
}

/// Another process replaces a credential while a rotation runs: in either order the save
/// survives (a rotation that ran first is followed by it, one that ran after it refuses, its
/// bytes having changed), and the rotation writes all its credentials or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_racing_a_save_in_another_process_is_all_or_nothing() {
    const ROUNDS: usize = 16;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    for id in ["r1", "r2", "r3"] {
        a.put_credential(credential(id)).await.expect("put");
    }
    let barrier = Arc::new(Barrier::new(2));
    for round in 0..ROUNDS {
        let before = all(&*a).await;
        let reseals: Vec<Reseal> = before
            .iter()
            .map(|credential| Reseal {
                id: credential.id.clone(),
                old: credential.sealed.clone(),
                new: format!("rotated-{round}-{}", credential.id).into_bytes(),
            })
            .collect();
        let replaced = CredentialRecord {
            sealed: format!("saved-{round}").into_bytes(),
            ..credential("r1")
        };
        let saver = {
            let (b, barrier, replaced) = (Arc::clone(&b), Arc::clone(&barrier), replaced.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                b.put_credential(replaced).await
            })
        };
        barrier.wait().await;
        let rotated = a.reseal_credentials(&reseals, T0 + 1).await;
        saver.await.expect("the saver panicked").expect("put");

        let after = all(&*a).await;
        let sealed = |id: &str| -> Vec<u8> {
            let found = after.iter().find(|credential| credential.id == id);
            found.expect("listed").sealed.clone()
        };
        assert_eq!(
            sealed("r1"),
            replaced.sealed,
            "round {round}: the save is never overwritten by a rotation that read before it"
        );
        let others = reseals.iter().filter(|reseal| reseal.id != "r1");
        match rotated {
            Ok(()) => {
                for reseal in others {
                    assert_eq!(sealed(&reseal.id), reseal.new, "round {round}: all");
                }
            }
            Err(StoreError::CredentialsChanged) => {
                for reseal in others {
                    assert_eq!(sealed(&reseal.id), reseal.old, "round {round}: nothing");
                }
            }
            Err(error) => panic!("round {round}: {error}"),
        }
    }
}
