//! The memory store's credential table: rows by id, with the default rule of every backend
//! (a holder's first credential of a key is its default; a new default takes the flag).

use std::collections::BTreeMap;

use crate::{
    CredentialFilter, CredentialRecord, Reseal, StoreError, StoreResult, first_is_default,
    listing_order,
};

/// Credentials by id.
#[derive(Default)]
pub(super) struct Credentials {
    rows: BTreeMap<String, CredentialRecord>,
}

impl Credentials {
    pub(super) fn put(&mut self, mut credential: CredentialRecord) {
        if let Some(existing) = self.rows.get(&credential.id) {
            credential.created_at_ms = existing.created_at_ms;
        }
        let others = self
            .rows
            .values()
            .filter(|other| same_slot(other, &credential) && other.id != credential.id)
            .count();
        credential.is_default = first_is_default(credential.is_default, others);
        if credential.is_default {
            self.clear_defaults_like(&credential);
        }
        self.rows.insert(credential.id.clone(), credential);
    }

    pub(super) fn get(&self, id: &str) -> Option<CredentialRecord> {
        self.rows.get(id).cloned()
    }

    pub(super) fn list(&self, filter: &CredentialFilter) -> Vec<CredentialRecord> {
        let mut listed: Vec<CredentialRecord> = self
            .rows
            .values()
            .filter(|credential| filter.matches(credential))
            .cloned()
            .collect();
        listed.sort_by(listing_order);
        listed
    }

    pub(super) fn delete(&mut self, id: &str) -> bool {
        self.rows.remove(id).is_some()
    }

    pub(super) fn set_default(&mut self, id: &str, now_ms: i64) -> StoreResult<()> {
        let credential = self
            .rows
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::CredentialNotFound(id.to_owned()))?;
        self.clear_defaults_like(&credential);
        let row = self.rows.get_mut(id).expect("looked up above");
        row.is_default = true;
        row.updated_at_ms = now_ms;
        Ok(())
    }

    pub(super) fn reseal(&mut self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()> {
        let all_named = reseals.len() == self.rows.len()
            && reseals.iter().all(|reseal| {
                self.rows
                    .get(&reseal.id)
                    .is_some_and(|row| row.sealed == reseal.old)
            });
        if !all_named {
            return Err(StoreError::CredentialsChanged);
        }
        for reseal in reseals {
            let row = self.rows.get_mut(&reseal.id).expect("checked above");
            row.sealed.clone_from(&reseal.new);
            row.updated_at_ms = now_ms;
        }
        Ok(())
    }

    fn clear_defaults_like(&mut self, credential: &CredentialRecord) {
        for other in self.rows.values_mut() {
            if same_slot(other, credential) {
                other.is_default = false;
            }
        }
    }
}

/// Whether two credentials are of one key and holder (so at most one is the default).
fn same_slot(a: &CredentialRecord, b: &CredentialRecord) -> bool {
    a.key == b.key && a.holder == b.holder
}
