//! API keys: every route but hooks, `/healthz` and `/readyz` needs `Authorization: Bearer
//! <key>` when keys are configured. Several keys may be valid at once (rotation); each is
//! compared in constant time, and every key is compared, so timing tells nothing of which
//! key, or how much of one, matched.

use std::{fmt, path::Path};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;

use crate::{ServerError, error::ApiError, state::AppState};

/// The API keys a server accepts. Empty: every route is open.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Vec<u8>>,
}

impl ApiKeys {
    /// Keys from a comma-separated list (`CAIRN_API_KEYS`); blanks around keys are ignored.
    pub fn from_list(list: &str) -> ApiKeys {
        ApiKeys {
            keys: list
                .split(',')
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(|key| key.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Keys from a file, one per line; blank lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<ApiKeys, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|err| ServerError::KeyFile {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        let keys: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|key| key.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err(ServerError::KeyFile {
                path: path.to_owned(),
                message: "it holds no key (one key per line; # starts a comment)".to_owned(),
            });
        }
        Ok(ApiKeys { keys })
    }

    /// These keys and `other`'s.
    pub fn merge(mut self, other: ApiKeys) -> ApiKeys {
        self.keys.extend(other.keys);
        self
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `candidate` is one of the keys, in time independent of where it differs.
    pub(crate) fn accepts(&self, candidate: &[u8]) -> bool {
        let mut found = subtle::Choice::from(0);
        for key in &self.keys {
            found |= key.as_slice().ct_eq(candidate);
        }
        found.into()
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

/// Refuses a request without one of the keys (when keys are configured).
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.keys.is_empty() {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    // The web UI's sign-in cookie counts too: its pages read the API (the event streams)
    // from the browser, which cannot set the header. SameSite=Strict keeps other sites out.
    let signed_in = signed_in_key(request.headers()).is_some_and(|key| state.keys.accepts(&key));
    if !signed_in && (presented.is_empty() || !state.keys.accepts(presented)) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// The cookie holding the key the web UI was signed in with (hex).
pub(crate) const KEY_COOKIE: &str = "cairn_key";

/// The value of cookie `name` in `headers`, if sent.
pub(crate) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The API key the sign-in cookie holds, decoded.
pub(crate) fn signed_in_key(headers: &axum::http::HeaderMap) -> Option<Vec<u8>> {
    let hex = cookie(headers, KEY_COOKIE)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

/// `bytes` as lower-case hex (a cookie-safe form of a key).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_listed_key_is_accepted_and_nothing_else() {
        let keys = ApiKeys::from_list(" old-key , new-key,,");
        assert!(keys.accepts(b"old-key"));
        assert!(keys.accepts(b"new-key"));
        assert!(!keys.accepts(b"new-ke"));
        assert!(!keys.accepts(b"new-keyy"));
        assert!(!keys.accepts(b""));
        assert!(ApiKeys::from_list(" , ").is_empty());
    }

    #[test]
    fn key_files_skip_comments_and_refuse_to_be_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# rotated 2026-12\nfirst\n\n  second  \n").expect("write");
        let keys = ApiKeys::from_file(&path).expect("keys");
        assert!(keys.accepts(b"first") && keys.accepts(b"second"));
        std::fs::write(&path, "# nothing\n").expect("write");
        let err = ApiKeys::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("holds no key"), "{err}");
    }
}
