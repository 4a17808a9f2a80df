//! Actions without their types: what an agent needs to offer actions of different input and
//! output types to a model as tools, and to call the one the model picked.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::{
    base::{error::ActionError, info::ActionInfo, schema::Payload},
    call::StepCall,
    run::action_ctx::ActionCtx,
    steps::action::Action,
};

/// An action seen without its types: its description (slug, description, input schema) and
/// a call with JSON in and out. Every [`Action`] is one, so a list of different actions is a
/// `Vec<Arc<dyn Tool>>`.
pub trait Tool: Send + Sync {
    /// The action's slug, description and schemas.
    fn info(&self) -> &ActionInfo;

    /// Calls the action as a durable step with JSON input (checked against its schema) and
    /// returns its output as JSON (see [`Action::run_json`]).
    fn run_json(&self, input: Value) -> StepCall<Value>;

    /// Runs the action inside the calling action's attempt (`ctx`): no step of its own, the
    /// caller's credentials and resources, input and output checked against the schemas. An
    /// agent prompted from inside an action calls its tools this way.
    fn run_inline(
        &self,
        input: Value,
        ctx: ActionCtx,
    ) -> BoxFuture<'static, Result<Value, ActionError>>;
}

impl<I: Payload, O: Payload> Tool for Action<I, O> {
    fn info(&self) -> &ActionInfo {
        Action::info(self)
    }

    fn run_json(&self, input: Value) -> StepCall<Value> {
        Action::run_json(self, input)
    }

    fn run_inline(
        &self,
        input: Value,
        ctx: ActionCtx,
    ) -> BoxFuture<'static, Result<Value, ActionError>> {
        Action::run_inline(self, input, ctx)
    }
}

/// An action defined in a `static LazyLock` is a tool as it is, so an agent takes
/// `&[&LOOKUP_COMPANY, &slack::SEND_MESSAGE]`.
impl<T: Tool, F: FnOnce() -> T + Send> Tool for std::sync::LazyLock<T, F> {
    fn info(&self) -> &ActionInfo {
        (**self).info()
    }

    fn run_json(&self, input: Value) -> StepCall<Value> {
        (**self).run_json(input)
    }

    fn run_inline(
        &self,
        input: Value,
        ctx: ActionCtx,
    ) -> BoxFuture<'static, Result<Value, ActionError>> {
        (**self).run_inline(input, ctx)
    }
}
