//! Connecting a person's credential with OAuth (authorization code with PKCE): the URL that
//! sends them to the provider, and the callback that exchanges the code and stores the
//! tokens as their user-scoped credential. Refreshing happens where credentials are resolved
//! (`call::refresh`).
//!
//! The `state` is stateless: the master key's seal (associated data `oauth-state`, so no
//! credential's sealed bytes pass for one) of the credential type, the organization, the
//! user, the PKCE verifier and an expiry ten minutes on, in base64url. Nothing is stored
//! between the redirect and the callback, any server of a deployment can take the callback,
//! and a forged or altered state does not open. A state may be presented again within its
//! ten minutes, but the provider's code it comes with is good once.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cairn_core::{Holder, Scope};
use cairn_store::CredentialFilter;
use oauth2::url::Url;
use serde::{Deserialize, Serialize};

use crate::{
    api::{
        credentials::{CredentialView, SetCredential, check_holder},
        engine::Engine,
    },
    base::{
        credential::Credential,
        error::EngineError,
        oauth::{OAuth, OAuthError, STATE_MINUTES, process_env},
        oauth_http::authorize_url,
    },
};

/// The associated data states are sealed with.
const STATE_AAD: &str = "oauth-state";

/// What a `state` carries from the redirect to the callback.
#[derive(Serialize, Deserialize)]
struct State {
    key: String,
    org: String,
    user: String,
    verifier: String,
    expires_at_ms: i64,
}

impl Engine {
    /// The redirect URI of credential type `key`: `{public_url}/credentials/callback/{key}`,
    /// as registered with the provider.
    pub fn oauth_redirect_uri(&self, key: &str) -> String {
        let base = self.config().public_url.trim_end_matches('/');
        format!("{base}/credentials/callback/{key}")
    }

    /// Where to send `user` of `org` to connect their credential of type `key`: the
    /// provider's authorize URL with the client id, the scopes, `redirect_uri`, an S256 PKCE
    /// challenge and a sealed `state` good for ten minutes.
    pub fn oauth_authorize_url(
        &self,
        key: &str,
        org: &str,
        user: &str,
        redirect_uri: &str,
    ) -> Result<Url, EngineError> {
        let (_, oauth) = self.oauth_type(key)?;
        check_holder(&user_holder(org, user))?;
        let client = oauth.client(key, &process_env)?;
        let master = self.runtime.env.keyring.key()?;
        let expires_at_ms = self.runtime.env.clock.now_ms() + STATE_MINUTES * 60_000;
        let url = authorize_url(&client, oauth, redirect_uri, |verifier| {
            let state = State {
                key: key.to_owned(),
                org: org.to_owned(),
                user: user.to_owned(),
                verifier: verifier.to_owned(),
                expires_at_ms,
            };
            let plain = serde_json::to_vec(&state).expect("a state is JSON");
            URL_SAFE_NO_PAD.encode(master.seal(STATE_AAD, &plain))
        })?;
        Ok(url)
    }

    /// The provider sent the person back with `code` and `state`: exchanges the code (with
    /// the verifier the state holds) and stores the tokens as the user's credential of type
    /// `key`, replacing theirs (same id) if they have one, else as a new one, their default.
    /// `redirect_uri` must be the one the authorize URL had.
    pub async fn oauth_callback(
        &self,
        key: &str,
        code: &str,
        state: &str,
        redirect_uri: &str,
    ) -> Result<CredentialView, EngineError> {
        let (_, oauth) = self.oauth_type(key)?;
        let state = self.open_state(key, state)?;
        let client = oauth.client(key, &process_env)?;
        let env = &self.runtime.env;
        let tokens = env
            .oauth
            .exchange_code(&client, code, &state.verifier, redirect_uri)
            .await?;
        let holder = user_holder(&state.org, &state.user);
        let filter = CredentialFilter {
            key: Some(key.to_owned()),
            org: Some(state.org.clone()),
            scope: Some(Scope::User),
            user: Some(state.user.clone()),
            ..CredentialFilter::default()
        };
        let theirs = self.store().list_credentials(&filter).await?;
        // Their default, else their newest (listings are newest first).
        let existing = theirs
            .iter()
            .find(|credential| credential.is_default)
            .or(theirs.first());
        let mut fields = BTreeMap::new();
        let expires_at_ms = oauth.store_tokens(&mut fields, tokens, env.clock.now_ms());
        self.set_credential(SetCredential {
            key: key.to_owned(),
            holder,
            fields,
            is_default: existing.is_none_or(|credential| credential.is_default),
            id: existing.map(|credential| credential.id.clone()),
            expires_at_ms,
        })
        .await
    }

    /// The registered credential type `key` and its OAuth declaration.
    fn oauth_type(&self, key: &str) -> Result<(&Credential, &OAuth), EngineError> {
        let registry = &self.runtime.registry;
        let Some(declared) = registry.credentials().find(|c| c.key() == key) else {
            let known: Vec<&str> = registry.credentials().map(|c| c.key()).collect();
            return Err(EngineError::UnknownCredentialType {
                key: key.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        };
        let oauth = declared
            .oauth_settings()
            .ok_or_else(|| OAuthError::NotOAuth {
                key: key.to_owned(),
            })?;
        Ok((declared, oauth))
    }

    /// The state handed back for `key`, if this engine's master key made it, for `key`, and
    /// it has not expired.
    fn open_state(&self, key: &str, state: &str) -> Result<State, EngineError> {
        let bad = |why: &str| OAuthError::BadState {
            key: key.to_owned(),
            why: why.to_owned(),
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(state.trim())
            .map_err(|_| bad("it is not base64url"))?;
        let master = self.runtime.env.keyring.key()?;
        let plain = master
            .open(STATE_AAD, &sealed)
            .map_err(|_| bad("it was not made by this server's master key, or was altered"))?;
        let state: State =
            serde_json::from_slice(&plain).map_err(|_| bad("it does not hold a connection"))?;
        if state.key != key {
            return Err(bad(&format!("it was made for credential type {:?}", state.key)).into());
        }
        if state.expires_at_ms <= self.runtime.env.clock.now_ms() {
            return Err(OAuthError::StateExpired {
                key: key.to_owned(),
            }
            .into());
        }
        Ok(state)
    }
}

/// The holder of `user`'s credentials in `org`.
fn user_holder(org: &str, user: &str) -> Holder {
    Holder {
        scope: Scope::User,
        org: org.to_owned(),
        project: None,
        user: Some(user.to_owned()),
    }
}
