//! Hooks from the outside: listing them, and resuming one by token with a payload validated
//! against the schema the hook was created with. Used by the CLI now and the HTTP API later.

use cairn_store::{HookFilter, HookRecord, HookState, StoreError};
use serde_json::Value;

use crate::{
    api::engine::Engine,
    base::{
        error::EngineError,
        schema::{Schema, json_size},
    },
};

impl Engine {
    /// Resumes the pending hook `token` with `payload`. The payload is checked against the
    /// hook's schema first (a bad payload is refused and the run keeps waiting); the resume is
    /// recorded in the run's log, durably, before the run is woken. A second resume is
    /// refused (`HookNotPending`); an unknown token is `HookNotFound`.
    pub async fn resume_hook(
        &self,
        token: &str,
        payload: Value,
    ) -> Result<HookRecord, EngineError> {
        let env = &self.runtime.env;
        let hook = env
            .store
            .get_hook(token)
            .await?
            .ok_or(StoreError::HookNotFound)?;
        if hook.state != HookState::Pending {
            return Err(StoreError::HookNotPending {
                run: hook.run_id,
                step: hook.step_key.to_string(),
                state: hook.state,
            }
            .into());
        }
        let schema = Schema::from_json(hook.schema.clone()).map_err(EngineError::BadRequest)?;
        schema
            .validate(&payload)
            .map_err(|violations| EngineError::InvalidPayload {
                step: hook.step_key.to_string(),
                violations,
            })?;
        let what = || format!("payload of hook {}", hook.step_key);
        env.config.limits.check_payload(what, json_size(&payload))?;
        let resumed = env
            .store
            .resume_hook(token, payload, env.clock.now_ms())
            .await?;
        self.runtime.new_work.notify_waiters();
        Ok(resumed)
    }

    /// One hook by token.
    pub async fn get_hook(&self, token: &str) -> Result<HookRecord, EngineError> {
        Ok(self
            .store()
            .get_hook(token)
            .await?
            .ok_or(StoreError::HookNotFound)?)
    }

    /// Hooks matching `filter`, newest first.
    pub async fn list_hooks(&self, filter: &HookFilter) -> Result<Vec<HookRecord>, EngineError> {
        Ok(self.store().list_hooks(filter).await?)
    }
}
