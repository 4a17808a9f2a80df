//! The runs list's filters as the URL carries them (so a deep link or Back restores them):
//! `workflow`, `status` (repeated for several), `from` and `to` (a time, as a
//! `datetime-local` input sends it, read as UTC, or RFC 3339), `q` (a run id prefix or an
//! idempotency key) and `cursor` (the last run of the previous page). A bad one is a 400
//! page naming the parameter.

use axum::{extract::Query, http::StatusCode, http::Uri};
use cairn_core::RunStatus;
use cairn_engine::parse_timestamp;
use cairn_store::{RunFilter, RunId};

use super::{STATUSES, UiError, pages::encode};

/// The runs list's query, read.
pub(crate) struct RunsQuery {
    /// The pairs as given (for the filter form and the next page's link).
    pairs: Vec<(String, String)>,
    /// The filter they make.
    pub(crate) filter: RunFilter,
}

impl RunsQuery {
    /// The query of `uri`, or the 400 page naming what is wrong.
    pub(crate) fn parse(uri: &Uri) -> Result<RunsQuery, UiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|err| {
            bad(format!(
                "the query string is malformed: {}",
                err.body_text()
            ))
        })?;
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .collect();
        let mut filter = RunFilter::default();
        for (name, value) in &pairs {
            let value = value.trim();
            match name.as_str() {
                "workflow" => filter.workflow = Some(value.to_owned()),
                "status" => filter
                    .statuses
                    .push(value.parse::<RunStatus>().map_err(|_| {
                        bad(format!(
                            "status={value:?} is not a status; use one of {}",
                            STATUSES.join(", ")
                        ))
                    })?),
                "from" => filter.created_after_ms = Some(time(name, value)?),
                "to" => filter.created_before_ms = Some(time(name, value)?),
                "q" => filter.search = Some(value.to_owned()),
                "cursor" => {
                    filter.before = Some(value.parse::<RunId>().map_err(|_| {
                        bad(format!(
                            "cursor={value:?} is not a run id; follow the page's Older runs link"
                        ))
                    })?);
                }
                _ => {}
            }
        }
        Ok(RunsQuery { pairs, filter })
    }

    /// The value given for `name` (for the filter form), or empty.
    pub(crate) fn text(&self, name: &str) -> String {
        self.pairs
            .iter()
            .find(|(given, _)| given == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// The link to the page after `last`, with the same filters.
    pub(crate) fn page_after(&self, last: &RunId) -> String {
        let mut url = format!("/ui/runs?cursor={last}");
        for (name, value) in &self.pairs {
            if name != "cursor" {
                url.push_str(&format!("&{}={}", encode(name), encode(value)));
            }
        }
        url
    }
}

/// A `from`/`to` time as unix ms: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` read as UTC.
fn time(name: &str, value: &str) -> Result<i64, UiError> {
    let zoned = match value.len() {
        16 => format!("{value}:00Z"),
        19 => format!("{value}Z"),
        _ => value.to_owned(),
    };
    parse_timestamp(&zoned).ok_or_else(|| {
        bad(format!(
            "{name}={value:?} is not a time; use e.g. 2026-12-04T09:30 (UTC) or RFC 3339"
        ))
    })
}

fn bad(detail: String) -> UiError {
    UiError::new(StatusCode::BAD_REQUEST, "Bad filter", detail)
}
