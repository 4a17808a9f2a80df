//! `credentials set|list|delete|set-default|rotate-key`. Values come from the environment, a
//! file or stdin (`NAME=@env:VAR`, `NAME=@file:PATH`, `NAME=@-`), never from the command line
//! itself, where other users could read them in the process list; nothing prints a value.

use std::{collections::BTreeMap, io::Read, path::Path, process::ExitCode};

use cairn_core::{Holder, Scope};
use cairn_engine::{
    CredentialView, Engine, EngineError, MASTER_KEY_VAR, MasterKey, Secret, SetCredential,
};
use cairn_store::CredentialFilter;
use comfy_table::Table;

use super::{
    CliError,
    args::{CredentialsCommand, OwnerArgs},
    commands::print_json,
};

/// The variable `rotate-key` reads the new key from when the key is in `CAIRN_MASTER_KEY`.
const NEW_MASTER_KEY_VAR: &str = "CAIRN_NEW_MASTER_KEY";

/// Runs a `credentials` command.
pub(crate) async fn dispatch(
    engine: &Engine,
    command: CredentialsCommand,
    data_dir: &Path,
) -> Result<ExitCode, CliError> {
    match command {
        CredentialsCommand::Set {
            key,
            fields,
            scope,
            owner,
            default,
            replace,
            json,
        } => {
            let set = to_set(key, &fields, &scope, &owner, default, replace)?;
            print_saved(&engine.set_credential(set).await?, json);
        }
        CredentialsCommand::List { key, org, json } => {
            let filter = CredentialFilter {
                key,
                org,
                ..CredentialFilter::default()
            };
            print_list(&engine.list_credentials(&filter).await?, json);
        }
        CredentialsCommand::Delete { id } => {
            engine.delete_credential(&id).await?;
            print_deleted(&id);
        }
        CredentialsCommand::SetDefault { id } => {
            print_default(&engine.set_default_credential(&id).await?);
        }
        CredentialsCommand::RotateKey => rotate(engine, data_dir).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The credential `credentials set` asks for, its values read (before anything is opened).
pub(crate) fn to_set(
    key: String,
    fields: &[String],
    scope: &str,
    owner: &OwnerArgs,
    is_default: bool,
    replace: Option<String>,
) -> Result<SetCredential, CliError> {
    Ok(SetCredential {
        holder: holder(scope, owner)?,
        fields: read_fields(fields)?,
        key,
        is_default,
        id: replace,
        expires_at_ms: None,
    })
}

/// Prints a saved credential.
pub(crate) fn print_saved(saved: &CredentialView, json: bool) {
    if json {
        print_json(saved);
    } else {
        let default = if saved.is_default {
            ", its default"
        } else {
            ""
        };
        println!(
            "saved {} credential {} for {} ({} scope{default})",
            saved.key, saved.id, saved.holder, saved.holder.scope
        );
    }
}

/// Prints `credentials list`.
pub(crate) fn print_list(listed: &[CredentialView], json: bool) {
    if json {
        print_json(&listed);
    } else if listed.is_empty() {
        println!("no credentials; add one with `credentials set <key> --field NAME=@env:VAR`");
    } else {
        println!("{}", table(listed));
    }
}

/// Prints a deletion.
pub(crate) fn print_deleted(id: &str) {
    println!("deleted credential {id}");
}

/// Prints a new default.
pub(crate) fn print_default(credential: &CredentialView) {
    println!(
        "{} is now the default {} credential of {}",
        credential.id, credential.key, credential.holder
    );
}

/// The holder `--scope` and the owner flags name.
fn holder(scope: &str, owner: &OwnerArgs) -> Result<Holder, CliError> {
    let scope = Scope::parse(scope).ok_or_else(|| {
        CliError::Usage(format!(
            "--scope {scope:?} is not a scope; use org, project or user"
        ))
    })?;
    let user = match (scope, &owner.user) {
        (Scope::User, None) => {
            return Err(CliError::Usage(
                "a user-scoped credential needs --user <name> (or CAIRN_USER)".into(),
            ));
        }
        (Scope::User, Some(user)) => Some(user.clone()),
        _ => None,
    };
    Ok(Holder {
        scope,
        org: owner.org.clone(),
        project: (scope == Scope::Project).then(|| owner.project.clone()),
        user,
    })
}

/// The `--field NAME=SOURCE` values, read from where each says.
fn read_fields(fields: &[String]) -> Result<BTreeMap<String, Secret>, CliError> {
    if fields.is_empty() {
        return Err(CliError::Usage(
            "give the credential's fields: --field NAME=@env:VAR (or @file:PATH, or @- for stdin)"
                .into(),
        ));
    }
    let mut read = BTreeMap::new();
    let mut stdin_used = false;
    for field in fields {
        let (name, source) = field.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "--field {field:?} is not NAME=SOURCE; e.g. --field botToken=@env:SLACK_TOKEN"
            ))
        })?;
        let value = if let Some(var) = source.strip_prefix("@env:") {
            std::env::var(var).map_err(|_| {
                CliError::Usage(format!(
                    "--field {name}: the environment variable {var} is not set (or not UTF-8)"
                ))
            })?
        } else if let Some(path) = source.strip_prefix("@file:") {
            let text = std::fs::read_to_string(path).map_err(|err| {
                CliError::Usage(format!("--field {name}: cannot read {path}: {err}"))
            })?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        } else if source == "@-" {
            if std::mem::replace(&mut stdin_used, true) {
                return Err(CliError::Usage(
                    "only one --field can be read from stdin (@-)".into(),
                ));
            }
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|err| {
                CliError::Usage(format!("--field {name}: cannot read stdin: {err}"))
            })?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        } else {
            return Err(CliError::Usage(format!(
                "--field {name}: values are never given on the command line (other users can \
                 read it); use {name}=@env:VAR, {name}=@file:PATH or {name}=@- (stdin)"
            )));
        };
        if value.is_empty() {
            return Err(CliError::Usage(format!("--field {name} is empty")));
        }
        read.insert(name.to_owned(), Secret::new(value));
    }
    Ok(read)
}

/// `credentials list` as a table: no values, only field names.
fn table(credentials: &[CredentialView]) -> Table {
    let mut table = super::view::table();
    table.set_header([
        "ID", "KEY", "SCOPE", "OWNER", "DEFAULT", "FIELDS", "UPDATED",
    ]);
    for credential in credentials {
        table.add_row([
            credential.id.clone(),
            credential.key.clone(),
            credential.holder.scope.to_string(),
            credential.holder.to_string(),
            if credential.is_default { "yes" } else { "" }.to_owned(),
            credential.fields.join(", "),
            credential.updated_at.clone(),
        ]);
    }
    table
}

/// `credentials rotate-key`: a new key from `CAIRN_NEW_MASTER_KEY` when the key is in the
/// environment; else a fresh key written to `master.key.new` (mode 0600), every credential
/// re-encrypted in one transaction, then the new file renamed over the old.
async fn rotate(engine: &Engine, data_dir: &Path) -> Result<(), CliError> {
    if std::env::var_os(MASTER_KEY_VAR).is_some() {
        let text = std::env::var(NEW_MASTER_KEY_VAR).map_err(|_| {
            CliError::Usage(format!(
                "the master key is in {MASTER_KEY_VAR}: put the new one in {NEW_MASTER_KEY_VAR} \
                 (64 hex digits, e.g. from `openssl rand -hex 32`) and run rotate-key again"
            ))
        })?;
        let new = MasterKey::from_hex(&text, NEW_MASTER_KEY_VAR).map_err(EngineError::from)?;
        let count = engine.rotate_master_key(&new).await?;
        println!(
            "re-encrypted {count} credentials with the key in {NEW_MASTER_KEY_VAR}; set \
             {MASTER_KEY_VAR} to it now (the old key no longer opens them)"
        );
        return Ok(());
    }
    let current = super::master_key_file(data_dir);
    let pending = current.with_extension("key.new");
    if pending.exists() {
        return Err(CliError::Usage(format!(
            "{} exists: an earlier rotate-key stopped midway. If `credentials list` works and \
             runs can read credentials, delete it; otherwise rename it to {} and run \
             rotate-key again",
            pending.display(),
            current.display()
        )));
    }
    let new = MasterKey::from_file(&pending).map_err(EngineError::from)?;
    let count = match engine.rotate_master_key(&new).await {
        Ok(count) => count,
        Err(err) => {
            let _ = std::fs::remove_file(&pending);
            return Err(err.into());
        }
    };
    std::fs::rename(&pending, &current).map_err(|err| {
        CliError::Failed(format!(
            "re-encrypted {count} credentials with the key in {}, but cannot move it to {}: \
             {err}; move it there by hand before the next run",
            pending.display(),
            current.display()
        ))
    })?;
    println!(
        "re-encrypted {count} credentials with a new master key in {}",
        current.display()
    );
    Ok(())
}
