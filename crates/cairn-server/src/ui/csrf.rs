//! The UI's CSRF defence: a random cookie of its own (`cairn_csrf`, HttpOnly, SameSite=Strict,
//! scoped to `/ui`), repeated in every form; a post whose form does not repeat it is refused
//! (403) and changes nothing.

use axum::{
    Form,
    extract::{FromRequest, Request},
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

/// A posted form whose CSRF token repeats the cookie's: its pairs, in order. Extracting it
/// refuses (403) a form without the token, before the handler reads or writes anything.
pub(crate) struct CheckedForm {
    pub(crate) pairs: Vec<(String, String)>,
}

impl CheckedForm {
    /// The first value posted under `name`, if not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(given, value)| given == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// The checked token (for a form shown again).
    pub(crate) fn token(&self) -> String {
        self.get("csrf").unwrap_or_default().to_owned()
    }
}

impl<S: Send + Sync> FromRequest<S> for CheckedForm {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, UiError> {
        let headers = request.headers().clone();
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|rejection| {
                UiError::new(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    rejection.body_text(),
                )
            })?;
        let form = CheckedForm { pairs };
        check_csrf(&headers, form.get("csrf"))?;
        Ok(form)
    }
}

/// Refuses a post whose form's `sent` token does not repeat the CSRF cookie.
fn check_csrf(headers: &HeaderMap, sent: Option<&str>) -> Result<(), UiError> {
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
