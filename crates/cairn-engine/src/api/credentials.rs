//! Managing credentials: set (sealed with the master key), list and get (never a value),
//! delete, choose a holder's default, rotate the master key. The CLI's `credentials`
//! commands and the HTTP API's `/credentials` call these.

use std::collections::BTreeMap;

use cairn_core::{Holder, Scope};
use cairn_store::{CredentialFilter, CredentialRecord, Reseal, StoreError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    api::{engine::Engine, view::timestamp},
    base::{
        credential::{fields_from_bytes, fields_to_bytes},
        entropy::EntropyExt,
        error::EngineError,
        vault::{MasterKey, Secret, VaultError},
    },
};

/// The length a credential's owner names may have.
const MAX_HOLDER_NAME_LEN: usize = 128;

/// A credential to save.
#[derive(Clone, Debug)]
pub struct SetCredential {
    /// Its type (`slack`): one a registered action needs, or registered alone.
    pub key: String,
    /// Who it belongs to.
    pub holder: Holder,
    /// Its fields (checked against the type's declaration).
    pub fields: BTreeMap<String, Secret>,
    /// Make it its holder's default for the type (a holder's first one is anyway).
    pub is_default: bool,
    /// Replace this credential (of the same type and holder) instead of adding one.
    pub id: Option<String>,
    /// When its token lapses (unix ms), for credentials that expire.
    pub expires_at_ms: Option<i64>,
}

/// A credential as shown: what it is and whose, never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    /// Its id.
    pub id: String,
    /// Its type.
    pub key: String,
    /// Who it belongs to.
    pub holder: Holder,
    /// Whether it is its holder's default for its type.
    pub is_default: bool,
    /// The fields it sets (names only).
    pub fields: Vec<String>,
    /// When its token lapses (RFC 3339, UTC), for credentials that expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was first saved (RFC 3339, UTC).
    pub created_at: String,
    /// When it was last saved (RFC 3339, UTC).
    pub updated_at: String,
}

impl From<CredentialRecord> for CredentialView {
    fn from(record: CredentialRecord) -> Self {
        CredentialView {
            id: record.id,
            key: record.key,
            holder: record.holder,
            is_default: record.is_default,
            fields: record.fields,
            expires_at: record.expires_at_ms.map(timestamp),
            created_at: timestamp(record.created_at_ms),
            updated_at: timestamp(record.updated_at_ms),
        }
    }
}

impl Engine {
    /// Saves a credential, sealed with the master key: a new one, or a replacement of
    /// `set.id`. Its fields must fit its type's declaration.
    pub async fn set_credential(&self, set: SetCredential) -> Result<CredentialView, EngineError> {
        let registry = &self.runtime.registry;
        let Some(declared) = registry.credentials().find(|c| c.key() == set.key) else {
            let known: Vec<&str> = registry.credentials().map(|c| c.key()).collect();
            return Err(EngineError::UnknownCredentialType {
                key: set.key,
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        };
        declared.check(&set.fields)?;
        check_holder(&set.holder)?;
        let store = self.store();
        let env = &self.runtime.env;
        let now_ms = env.clock.now_ms();
        let id = match set.id {
            Some(id) => {
                let existing = store
                    .get_credential(&id)
                    .await?
                    .ok_or_else(|| StoreError::CredentialNotFound(id.clone()))?;
                if existing.key != set.key || existing.holder != set.holder {
                    return Err(EngineError::BadRequest(format!(
                        "credential {id} is a {:?} credential of {} ({} scope); a replacement \
                         keeps its type and holder (delete it and set a new one to move it)",
                        existing.key, existing.holder, existing.holder.scope
                    )));
                }
                id
            }
            None => new_credential_id(&*env.entropy),
        };
        let key = env.keyring.key()?;
        let record = CredentialRecord {
            sealed: key.seal(&id, &fields_to_bytes(&set.fields)),
            id: id.clone(),
            key: set.key,
            holder: set.holder,
            is_default: set.is_default,
            fields: set.fields.keys().cloned().collect(),
            expires_at_ms: set.expires_at_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        store.put_credential(record).await?;
        self.credential(&id).await
    }

    /// One credential, without its values.
    pub async fn credential(&self, id: &str) -> Result<CredentialView, EngineError> {
        let record = self
            .store()
            .get_credential(id)
            .await?
            .ok_or_else(|| StoreError::CredentialNotFound(id.to_owned()))?;
        Ok(record.into())
    }

    /// The credentials matching `filter`, without their values.
    pub async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> Result<Vec<CredentialView>, EngineError> {
        let records = self.store().list_credentials(filter).await?;
        Ok(records.into_iter().map(CredentialView::from).collect())
    }

    /// Deletes a credential. Steps that used it keep their record of its id.
    pub async fn delete_credential(&self, id: &str) -> Result<(), EngineError> {
        if self.store().delete_credential(id).await? {
            Ok(())
        } else {
            Err(StoreError::CredentialNotFound(id.to_owned()).into())
        }
    }

    /// Makes a credential its holder's default for its type.
    pub async fn set_default_credential(&self, id: &str) -> Result<CredentialView, EngineError> {
        let now_ms = self.runtime.env.clock.now_ms();
        self.store().set_default_credential(id, now_ms).await?;
        self.credential(id).await
    }

    /// Re-encrypts every credential with `new_key`, in one transaction, and uses it from now
    /// on; returns how many were re-encrypted. A credential that does not open with the
    /// current key stops the rotation before anything is written.
    pub async fn rotate_master_key(&self, new_key: &MasterKey) -> Result<usize, EngineError> {
        let env = &self.runtime.env;
        let store = self.store();
        let records = store.list_credentials(&CredentialFilter::default()).await?;
        let reseals = if records.is_empty() {
            Vec::new()
        } else {
            let key = env.keyring.key()?;
            let mut reseals = Vec::with_capacity(records.len());
            for record in records {
                let plain = key.open(&record.id, &record.sealed)?;
                let fields = fields_from_bytes(&plain).ok_or(VaultError::UnknownFormat {
                    credential: record.id.clone(),
                })?;
                reseals.push(Reseal {
                    new: new_key.seal(&record.id, &fields_to_bytes(&fields)),
                    id: record.id,
                    old: record.sealed,
                });
            }
            reseals
        };
        store
            .reseal_credentials(&reseals, env.clock.now_ms())
            .await?;
        env.keyring.replace(new_key.clone());
        Ok(reseals.len())
    }
}

/// `cred_` and 20 hex digits of the engine's entropy.
fn new_credential_id(entropy: &dyn crate::base::entropy::Entropy) -> String {
    let bytes: [u8; 10] = entropy.bytes();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("cred_{hex}")
}

/// A holder has the names its scope needs, and only those, each 1–128 characters.
pub(crate) fn check_holder(holder: &Holder) -> Result<(), EngineError> {
    let (needs_project, needs_user) = match holder.scope {
        Scope::Organization => (false, false),
        Scope::Project => (true, false),
        Scope::User => (false, true),
    };
    let scope = holder.scope;
    if holder.project.is_some() != needs_project || holder.user.is_some() != needs_user {
        return Err(EngineError::BadRequest(format!(
            "a {scope}-scoped credential belongs to an organization{}; give {}",
            match scope {
                Scope::Organization => "",
                Scope::Project => " and a project in it",
                Scope::User => " and a user in it",
            },
            match scope {
                Scope::Organization => "no project and no user",
                Scope::Project => "the project (--project) and no user",
                Scope::User => "the user (--user) and no project",
            }
        )));
    }
    let names = [
        Some(&holder.org),
        holder.project.as_ref(),
        holder.user.as_ref(),
    ];
    if let Some(bad) = names.into_iter().flatten().find(|name| {
        name.is_empty() || name.len() > MAX_HOLDER_NAME_LEN || name.chars().any(char::is_control)
    }) {
        return Err(EngineError::BadRequest(format!(
            "{bad:?} is not a usable name for a credential's owner: names are 1 to \
             {MAX_HOLDER_NAME_LEN} characters, none of them control characters"
        )));
    }
    Ok(())
}
