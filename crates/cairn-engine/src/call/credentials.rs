//! Which credential each attempt of an action step gets, decided at the attempt (so a
//! credential set after a failure is used by `runs retry`):
//!
//! 1. the id pinned on the call (`.credential_id(..)`), for the credential type it is of;
//! 2. else, with a scope pinned (`.scope(..)`), that scope only: its holder's default, else
//!    its newest credential of the type;
//! 3. else the project's default, then the organization's (of the scopes the action allows;
//!    an action allowing only the user scope tries the user's default);
//! 4. else the step fails with `MissingCredentials`, naming the type and what was tried. It
//!    is fatal: no retry storm, a `runs retry` after setting one goes on.
//!
//! The owner (organization, project, user) is the run's. The credential's id and scope are
//! recorded on the attempt's `StepStarted`; its values never leave the attempt.

use std::collections::BTreeMap;

use cairn_core::{ErrorKind, Holder, Owner, Scope, UsedCredential};
use cairn_store::{CredentialFilter, CredentialRecord, Store};

use crate::{
    base::{
        credential::{NeededCredential, ResolvedCredential, fields_from_bytes},
        error::ActionError,
        vault::{Keyring, VaultError},
    },
    call::refresh,
    run::env::RunEnv,
};

/// What a step call pins: a credential id, a scope, or neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CredentialPin {
    pub(crate) scope: Option<Scope>,
    pub(crate) id: Option<String>,
}

/// The credentials of one attempt, resolved.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) credentials: Vec<ResolvedCredential>,
}

impl Resolved {
    /// The credentials as the attempt's `ActionCtx` holds them (none: one shared empty
    /// list, no allocation per attempt).
    pub(crate) fn shared(self) -> std::sync::Arc<[ResolvedCredential]> {
        static NONE: std::sync::LazyLock<std::sync::Arc<[ResolvedCredential]>> =
            std::sync::LazyLock::new(|| std::sync::Arc::from(Vec::new()));
        if self.credentials.is_empty() {
            NONE.clone()
        } else {
            self.credentials.into()
        }
    }

    /// What the attempt's `StepStarted` records.
    pub(crate) fn used(&self) -> Vec<UsedCredential> {
        self.credentials
            .iter()
            .map(|credential| UsedCredential {
                key: credential.key.clone(),
                id: credential.id.clone(),
                scope: credential.scope,
            })
            .collect()
    }
}

/// Resolves every credential in `needs` for a step of a run of `owner` (see the module docs);
/// an OAuth token about to expire is refreshed first (see `refresh`).
pub(crate) async fn resolve(
    env: &RunEnv,
    needs: &[NeededCredential],
    owner: &Owner,
    pin: &CredentialPin,
) -> Result<Resolved, ActionError> {
    let mut resolved = Resolved::default();
    for need in needs {
        let record = match find(&*env.store, need, owner, pin).await {
            Ok(record) => record,
            Err(error) if need.optional && error.kind == ErrorKind::MissingCredentials => continue,
            Err(error) => return Err(error),
        };
        resolved
            .credentials
            .push(refresh::usable(env, need, record).await?);
    }
    Ok(resolved)
}

/// The stored credential for `need`, or the error saying why there is none.
async fn find(
    store: &dyn Store,
    need: &NeededCredential,
    owner: &Owner,
    pin: &CredentialPin,
) -> Result<CredentialRecord, ActionError> {
    let key = need.credential.key();
    if let Some(id) = &pin.id {
        match store.get_credential(id).await.map_err(store_failed)? {
            Some(record) if record.key == key => {
                if belongs_to(&record.holder, owner) && need.scopes.contains(&record.holder.scope) {
                    return Ok(record);
                }
                return Err(missing(format!(
                    "credential {id} ({} scope, of {}) cannot be used by this run, which runs \
                     for {}: a step may use its organization's credentials, its project's and \
                     its user's{}",
                    record.holder.scope,
                    record.holder,
                    describe(owner),
                    allowed_note(need),
                )));
            }
            // Of another type the action needs: this type resolves by scope.
            Some(_) => {}
            None => {
                return Err(missing(format!(
                    "no credential has the id {id} (pinned with .credential_id()); \
                     `credentials list` shows the ids there are"
                )));
            }
        }
    }
    let filter = CredentialFilter {
        key: Some(key.to_owned()),
        org: Some(owner.org.clone()),
        ..CredentialFilter::default()
    };
    let candidates = store
        .list_credentials(&filter)
        .await
        .map_err(store_failed)?;
    let mut tried = Vec::new();
    if let Some(scope) = pin.scope {
        if !need.scopes.contains(&scope) {
            return Err(ActionError::fatal(format!(
                "the step pins the {scope} scope, but its action takes credential {key:?} only at \
                 the {} scope; pin one of those",
                names(&need.scopes)
            ))
            .with_kind(ErrorKind::Misuse));
        }
        let Some(holder) = owner.holder(scope) else {
            return Err(missing(format!(
                "credential {key:?} is pinned to the user scope, but the run has no user; \
                 start it with a user (`--user`, or `owner.user` in the API)"
            )));
        };
        let newest_default = held_by(&candidates, &holder).find(|c| c.is_default);
        if let Some(found) = newest_default.or_else(|| held_by(&candidates, &holder).next()) {
            return Ok(found.clone());
        }
        tried.push(format!("the {scope} scope ({holder})"));
        return Err(not_found(key, owner, &tried, scope));
    }
    let defaults: Vec<Scope> = match need.scopes.as_slice() {
        [Scope::User] => vec![Scope::User],
        scopes => scopes
            .iter()
            .copied()
            .filter(|scope| *scope != Scope::User)
            .collect(),
    };
    for scope in &defaults {
        let Some(holder) = owner.holder(*scope) else {
            tried.push("the user's default (the run has no user)".to_owned());
            continue;
        };
        if let Some(found) = held_by(&candidates, &holder).find(|c| c.is_default) {
            return Ok(found.clone());
        }
        tried.push(format!("the {scope} default ({holder})"));
    }
    let hint = defaults.first().copied().unwrap_or(Scope::Organization);
    Err(not_found(key, owner, &tried, hint))
}

/// The credentials of `holder` among `candidates`, in listing order (newest first).
fn held_by<'a>(
    candidates: &'a [CredentialRecord],
    holder: &'a Holder,
) -> impl Iterator<Item = &'a CredentialRecord> {
    candidates.iter().filter(move |c| &c.holder == holder)
}

/// Whether a run of `owner` may use a credential of `holder`.
fn belongs_to(holder: &Holder, owner: &Owner) -> bool {
    holder.org == owner.org
        && match holder.scope {
            Scope::Organization => true,
            Scope::Project => holder.project.as_ref() == Some(&owner.project),
            Scope::User => holder.user.is_some() && holder.user == owner.user,
        }
}

/// Opens the credential's sealed fields and checks them against the type's declaration.
pub(crate) fn open(
    keyring: &Keyring,
    need: &NeededCredential,
    record: CredentialRecord,
) -> Result<ResolvedCredential, ActionError> {
    let unavailable =
        |message: String| ActionError::fatal(message).with_kind(ErrorKind::CredentialUnavailable);
    let key = keyring
        .key()
        .map_err(|err: VaultError| unavailable(err.to_string()))?;
    let plain = key
        .open(&record.id, &record.sealed)
        .map_err(|err| unavailable(err.to_string()))?;
    let fields: BTreeMap<_, _> = fields_from_bytes(&plain).ok_or_else(|| {
        unavailable(format!(
            "credential {} does not hold fields Cairn can read; set it again",
            record.id
        ))
    })?;
    need.credential.check(&fields).map_err(|err| {
        unavailable(format!(
            "credential {} ({} scope) no longer fits its type: {err}",
            record.id, record.holder.scope
        ))
    })?;
    Ok(ResolvedCredential {
        key: record.key,
        id: record.id,
        scope: record.holder.scope,
        fields,
    })
}

fn missing(message: String) -> ActionError {
    ActionError::fatal(message).with_kind(ErrorKind::MissingCredentials)
}

/// `MissingCredentials` for `key`: what was tried and the command that fixes it.
fn not_found(key: &str, owner: &Owner, tried: &[String], hint: Scope) -> ActionError {
    let mut command = format!(
        "cairn credentials set {key} --scope {hint} --org {}",
        owner.org
    );
    match hint {
        Scope::Project => command.push_str(&format!(" --project {}", owner.project)),
        Scope::User => {
            if let Some(user) = &owner.user {
                command.push_str(&format!(" --user {user}"));
            }
        }
        Scope::Organization => {}
    }
    missing(format!(
        "missing credentials: no {key:?} credential resolves for this run ({}); tried {}. Set \
         one (`{command} --field NAME=@env:VAR`), then retry the run (`cairn runs retry <run>`)",
        describe(owner),
        if tried.is_empty() {
            "nothing".to_owned()
        } else {
            tried.join(", then ")
        },
    ))
}

/// `organization "acme", project "web", user "ada"`.
fn describe(owner: &Owner) -> String {
    let mut text = format!("organization {:?}, project {:?}", owner.org, owner.project);
    if let Some(user) = &owner.user {
        text.push_str(&format!(", user {user:?}"));
    }
    text
}

fn names(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

fn allowed_note(need: &NeededCredential) -> String {
    if need.scopes.len() == Scope::ALL.len() {
        String::new()
    } else {
        format!(
            " (and this action takes {:?} only at the {} scope)",
            need.credential.key(),
            names(&need.scopes)
        )
    }
}

/// A store failure while resolving: retryable, like any transient failure of an attempt.
pub(crate) fn store_failed(err: cairn_store::StoreError) -> ActionError {
    ActionError::retryable(format!("could not read credentials: {err}"))
}
