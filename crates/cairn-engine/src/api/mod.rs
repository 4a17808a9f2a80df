//! Layer 7, the API users call: the [`Engine`](engine::Engine), the worker loop, hooks
//! resumed from outside, and the views every interface shows. Uses every layer below.

pub(crate) mod credentials;
pub(crate) mod engine;
pub(crate) mod follow;
pub(crate) mod oauth;
pub(crate) mod polls;
pub(crate) mod resume;
pub(crate) mod schedules;
pub(crate) mod view;
pub(crate) mod webhooks;
pub(crate) mod worker;
