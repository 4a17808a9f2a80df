//! Query strings and path ids, with malformed ones answered as problems (not axum's plain
//! text rejections).

use std::collections::HashMap;

use axum::{
    extract::{FromRequestParts, Query},
    http::request::Parts,
};
use cairn_store::RunId;

use crate::error::ApiError;

/// A request's query parameters (the last value of a repeated name wins).
pub(crate) struct Params(pub(crate) HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(params)| Params(params))
            .map_err(|rejection| {
                ApiError::BadRequest(format!(
                    "the query string is malformed: {}",
                    rejection.body_text()
                ))
            })
    }
}

impl Params {
    /// A parameter's value, if given and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// A run id from a path; a malformed one names no run (404).
pub(crate) fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::MalformedRunId(text.to_owned()))
}
