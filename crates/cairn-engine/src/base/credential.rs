//! Declaring credential types: a key and typed fields
//! (`Credential::new("slack").field("botToken", Field::secret())`), the scopes a credential
//! can be set at, and the fields of one credential checked against its declaration. Actions
//! name the credentials they need; workflows and agents never do.

use std::collections::BTreeMap;

use cairn_core::ErrorKind;
pub use cairn_core::Scope;

use crate::base::{error::ActionError, oauth::OAuth, vault::Secret};

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
    oauth: Option<OAuth>,
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
            oauth: None,
        }
    }

    /// Connects credentials of this type with OAuth: a person approves at the provider
    /// (`GET /credentials/connect/{key}?user=…`), the tokens are stored as their credential,
    /// and an access token about to expire is refreshed before a step uses it. The type must
    /// declare the token fields `oauth` names (the refresh token's optional).
    pub fn oauth(mut self, oauth: OAuth) -> Credential {
        self.oauth = Some(oauth);
        self
    }

    /// How credentials of this type are connected with OAuth, if they are.
    pub fn oauth_settings(&self) -> Option<&OAuth> {
        self.oauth.as_ref()
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

/// A credential an action needs, and the scopes it may resolve at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NeededCredential {
    pub(crate) credential: Credential,
    /// Narrowest first, never empty.
    pub(crate) scopes: Vec<Scope>,
    /// The action runs without it when none resolves.
    pub(crate) optional: bool,
}

/// A credential resolved for one attempt of a step: which one (id, scope) and its fields.
/// `Debug` shows the fields' names only (values are [`Secret`]s).
#[derive(Clone, Debug)]
pub struct ResolvedCredential {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) scope: Scope,
    pub(crate) fields: BTreeMap<String, Secret>,
}

impl ResolvedCredential {
    /// The credential type (`slack`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The credential's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scope it resolved at.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// A field, if it is set.
    pub fn get(&self, field: &str) -> Option<&Secret> {
        self.fields.get(field)
    }

    /// A field that must be set: its absence is a fatal error naming the field and how to set
    /// it (an optional field the action cannot do without).
    pub fn field(&self, field: &str) -> Result<&Secret, ActionError> {
        self.fields.get(field).ok_or_else(|| {
            ActionError::fatal(format!(
                "credential {:?} ({} scope, id {}) has no field {field:?}; set it again with \
                 `credentials set {} --field {field}=@env:VAR`",
                self.key, self.scope, self.id, self.key
            ))
            .with_kind(ErrorKind::CredentialUnavailable)
        })
    }
}

/// A credential's fields as sealed: a JSON object of field name to value.
pub(crate) fn fields_to_bytes(fields: &BTreeMap<String, Secret>) -> Vec<u8> {
    let plain: BTreeMap<&str, &str> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.expose()))
        .collect();
    serde_json::to_vec(&plain).expect("a map of strings is JSON")
}

/// The fields sealed by [`fields_to_bytes`]; `None` if the bytes are not such an object.
pub(crate) fn fields_from_bytes(bytes: &[u8]) -> Option<BTreeMap<String, Secret>> {
    let plain: BTreeMap<String, String> = serde_json::from_slice(bytes).ok()?;
    Some(
        plain
            .into_iter()
            .map(|(name, value)| (name, Secret::new(value)))
            .collect(),
    )
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
    fn sealed_fields_round_trip_and_resolved_ones_do_not_show() {
        let fields = values(&[("botToken", "xoxb-secret"), ("team", "T1")]);
        let back = fields_from_bytes(&fields_to_bytes(&fields)).unwrap();
        assert_eq!(back, fields);
        assert_eq!(fields_from_bytes(b"[1]"), None);
        let resolved = ResolvedCredential {
            key: "slack".into(),
            id: "cred_1".into(),
            scope: Scope::User,
            fields,
        };
        assert_eq!(resolved.field("botToken").unwrap().expose(), "xoxb-secret");
        let shown = format!("{resolved:?}");
        assert!(
            !shown.contains("xoxb-secret") && shown.contains("botToken"),
            "{shown}"
        );
        let missing = resolved.field("password").unwrap_err();
        assert!(missing.message().contains("password"), "{missing:?}");
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
