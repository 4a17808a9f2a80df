//! The UI's CSRF defence: a random cookie of its own (`cairn_csrf`, HttpOnly, SameSite=Strict,
//! scoped to `/ui`), repeated in every form; a post whose form does not repeat it is refused
//! (403) and changes nothing.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use subtle::ConstantTimeEq;

use super::UiError;
use crate::auth::{cookie, to_hex};

/// The CSRF cookie (random, repeated in every form).
const CSRF_COOKIE: &str = "cairn_csrf";

/// The token a page's forms carry: the request's cookie, or a new one to set.
pub(crate) struct CsrfToken {
    pub(crate) token: String,
    fresh: bool,
}

impl CsrfToken {
    /// The token of the request with `headers` (a new one if it has none).
    pub(crate) fn of(headers: &HeaderMap) -> CsrfToken {
        match cookie(headers, CSRF_COOKIE) {
            Some(token) if token.len() == 32 => CsrfToken {
                token: token.to_owned(),
                fresh: false,
            },
            _ => CsrfToken {
                token: random_token(),
                fresh: true,
            },
        }
    }

    /// Sets the cookie on `response` when the token is new.
    pub(crate) fn set_on(&self, mut response: Response) -> Response {
        if self.fresh {
            let set = format!(
                "{CSRF_COOKIE}={}; Path=/ui; SameSite=Strict; HttpOnly",
                self.token
            );
            if let Ok(value) = HeaderValue::from_str(&set) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

/// Refuses a post whose form's `sent` token does not repeat the CSRF cookie.
pub(crate) fn check_csrf(headers: &HeaderMap, sent: Option<&str>) -> Result<(), UiError> {
    let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let sent = sent.unwrap_or_default();
    if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "Refused",
            "the form's security token is missing or stale; reload the page and try again",
        ));
    }
    Ok(())
}

/// 32 random hex digits.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    to_hex(&bytes)
}
