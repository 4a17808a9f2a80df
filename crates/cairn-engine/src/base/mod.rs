//! Layer 1, the foundation: errors, schemas, time, randomness, configuration, and the
//! descriptions of workflows and actions. Uses nothing else of the crate.

pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod crash_points;
pub(crate) mod credential;
pub(crate) mod entropy;
pub(crate) mod error;
pub(crate) mod info;
pub(crate) mod oauth;
pub(crate) mod oauth_http;
pub(crate) mod panics;
pub(crate) mod resources;
pub(crate) mod schema;
pub(crate) mod trigger;
pub(crate) mod vault;
