//! `credentials …` with `--server`: the same commands over the server's `/credentials` API
//! (values read here, from the environment, a file or stdin, and sent in the body; answers
//! never hold them). `rotate-key` stays where the master key is: the server's machine.

use std::process::ExitCode;

use cairn_engine::CredentialView;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::Client;
use crate::cli::{
    CliError,
    args::CredentialsCommand,
    credentials::{print_default, print_deleted, print_list, print_saved, to_set},
};

/// `GET /credentials`.
#[derive(Deserialize)]
struct Listed {
    credentials: Vec<CredentialView>,
}

/// Runs a `credentials` command against the server.
pub(crate) async fn dispatch(
    client: &Client,
    command: CredentialsCommand,
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
            let values: Map<String, Value> = set
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), Value::from(value.expose())))
                .collect();
            let holder = &set.holder;
            let mut body = json!({
                "key": set.key,
                "scope": holder.scope,
                "org": holder.org,
                "fields": values,
                "isDefault": set.is_default,
            });
            for (name, value) in [
                ("project", &holder.project),
                ("user", &holder.user),
                ("replace", &set.id),
            ] {
                if let Some(value) = value {
                    body[name] = Value::from(value.as_str());
                }
            }
            let saved: CredentialView = client.post(&["credentials"], Some(&body), &[]).await?;
            print_saved(&saved, json);
        }
        CredentialsCommand::List { key, org, json } => {
            let query: Vec<(&str, String)> = [("key", key), ("org", org)]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?)))
                .collect();
            let listed: Listed = client.get(&["credentials"], &query).await?;
            print_list(&listed.credentials, json);
        }
        CredentialsCommand::Delete { id } => {
            client.delete(&["credentials", &id]).await?;
            print_deleted(&id);
        }
        CredentialsCommand::SetDefault { id } => {
            let credential: CredentialView = client
                .post(&["credentials", &id, "default"], None, &[])
                .await?;
            print_default(&credential);
        }
        CredentialsCommand::RotateKey => {
            return Err(CliError::Usage(
                "`credentials rotate-key` runs where the master key is: on the server's \
                 machine, without --server and CAIRN_SERVER"
                    .into(),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
