//! A resolved credential's token, usable for the attempt: one that lapses within a minute of
//! the engine clock's now is refreshed first when its type is connected with OAuth and a
//! refresh token is stored (the new token re-sealed and saved under the same id, with its new
//! expiry). Otherwise an expired token fails the step with `CredentialExpired` (fatal: the
//! person reconnects via `/credentials/connect/{key}`), as does a refresh the provider
//! refuses; a token endpoint that cannot be reached is retryable, and a token that has not
//! yet lapsed is used meanwhile.
//!
//! Steps of one process refreshing the same credential take turns, and a later one finds the
//! token fresh and uses it; processes do not coordinate (each refresh saves a working token).

use cairn_core::{ErrorKind, Holder};
use cairn_store::CredentialRecord;

use crate::{
    base::{
        clock::system_time,
        credential::{NeededCredential, ResolvedCredential, fields_to_bytes},
        error::ActionError,
        oauth::{OAuth, OAuthError, process_env},
    },
    call::credentials::{open, store_failed},
    run::env::RunEnv,
};

/// A token lapsing this soon (ms) is refreshed before a step uses it.
pub(crate) const REFRESH_MARGIN_MS: i64 = 60_000;

/// The credential `record`, opened, with a token that does not lapse within the margin.
pub(crate) async fn usable(
    env: &RunEnv,
    need: &NeededCredential,
    record: CredentialRecord,
) -> Result<ResolvedCredential, ActionError> {
    let now_ms = env.clock.now_ms();
    if !lapses_soon(&record, now_ms) {
        return open(&env.keyring, need, record);
    }
    let oauth = need.credential.oauth_settings();
    let credential = open(&env.keyring, need, record.clone())?;
    let refresh_token = oauth.and_then(|oauth| credential.get(oauth.refresh_field()));
    let (Some(oauth), Some(_)) = (oauth, refresh_token) else {
        if lapsed(&record, now_ms) {
            return Err(expired(&record, "and cannot be refreshed"));
        }
        return Ok(credential);
    };
    // One refresh at a time per credential; a step that waited finds it refreshed.
    let lock = env.oauth.refresh_lock(&record.id);
    let _turn = lock.lock().await;
    let current = env
        .store
        .get_credential(&record.id)
        .await
        .map_err(store_failed)?
        .unwrap_or(record);
    let now_ms = env.clock.now_ms();
    if !lapses_soon(&current, now_ms) {
        return open(&env.keyring, need, current);
    }
    let credential = open(&env.keyring, need, current.clone())?;
    refresh(env, need, oauth, current, credential, now_ms).await
}

/// Exchanges the stored refresh token, saves the new tokens, and answers with them.
async fn refresh(
    env: &RunEnv,
    need: &NeededCredential,
    oauth: &OAuth,
    record: CredentialRecord,
    mut credential: ResolvedCredential,
    now_ms: i64,
) -> Result<ResolvedCredential, ActionError> {
    let Some(refresh_token) = credential.get(oauth.refresh_field()).cloned() else {
        return Err(expired(&record, "and cannot be refreshed"));
    };
    let client = oauth
        .client(need.credential.key(), &process_env)
        .map_err(|err| unavailable(err.to_string()))?;
    let tokens = match env.oauth.refresh(&client, &refresh_token).await {
        Ok(tokens) => tokens,
        Err(err @ OAuthError::Unreachable { .. }) if !lapsed(&record, now_ms) => {
            tracing::warn!(credential = %record.id, error = %err, "refresh failed; the token is still valid");
            return Ok(credential);
        }
        Err(err @ OAuthError::Unreachable { .. }) => {
            return Err(ActionError::retryable(format!(
                "credential {} expired and could not be refreshed yet: {err}",
                record.id
            ))
            .with_kind(ErrorKind::CredentialUnavailable));
        }
        Err(err @ (OAuthError::Refused { .. } | OAuthError::BadResponse { .. })) => {
            return Err(expired(
                &record,
                &format!("and refreshing it failed: {err}"),
            ));
        }
        Err(err) => return Err(unavailable(err.to_string())),
    };
    let expires_at_ms = oauth.store_tokens(&mut credential.fields, tokens, now_ms);
    let key = env
        .keyring
        .key()
        .map_err(|err| unavailable(err.to_string()))?;
    let saved = CredentialRecord {
        sealed: key.seal(&record.id, &fields_to_bytes(&credential.fields)),
        fields: credential.fields.keys().cloned().collect(),
        expires_at_ms,
        updated_at_ms: env.clock.now_ms(),
        ..record
    };
    env.store
        .put_credential(saved)
        .await
        .map_err(store_failed)?;
    Ok(credential)
}

/// `CredentialUnavailable`, fatal: a configuration problem reconnecting does not fix.
fn unavailable(message: String) -> ActionError {
    ActionError::fatal(message).with_kind(ErrorKind::CredentialUnavailable)
}

/// Whether the token lapses within the margin.
fn lapses_soon(record: &CredentialRecord, now_ms: i64) -> bool {
    record
        .expires_at_ms
        .is_some_and(|at| at <= now_ms.saturating_add(REFRESH_MARGIN_MS))
}

/// Whether the token has lapsed.
fn lapsed(record: &CredentialRecord, now_ms: i64) -> bool {
    record.expires_at_ms.is_some_and(|at| at <= now_ms)
}

/// `CredentialExpired`: what lapsed, `why` it was not renewed, and how to reconnect.
fn expired(record: &CredentialRecord, why: &str) -> ActionError {
    let at = record
        .expires_at_ms
        .map(|ms| humantime::format_rfc3339_seconds(system_time(ms)).to_string())
        .unwrap_or_default();
    ActionError::fatal(format!(
        "credential {} ({:?}, {} scope, of {}) expired at {at} {why}; {}, then retry the run \
         (`cairn runs retry <run>`)",
        record.id,
        record.key,
        record.holder.scope,
        record.holder,
        reconnect(&record.key, &record.holder)
    ))
    .with_kind(ErrorKind::CredentialExpired)
}

/// How to connect the credential again.
fn reconnect(key: &str, holder: &Holder) -> String {
    match &holder.user {
        Some(user) => format!(
            "reconnect it: send the user to GET /credentials/connect/{key}?user={user}&org={}",
            holder.org
        ),
        None => format!("set it again (`cairn credentials set {key} …`)"),
    }
}
