//! OAuth for credential types a person connects (their Slack or GitHub account): the
//! declaration ([`OAuth`], attached with [`Credential::oauth`](crate::Credential::oauth)), the
//! application's client id and secret and the provider's endpoints as used (the declaration,
//! filled and overridden from `CAIRN_OAUTH_<KEY>_*` in this one place), the tokens a token
//! endpoint hands out and how they land in a credential's fields, and [`OAuthError`].

use std::{collections::BTreeMap, time::Duration};

use crate::base::{credential::Credential, vault::Secret};

/// The prefix of the environment variables that configure a credential type's OAuth:
/// `CAIRN_OAUTH_<KEY>_CLIENT_ID`, `_CLIENT_SECRET`, `_AUTHORIZE_URL`, `_TOKEN_URL`.
pub const OAUTH_ENV_PREFIX: &str = "CAIRN_OAUTH_";

/// How a credential type's tokens are obtained from its provider: the authorization code
/// grant with PKCE (S256), then refresh tokens.
///
/// ```
/// use cairn_engine::{Credential, Field, OAuth};
///
/// let slack = Credential::new("slack")
///     .field("botToken", Field::secret())
///     .field("refreshToken", Field::secret().optional())
///     .oauth(
///         OAuth::new("https://slack.com/oauth/v2/authorize", "https://slack.com/api/oauth.v2.access")
///             .scopes(["chat:write"])
///             .access_token_field("botToken"),
///     );
/// assert!(slack.oauth_settings().is_some());
/// ```
///
/// The application's client id and secret are the provider's app registration: given here
/// ([`client_id`](OAuth::client_id), [`client_secret`](OAuth::client_secret)) or, when not,
/// read from `CAIRN_OAUTH_<KEY>_CLIENT_ID` and `CAIRN_OAUTH_<KEY>_CLIENT_SECRET` when used
/// (`<KEY>` is the credential's key upper-cased, `-` and other signs as `_`). The endpoints
/// given here are overridden by `CAIRN_OAUTH_<KEY>_AUTHORIZE_URL` and `_TOKEN_URL` when those
/// are set (a provider's self-hosted edition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth {
    authorize_url: String,
    token_url: String,
    scopes: Vec<String>,
    access_token_field: String,
    refresh_token_field: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
}

impl OAuth {
    /// The provider's authorization endpoint (where a person is sent to approve) and token
    /// endpoint (where codes and refresh tokens are exchanged).
    pub fn new(authorize_url: impl Into<String>, token_url: impl Into<String>) -> OAuth {
        OAuth {
            authorize_url: authorize_url.into(),
            token_url: token_url.into(),
            scopes: Vec::new(),
            access_token_field: "accessToken".to_owned(),
            refresh_token_field: "refreshToken".to_owned(),
            client_id: None,
            client_secret: None,
        }
    }

    /// The scopes asked for (e.g. `["chat:write"]`).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> OAuth {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The credential field the access token is stored in (default `accessToken`).
    pub fn access_token_field(mut self, field: impl Into<String>) -> OAuth {
        self.access_token_field = field.into();
        self
    }

    /// The credential field the refresh token is stored in (default `refreshToken`).
    pub fn refresh_token_field(mut self, field: impl Into<String>) -> OAuth {
        self.refresh_token_field = field.into();
        self
    }

    /// The application's client id, instead of `CAIRN_OAUTH_<KEY>_CLIENT_ID`.
    pub fn client_id(mut self, client_id: impl Into<String>) -> OAuth {
        self.client_id = Some(client_id.into());
        self
    }

    /// The application's client secret, instead of `CAIRN_OAUTH_<KEY>_CLIENT_SECRET`.
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> OAuth {
        self.client_secret = Some(Secret::new(client_secret));
        self
    }

    /// The scopes asked for.
    pub fn scope_names(&self) -> &[String] {
        &self.scopes
    }

    /// The field holding the access token.
    pub fn access_field(&self) -> &str {
        &self.access_token_field
    }

    /// The field holding the refresh token.
    pub fn refresh_field(&self) -> &str {
        &self.refresh_token_field
    }

    /// What is wrong with this declaration for the credential type `credential`, if anything:
    /// the type must declare the access token's field, and the refresh token's as optional
    /// (providers may not hand one out); every other field must be optional, as connecting
    /// fills only the tokens.
    pub(crate) fn problem(&self, credential: &Credential) -> Option<String> {
        let key = credential.key();
        let fields = credential.fields();
        let declare = |field: &str, how: &str| {
            format!(
                "credential type {key:?} is connected with OAuth, so it must declare the field \
                 {field:?} ({how})"
            )
        };
        if !fields.contains_key(&self.access_token_field) {
            return Some(declare(
                &self.access_token_field,
                "the access token: .field(.., Field::secret())",
            ));
        }
        match fields.get(&self.refresh_token_field) {
            Some(field) if !field.is_required() => {}
            _ => {
                return Some(declare(
                    &self.refresh_token_field,
                    "the refresh token: .field(.., Field::secret().optional())",
                ));
            }
        }
        let tokens = [&self.access_token_field, &self.refresh_token_field];
        fields
            .iter()
            .find(|(name, field)| field.is_required() && !tokens.contains(name))
            .map(|(name, _)| {
                format!(
                    "credential type {key:?} is connected with OAuth, which fills only its \
                     tokens, so its field {name:?} must be optional"
                )
            })
    }

    /// The client and endpoints to use for credential `key`: this declaration, its missing
    /// client id and secret filled and its endpoints overridden by `env` (the process
    /// environment, or a test's map).
    pub(crate) fn client(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OAuthClient, OAuthError> {
        let var = |suffix: &str| env_var(key, suffix);
        let read = |suffix: &str| env(&var(suffix)).filter(|value| !value.trim().is_empty());
        let client_id = self
            .client_id
            .clone()
            .or_else(|| read("CLIENT_ID"))
            .ok_or_else(|| OAuthError::MissingClientId {
                key: key.to_owned(),
                variable: var("CLIENT_ID"),
            })?;
        Ok(OAuthClient {
            key: key.to_owned(),
            client_id,
            client_secret: self
                .client_secret
                .clone()
                .or_else(|| read("CLIENT_SECRET").map(Secret::new)),
            authorize_url: read("AUTHORIZE_URL").unwrap_or_else(|| self.authorize_url.clone()),
            token_url: read("TOKEN_URL").unwrap_or_else(|| self.token_url.clone()),
        })
    }

    /// Stores `tokens` in `fields` (a refresh token not handed out again keeps the one
    /// stored); returns the access token's expiry (unix ms), if the provider gave one.
    pub(crate) fn store_tokens(
        &self,
        fields: &mut BTreeMap<String, Secret>,
        tokens: Tokens,
        now_ms: i64,
    ) -> Option<i64> {
        fields.insert(self.access_token_field.clone(), tokens.access);
        if let Some(refresh) = tokens.refresh {
            fields.insert(self.refresh_token_field.clone(), refresh);
        }
        tokens.expires_in.map(|lifetime| {
            let lifetime = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 4);
            now_ms.saturating_add(lifetime)
        })
    }
}

/// `CAIRN_OAUTH_<KEY>_<SUFFIX>`, the key upper-cased and every sign but letters and digits
/// written `_`.
pub(crate) fn env_var(key: &str, suffix: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{OAUTH_ENV_PREFIX}{key}_{suffix}")
}

/// The process environment, as [`OAuth::client`] reads it.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A credential type's OAuth client as used: the declaration with the environment applied.
#[derive(Clone, Debug)]
pub(crate) struct OAuthClient {
    pub(crate) key: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) authorize_url: String,
    pub(crate) token_url: String,
}

/// What a token endpoint handed out.
#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    pub(crate) access: Secret,
    pub(crate) refresh: Option<Secret>,
    pub(crate) expires_in: Option<Duration>,
}

/// Why connecting a credential with OAuth, or refreshing its token, failed. Messages never
/// hold a token, a code or a client secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The credential type has no OAuth declaration.
    #[error(
        "credential type {key:?} is not connected with OAuth (its declaration has no \
         .oauth(OAuth::new(..))); set its fields with `credentials set {key}` instead"
    )]
    NotOAuth {
        /// The credential type.
        key: String,
    },
    /// No client id is given in the declaration or the environment.
    #[error(
        "OAuth for credential type {key:?} needs the client id of the application registered \
         with the provider: set {variable} (and the secret in the variable ending \
         _CLIENT_SECRET)"
    )]
    MissingClientId {
        /// The credential type.
        key: String,
        /// The environment variable to set.
        variable: String,
    },
    /// An endpoint or the redirect URI is not a URL.
    #[error("the OAuth {what} of credential type {key:?} is not a usable URL ({url:?}): {why}")]
    BadUrl {
        /// The credential type.
        key: String,
        /// Which URL (`authorize URL`, `token URL`, `redirect URI`).
        what: String,
        /// The URL given.
        url: String,
        /// Why it is not usable.
        why: String,
    },
    /// The `state` handed back is not one this server made with its master key, or is for
    /// another credential type.
    #[error(
        "the OAuth state handed back for credential type {key:?} is not valid ({why}); start \
         again from /credentials/connect/{key}"
    )]
    BadState {
        /// The credential type of the callback.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The `state` was made too long ago.
    #[error(
        "the OAuth connection of credential type {key:?} took longer than {} minutes; start \
         again from /credentials/connect/{key}",
        STATE_MINUTES
    )]
    StateExpired {
        /// The credential type.
        key: String,
    },
    /// The provider refused (the person declined, or the code or refresh token is not valid).
    #[error(
        "the OAuth provider of credential type {key:?} refused: {error}{}",
        description.as_deref().map(|text| format!(" ({text})")).unwrap_or_default()
    )]
    Refused {
        /// The credential type.
        key: String,
        /// The provider's error code (`access_denied`, `invalid_grant`).
        error: String,
        /// The provider's description, if it gave one.
        description: Option<String>,
    },
    /// The provider's token endpoint could not be reached, or answered with a server error.
    #[error(
        "the OAuth token endpoint of credential type {key:?} could not be reached: {why}; try \
         again later"
    )]
    Unreachable {
        /// The credential type.
        key: String,
        /// What happened.
        why: String,
    },
    /// The token endpoint answered something that is not a token response.
    #[error(
        "the OAuth token endpoint of credential type {key:?} answered something that is not a \
         token response: {why}"
    )]
    BadResponse {
        /// The credential type.
        key: String,
        /// What is wrong with it (never the body, which may hold a token).
        why: String,
    },
}

/// How long a person has between the connect redirect and the callback.
pub(crate) const STATE_MINUTES: i64 = 10;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::base::credential::Field;

    fn declared(oauth: OAuth) -> Credential {
        Credential::new("git-hub")
            .field("accessToken", Field::secret())
            .field("refreshToken", Field::secret().optional())
            .oauth(oauth)
    }

    #[test]
    fn the_environment_fills_the_client_and_overrides_the_endpoints() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("CAIRN_OAUTH_GIT_HUB_CLIENT_ID", "from-env"),
            ("CAIRN_OAUTH_GIT_HUB_CLIENT_SECRET", "env-secret"),
            ("CAIRN_OAUTH_GIT_HUB_TOKEN_URL", "https://ghe.local/token"),
        ]);
        let lookup = |name: &str| env.get(name).map(|value| (*value).to_owned());
        let oauth = OAuth::new("https://gh/authorize", "https://gh/token");
        let client = oauth.client("git-hub", &lookup).expect("a client");
        assert_eq!(client.client_id, "from-env");
        assert_eq!(client.client_secret.unwrap().expose(), "env-secret");
        assert_eq!(client.authorize_url, "https://gh/authorize");
        assert_eq!(client.token_url, "https://ghe.local/token");
        let explicit = oauth.clone().client_id("mine").client_secret("s");
        let client = explicit.client("git-hub", &lookup).expect("a client");
        assert_eq!(client.client_id, "mine");
        assert_eq!(client.client_secret.unwrap().expose(), "s");

        let missing = oauth.client("git-hub", &|_| None).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("set CAIRN_OAUTH_GIT_HUB_CLIENT_ID"),
            "{missing}"
        );
        let shown = format!("{:?}", explicit.client("git-hub", &|_| None).unwrap());
        assert!(!shown.contains("\"s\""), "{shown}");
    }

    #[test]
    fn a_declaration_must_have_its_token_fields() {
        let oauth = OAuth::new("https://a", "https://t");
        assert_eq!(oauth.problem(&declared(oauth.clone())), None);
        let no_access = Credential::new("x").field("refreshToken", Field::secret().optional());
        assert!(
            oauth
                .problem(&no_access)
                .unwrap()
                .contains("\"accessToken\"")
        );
        let required_refresh = Credential::new("x")
            .field("accessToken", Field::secret())
            .field("refreshToken", Field::secret());
        assert!(
            oauth
                .problem(&required_refresh)
                .unwrap()
                .contains("optional()")
        );
        let other = declared(oauth.clone()).field("team", Field::text());
        assert!(oauth.problem(&other).unwrap().contains("\"team\""));
    }

    #[test]
    fn tokens_land_in_their_fields_and_a_missing_refresh_token_keeps_the_old_one() {
        let oauth = OAuth::new("https://a", "https://t").access_token_field("botToken");
        let mut fields = BTreeMap::from([("refreshToken".to_owned(), Secret::new("r1"))]);
        let tokens = Tokens {
            access: Secret::new("a2"),
            refresh: None,
            expires_in: Some(Duration::from_secs(60)),
        };
        assert_eq!(oauth.store_tokens(&mut fields, tokens, 1_000), Some(61_000));
        assert_eq!(fields["botToken"].expose(), "a2");
        assert_eq!(fields["refreshToken"].expose(), "r1");
    }
}
