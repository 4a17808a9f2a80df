//! The bodies the API answers with, as types: the handlers serialize them and
//! `GET /openapi.json` describes them from the same definitions, so the two cannot drift.

use cairn_core::RunStatus;
use cairn_engine::{
    ActionInfo, BackfillRun, CredentialView, RunView, WebhookDelivery, WorkflowInfo,
};
use cairn_store::{RunId, ScheduleRecord};
use schemars::JsonSchema;
use serde::Serialize;

/// `POST /workflows/{slug}` without `?wait`, or when the run has not ended in time.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Started {
    /// The run's id (also in `Location`).
    pub(crate) run_id: RunId,
    /// False when the `Idempotency-Key` named a run that existed already.
    pub(crate) created: bool,
}

/// `GET /workflows`: what can be started and the actions workflows call.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Catalog<'a> {
    /// The registered workflows with their input and output schemas.
    pub(crate) workflows: Vec<&'a WorkflowInfo>,
    /// The registered actions with their input and output schemas.
    pub(crate) actions: Vec<&'a ActionInfo>,
}

/// `GET /runs`: one page, newest first.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunsPage {
    /// The runs of this page.
    pub(crate) runs: Vec<RunView>,
    /// Pass it as `cursor` for the next page; null on the last page.
    pub(crate) next_cursor: Option<String>,
}

/// `POST /runs/{id}/retry`: the run is queued again.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Requeued {
    /// The run.
    pub(crate) run_id: RunId,
    /// Always `queued`.
    pub(crate) status: RunStatus,
}

/// `POST /runs/{id}/cancel`: the run has ended as canceled.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Canceled {
    /// The run.
    pub(crate) run_id: RunId,
    /// Always `canceled`.
    pub(crate) status: RunStatus,
    /// Where it was before.
    pub(crate) previous_status: RunStatus,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Health {
    /// `ok` (the process answers) or `ready` (the store answers too).
    pub(crate) status: &'static str,
}

/// `GET /credentials`: never a value.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CredentialList {
    /// The credentials, by type, scope and holder, newest first.
    pub(crate) credentials: Vec<CredentialView>,
}

/// `GET /webhooks/{endpoint}/deliveries`: what became of each delivery, never its body.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DeliveryList {
    /// The endpoint's logged deliveries, newest first.
    pub(crate) deliveries: Vec<WebhookDelivery>,
}

/// `GET /credentials/connect/{key}` with `Accept: application/json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizeUrl {
    /// The provider's authorize URL to send the user to.
    pub(crate) authorize_url: String,
}

/// `GET /schedules`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ScheduleList {
    /// The stored schedules, by id.
    pub(crate) schedules: Vec<ScheduleRecord>,
}

/// `POST /schedules/{id}/backfill`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Backfilled {
    /// Each fire time of the range, oldest first, with its run (new, or the one it had).
    pub(crate) runs: Vec<BackfillRun>,
}
