//! Declaring credential types: a key and typed fields
//! (`Credential::new("slack").field("botToken", Field::secret())`), the scopes a credential
//! can be set at, and the fields of one credential checked against its declaration. Actions
//! name the credentials they need; workflows and agents never do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cairn_core::Scope;

use crate::base::vault::Secret;

/// One field of a credential type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    secret: bool,
    required: bool,
    description: String,
}

impl Field {
    /// A secret (a token, a password): sealed at rest, never shown.
    pub fn secret() -> Field {
        Field {
            secret: true,
            required: true,
            description: String::new(),
        }
    }

    /// A plain setting (a host name, a port): still sealed at rest with the rest of the
    /// credential, but listings may show it.
    pub fn text() -> Field {
        Field {
            secret: false,
            ..Field::secret()
        }
    }

    /// The field may be left out.
    pub fn optional(mut self) -> Field {
        self.required = false;
        self
    }

    /// What the field holds, for people setting it.
    pub fn description(mut self, description: impl Into<String>) -> Field {
        self.description = description.into();
        self
    }

    /// Whether it is a secret.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// Whether it must be given.
    pub fn is_required(&self) -> bool {
        self.required
    }
}

/// A credential type: its key (`slack`) and fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    key: String,
    description: String,
    fields: BTreeMap<String, Field>,
}

/// Why the fields given for a credential do not match its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A required field is missing.
    #[error("credential {key:?} needs the field {field:?}; set it with --field {field}=@env:VAR")]
    MissingField {
        /// The credential type.
        key: String,
        /// The missing field.
        field: String,
    },
    /// A field the type does not declare.
    #[error("credential {key:?} has no field {field:?}; its fields are {known}")]
    UnknownField {
        /// The credential type.
        key: String,
        /// The field given.
        field: String,
        /// The declared fields, comma-separated.
        known: String,
    },
}

impl Credential {
    /// A credential type named `key` (lower-case, as `slack` or `github`).
    pub fn new(key: impl Into<String>) -> Credential {
        Credential {
            key: key.into(),
            description: String::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Declares a field.
    pub fn field(mut self, name: impl Into<String>, field: Field) -> Credential {
        self.fields.insert(name.into(), field);
        self
    }

    /// What it is for, for people setting it.
    pub fn description(mut self, description: impl Into<String>) -> Credential {
        self.description = description.into();
        self
    }

    /// Its key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Its fields by name.
    pub fn fields(&self) -> &BTreeMap<String, Field> {
        &self.fields
    }

    /// Checks `values` against the declared fields: every required one given, none unknown.
    pub fn check(&self, values: &BTreeMap<String, Secret>) -> Result<(), CredentialError> {
        if let Some(field) = values.keys().find(|name| !self.fields.contains_key(*name)) {
            return Err(CredentialError::UnknownField {
                key: self.key.clone(),
                field: field.clone(),
                known: self.fields.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        match self
            .fields
            .iter()
            .find(|(name, field)| field.required && !values.contains_key(*name))
        {
            Some((name, _)) => Err(CredentialError::MissingField {
                key: self.key.clone(),
                field: name.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> Credential {
        Credential::new("slack")
            .description("A Slack bot")
            .field("botToken", Field::secret().description("xoxb-…"))
            .field("team", Field::text().optional())
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Secret::new(*value)))
            .collect()
    }

    #[test]
    fn fields_are_checked_against_the_declaration() {
        let slack = slack();
        assert_eq!(slack.check(&values(&[("botToken", "x")])), Ok(()));
        assert_eq!(
            slack.check(&values(&[("botToken", "x"), ("team", "t")])),
            Ok(())
        );
        let missing = slack.check(&values(&[("team", "t")])).unwrap_err();
        assert_eq!(
            missing,
            CredentialError::MissingField {
                key: "slack".into(),
                field: "botToken".into()
            }
        );
        let unknown = slack
            .check(&values(&[("botToken", "x"), ("token", "y")]))
            .unwrap_err();
        assert!(unknown.to_string().contains("botToken, team"), "{unknown}");
        assert!(slack.fields()["botToken"].is_secret());
        assert!(!slack.fields()["team"].is_secret() && !slack.fields()["team"].is_required());
    }
}
