//! Conformance: a run's owner, and credential rows (`put_credential`, the default rule,
//! listing, deletion, key rotation all or nothing).

use std::sync::Arc;

use cairn_core::{Holder, Owner, Scope};
use serde_json::json;

use super::support::{T0, create, expect_claimed, get, lease, new_run, worker};
use crate::{CredentialFilter, CredentialRecord, Reseal, Store, StoreError};

/// A run keeps the owner it was created with: reads, listings and claims return it.
pub async fn a_run_keeps_its_owner(store: Arc<dyn Store>) {
    let store = &*store;
    let owner = Owner {
        org: "acme".into(),
        project: "web".into(),
        user: Some("ada".into()),
    };
    let owned = create(
        store,
        crate::NewRun {
            owner: owner.clone(),
            ..new_run("etl", json!({}))
        },
    )
    .await;
    let plain = create(store, new_run("etl", json!({}))).await;
    assert_eq!(
        get(store, owned).await.owner,
        owner,
        "get_run keeps the owner"
    );
    assert_eq!(
        get(store, plain).await.owner,
        Owner::default(),
        "a run created with the default owner reads back with it"
    );
    let listed = store
        .list_runs(&crate::RunFilter::default())
        .await
        .expect("list_runs");
    let listed_owner = listed
        .iter()
        .find(|run| run.run_id == owned)
        .map(|run| &run.owner);
    assert_eq!(listed_owner, Some(&owner), "list_runs keeps the owner");
    let w = worker("w");
    let claimed = store
        .claim_run(owned, &lease(&w, T0 + 30_000), T0)
        .await
        .expect("claim_run");
    assert_eq!(
        expect_claimed(claimed, "claim").run.owner,
        owner,
        "a claim returns the owner"
    );
}

fn holder(scope: Scope, org: &str, name: Option<&str>) -> Holder {
    Holder {
        scope,
        org: org.into(),
        project: (scope == Scope::Project).then(|| name.unwrap_or("web").into()),
        user: (scope == Scope::User).then(|| name.unwrap_or("ada").into()),
    }
}

fn credential(id: &str, key: &str, holder: Holder, at: i64) -> CredentialRecord {
    CredentialRecord {
        id: id.into(),
        key: key.into(),
        holder,
        is_default: false,
        fields: vec!["botToken".into()],
        sealed: format!("sealed-{id}-{at}").into_bytes(),
        expires_at_ms: None,
        created_at_ms: at,
        updated_at_ms: at,
    }
}

async fn defaults(store: &dyn Store, key: &str) -> Vec<String> {
    let filter = CredentialFilter {
        key: Some(key.into()),
        ..CredentialFilter::default()
    };
    let listed = store.list_credentials(&filter).await.expect("list");
    listed
        .into_iter()
        .filter(|credential| credential.is_default)
        .map(|credential| credential.id)
        .collect()
}

/// Credentials round-trip exactly (sealed bytes included); a holder's first credential of a
/// key is its default, a new default takes the flag, `set_default_credential` moves it; a
/// replacement keeps `created_at_ms`; deletion reports whether there was one.
pub async fn credentials_round_trip_with_one_default_per_holder(store: Arc<dyn Store>) {
    let store = &*store;
    let org = holder(Scope::Organization, "acme", None);
    let mut first = credential("cred_1", "slack", org.clone(), T0);
    first.expires_at_ms = Some(T0 + 3_600_000);
    first.fields = vec!["botToken".into(), "team".into()];
    store.put_credential(first.clone()).await.expect("put");
    let read = store.get_credential("cred_1").await.expect("get");
    assert_eq!(
        read,
        Some(CredentialRecord {
            is_default: true,
            ..first.clone()
        }),
        "a holder's first credential of a key is read back exactly, as its default"
    );
    store
        .put_credential(credential("cred_2", "slack", org.clone(), T0 + 1))
        .await
        .expect("put");
    assert_eq!(
        defaults(store, "slack").await,
        ["cred_1"],
        "a second credential does not take the default unless asked"
    );
    let mut third = credential("cred_3", "slack", org.clone(), T0 + 2);
    third.is_default = true;
    store.put_credential(third).await.expect("put");
    assert_eq!(
        defaults(store, "slack").await,
        ["cred_3"],
        "a new default takes the flag"
    );
    store
        .set_default_credential("cred_2", T0 + 3)
        .await
        .expect("set default");
    assert_eq!(defaults(store, "slack").await, ["cred_2"]);
    assert!(matches!(
        store.set_default_credential("cred_none", T0).await,
        Err(StoreError::CredentialNotFound(id)) if id == "cred_none"
    ));

    // Other holders and keys have defaults of their own.
    store
        .put_credential(credential(
            "cred_p",
            "slack",
            holder(Scope::Project, "acme", None),
            T0,
        ))
        .await
        .expect("put");
    store
        .put_credential(credential("cred_g", "github", org.clone(), T0))
        .await
        .expect("put");
    assert_eq!(defaults(store, "slack").await, ["cred_p", "cred_2"]);
    assert_eq!(defaults(store, "github").await, ["cred_g"]);

    // Replacing keeps the creation time and takes the new sealed bytes.
    let mut replaced = credential("cred_1", "slack", org.clone(), T0 + 10);
    replaced.sealed = b"resealed".to_vec();
    store.put_credential(replaced).await.expect("replace");
    let read = store
        .get_credential("cred_1")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        (
            read.created_at_ms,
            read.updated_at_ms,
            read.sealed.as_slice()
        ),
        (T0, T0 + 10, b"resealed".as_slice())
    );
    assert!(
        !read.is_default,
        "replacing does not take the default unless asked"
    );

    assert!(store.delete_credential("cred_3").await.expect("delete"));
    assert!(!store.delete_credential("cred_3").await.expect("delete"));
    assert_eq!(store.get_credential("cred_3").await.expect("get"), None);
}

/// `list_credentials` filters by key, organization, scope, project and user, in the listing
/// order: key, scope (narrowest first), holder, newest first.
pub async fn list_credentials_filters_and_orders(store: Arc<dyn Store>) {
    let store = &*store;
    let rows = [
        credential("c1", "slack", holder(Scope::Organization, "acme", None), T0),
        credential(
            "c2",
            "slack",
            holder(Scope::Project, "acme", Some("web")),
            T0,
        ),
        credential(
            "c3",
            "slack",
            holder(Scope::Project, "acme", Some("api")),
            T0,
        ),
        credential("c4", "slack", holder(Scope::User, "acme", Some("ada")), T0),
        credential(
            "c5",
            "slack",
            holder(Scope::User, "acme", Some("ada")),
            T0 + 5,
        ),
        credential(
            "c6",
            "github",
            holder(Scope::Organization, "acme", None),
            T0,
        ),
        credential(
            "c7",
            "slack",
            holder(Scope::Organization, "other", None),
            T0,
        ),
    ];
    for row in rows {
        store.put_credential(row).await.expect("put");
    }
    let ids = |listed: Vec<CredentialRecord>| -> Vec<String> {
        listed.into_iter().map(|credential| credential.id).collect()
    };
    let all = store
        .list_credentials(&CredentialFilter::default())
        .await
        .expect("list");
    assert_eq!(ids(all), ["c6", "c5", "c4", "c3", "c2", "c1", "c7"]);
    let acme_slack = CredentialFilter {
        key: Some("slack".into()),
        org: Some("acme".into()),
        ..CredentialFilter::default()
    };
    let listed = store.list_credentials(&acme_slack).await.expect("list");
    assert_eq!(ids(listed), ["c5", "c4", "c3", "c2", "c1"]);
    let web = CredentialFilter {
        scope: Some(Scope::Project),
        project: Some("web".into()),
        ..acme_slack.clone()
    };
    assert_eq!(
        ids(store.list_credentials(&web).await.expect("list")),
        ["c2"]
    );
    let ada = CredentialFilter {
        user: Some("ada".into()),
        ..CredentialFilter::default()
    };
    assert_eq!(
        ids(store.list_credentials(&ada).await.expect("list")),
        ["c5", "c4"]
    );
}

/// `reseal_credentials` replaces every credential's sealed bytes at once, and writes nothing
/// when one changed since it was read or one is not named.
pub async fn reseal_credentials_is_all_or_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let org = holder(Scope::Organization, "acme", None);
    for id in ["r1", "r2"] {
        store
            .put_credential(credential(id, "slack", org.clone(), T0))
            .await
            .expect("put");
    }
    let read = |id: &str| {
        let id = id.to_owned();
        async move {
            store
                .get_credential(&id)
                .await
                .expect("get")
                .expect("there")
                .sealed
        }
    };
    let old1 = read("r1").await;
    let old2 = read("r2").await;
    let reseal = |id: &str, old: &[u8]| Reseal {
        id: id.into(),
        old: old.to_vec(),
        new: format!("new-{id}").into_bytes(),
    };

    let partial = [reseal("r1", &old1)];
    assert!(matches!(
        store.reseal_credentials(&partial, T0 + 1).await,
        Err(StoreError::CredentialsChanged)
    ));
    let stale = [reseal("r1", &old1), reseal("r2", b"not what is stored")];
    assert!(matches!(
        store.reseal_credentials(&stale, T0 + 1).await,
        Err(StoreError::CredentialsChanged)
    ));
    assert_eq!(
        (read("r1").await, read("r2").await),
        (old1.clone(), old2.clone()),
        "a refused reseal writes nothing"
    );

    let all = [reseal("r1", &old1), reseal("r2", &old2)];
    store
        .reseal_credentials(&all, T0 + 2)
        .await
        .expect("reseal");
    assert_eq!(
        (read("r1").await, read("r2").await),
        (b"new-r1".to_vec(), b"new-r2".to_vec())
    );
    let updated = store
        .get_credential("r2")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(updated.updated_at_ms, T0 + 2);
    store
        .reseal_credentials(&[], T0 + 3)
        .await
        .expect_err("an empty reseal of a store with credentials is refused");
}
