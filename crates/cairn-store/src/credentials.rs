//! Credential rows as a store keeps them: sealed fields (the store never sees a value), the
//! holder (a scope and who at it), the default flag, and the rules every backend applies to
//! them ([`first_is_default`]). The engine seals, opens and resolves; stores only keep.

use cairn_core::{Holder, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stored credential. `sealed` holds its fields encrypted with the master key (the store
/// cannot read them); `fields` names them, so listings can say what is set without a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    /// Its id (`cred_…`), chosen by the engine.
    pub id: String,
    /// The credential type (`slack`).
    pub key: String,
    /// Who it belongs to.
    pub holder: Holder,
    /// Whether it is its holder's default for its key: the one a run uses when its step pins
    /// no credential id.
    pub is_default: bool,
    /// The names of the fields it sets (values are in `sealed`).
    pub fields: Vec<String>,
    /// The fields, sealed (see the engine's vault). Never shown.
    #[serde(skip)]
    #[schemars(skip)]
    pub sealed: Vec<u8>,
    /// When its access token lapses (unix ms), for credentials that expire (OAuth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// When it was first saved (unix ms).
    pub created_at_ms: i64,
    /// When it was last saved (unix ms).
    pub updated_at_ms: i64,
}

/// Which credentials to list; every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialFilter {
    /// Only this type.
    pub key: Option<String>,
    /// Only this organization's.
    pub org: Option<String>,
    /// Only this scope's.
    pub scope: Option<Scope>,
    /// Only this project's (project-scoped ones).
    pub project: Option<String>,
    /// Only this user's (user-scoped ones).
    pub user: Option<String>,
}

impl CredentialFilter {
    /// Whether `credential` passes the filter.
    pub fn matches(&self, credential: &CredentialRecord) -> bool {
        let holder = &credential.holder;
        self.key.as_ref().is_none_or(|key| *key == credential.key)
            && self.org.as_ref().is_none_or(|org| *org == holder.org)
            && self.scope.is_none_or(|scope| scope == holder.scope)
            && self
                .project
                .as_ref()
                .is_none_or(|project| holder.project.as_ref() == Some(project))
            && self
                .user
                .as_ref()
                .is_none_or(|user| holder.user.as_ref() == Some(user))
    }
}

/// The listing order every backend uses: key, scope (narrowest first), organization,
/// project, user, then newest first.
pub fn listing_order(a: &CredentialRecord, b: &CredentialRecord) -> std::cmp::Ordering {
    (
        &a.key,
        a.holder.scope,
        &a.holder.org,
        &a.holder.project,
        &a.holder.user,
    )
        .cmp(&(
            &b.key,
            b.holder.scope,
            &b.holder.org,
            &b.holder.project,
            &b.holder.user,
        ))
        .then(b.updated_at_ms.cmp(&a.updated_at_ms))
        .then(a.id.cmp(&b.id))
}

/// Whether a credential saved now is its holder's default for its key: when asked, or when
/// the holder has no other credential of that key (a holder's first credential is its
/// default). `others_of_holder` counts the holder's other credentials of the key.
pub fn first_is_default(asked: bool, others_of_holder: usize) -> bool {
    asked || others_of_holder == 0
}

/// A credential's new sealed fields, for [`Store::reseal_credentials`](crate::Store::reseal_credentials)
/// (key rotation): applied only if the stored bytes are still `old`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reseal {
    /// The credential.
    pub id: String,
    /// The sealed fields read before re-encrypting.
    pub old: Vec<u8>,
    /// The same fields sealed with the new key.
    pub new: Vec<u8>,
}
