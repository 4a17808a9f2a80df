//! The trigger pages as askama templates: schedules, one schedule, webhook endpoints, one
//! endpoint's deliveries (see `triggers` for what each shows).

use askama::Template;

use super::pages::RunRow;

/// `/ui/schedules`.
#[derive(Template)]
#[template(path = "schedules.html")]
pub(crate) struct SchedulesPage {
    pub(crate) schedules: Vec<ScheduleRow>,
}

/// One schedule in the list (and the head of its page).
pub(crate) struct ScheduleRow {
    pub(crate) id: String,
    /// The id, encoded for a URL path.
    pub(crate) link: String,
    pub(crate) workflow: String,
    pub(crate) expression: String,
    pub(crate) timezone: String,
    pub(crate) state: &'static str,
    pub(crate) next_fire: String,
    pub(crate) last_fire: String,
}

/// `/ui/schedules/{id}`.
#[derive(Template)]
#[template(path = "schedule.html")]
pub(crate) struct ScheduleDetailPage {
    pub(crate) row: ScheduleRow,
    /// The input each run starts with, pretty JSON.
    pub(crate) input: String,
    pub(crate) catch_up: String,
    pub(crate) overlap: String,
    pub(crate) paused: bool,
    /// The next fire times.
    pub(crate) upcoming: Vec<String>,
    /// The fire time waiting for the running run to end (`bufferOne`), if one is.
    pub(crate) buffered: Option<String>,
    /// The runs it started, newest first.
    pub(crate) recent: Vec<RunRow>,
    /// Missed spans: first, last, why.
    pub(crate) missed: Vec<(String, String, String)>,
    pub(crate) csrf: String,
    pub(crate) notice: Option<String>,
}

/// `/ui/webhooks`.
#[derive(Template)]
#[template(path = "webhooks.html")]
pub(crate) struct WebhooksPage {
    pub(crate) endpoints: Vec<EndpointRow>,
}

/// One webhook endpoint.
pub(crate) struct EndpointRow {
    pub(crate) endpoint: String,
    /// The endpoint, encoded for a URL path.
    pub(crate) link: String,
    /// The workflow its deliveries start.
    pub(crate) workflow: String,
}

/// `/ui/webhooks/{endpoint}`.
#[derive(Template)]
#[template(path = "deliveries.html")]
pub(crate) struct DeliveriesPage {
    pub(crate) endpoint: String,
    pub(crate) deliveries: Vec<DeliveryRow>,
}

/// One logged delivery.
pub(crate) struct DeliveryRow {
    pub(crate) received_at: String,
    pub(crate) status: u16,
    pub(crate) outcome: String,
    pub(crate) delivery_id: String,
    pub(crate) run_id: Option<String>,
    pub(crate) reason: String,
}
