//! Layer 4, the steps a workflow makes: actions, child workflows, recorded values, sleeps,
//! hooks, and actions as tools (untyped), each made through the one call path of layer 3;
//! and the declarations of the triggers that start workflows (webhook and poll sources).
//! Uses layers 1 to 3.

pub(crate) mod action;
pub(crate) mod child;
pub(crate) mod hook;
pub(crate) mod patch;
pub(crate) mod poll;
pub(crate) mod poll_ctx;
pub(crate) mod recorded;
pub(crate) mod sleep;
pub(crate) mod tool;
pub(crate) mod webhook;
pub(crate) mod workflow;
