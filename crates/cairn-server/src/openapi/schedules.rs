//! The `/schedules` operations of the OpenAPI document.

use cairn_engine::{ScheduleDetail, ScheduleStarted};
use cairn_store::ScheduleRecord;
use serde_json::json;

use super::{Doc, Op, param};
use crate::responses::{Backfilled, ScheduleList};

/// Each `/schedules` operation: path, method, operation.
pub(super) fn operations(doc: &mut Doc) -> Vec<(&'static str, &'static str, Op)> {
    let list = doc.schema::<ScheduleList>();
    let schedule = doc.schema::<ScheduleRecord>();
    let detail = doc.schema::<ScheduleDetail>();
    let started = doc.schema::<ScheduleStarted>();
    let backfilled = doc.schema::<Backfilled>();
    let id = param(
        "path",
        "id",
        "The schedule's id (as GET /schedules lists it).",
        json!({"type": "string"}),
        true,
    );
    let by_id = |op: Op| {
        op.param(id.clone()).error(
            404,
            "No schedule has this id (or, to start a run, its workflow is not registered here).",
        )
    };
    let spec = json!({"type": "object", "required": ["workflow", "cron"], "additionalProperties": false, "properties": {
        "workflow": {"type": "string", "minLength": 1, "description": "The workflow it starts (as GET /workflows lists them)."},
        "input": {"description": "The input of each run; it must match the workflow's input schema (default null)."},
        "cron": {"type": "string", "minLength": 1, "description": "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first."},
        "timezone": {"type": "string", "minLength": 1, "description": "The IANA zone the fields are read in (default UTC)."},
        "catchUp": {"description": "After downtime: \"latest\" (default: the newest missed fire time of the last 24 h), \"none\", or {\"kind\": \"all\", \"windowMs\": …}.",
            "anyOf": [{"enum": ["latest", "none"]}, {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": ["latest", "all", "none"]}, "windowMs": {"type": "integer", "minimum": 0}}}]},
        "overlap": {"enum": ["allowAll", "skip", "bufferOne"], "description": "While a run it started has not ended: start anyway (default), skip, or keep one fire time waiting."}
    }});
    let range = json!({"type": "object", "required": ["from", "to"], "additionalProperties": false, "properties": {
        "from": {"type": "string", "format": "date-time", "description": "The range's start (RFC 3339), included."},
        "to": {"type": "string", "format": "date-time", "description": "The range's end (RFC 3339), included; not after now."}
    }});
    vec![
        ("/schedules", "get", Op::new("listSchedules", "The stored cron schedules, by id.")
            .ok(200, "The schedules.", list)),
        ("/schedules/{id}", "get", by_id(Op::new("getSchedule", "One schedule with its next 5 fire times, the fire time waiting (overlap bufferOne), its newest runs and its missed fire times.")
            .ok(200, "The schedule.", detail))),
        ("/schedules/{id}", "put", Op::new("putSchedule", "Creates a schedule; the id is the dedup key: the same spec again answers the stored schedule, another spec is a conflict. Its first fire time is the first after now.")
            .param(id.clone())
            .body(spec, true)
            .ok(201, "Created.", schedule.clone())
            .ok(200, "The same spec was stored already: nothing changed.", schedule.clone())
            .error(400, "The id is not valid (1 to 100 letters, digits, '-', '_' or '.').")
            .error(409, "A schedule with this id has another spec (each difference named).")
            .error(422, "The body breaks the shape above, names an unknown workflow, has an input that breaks its schema, a bad cron expression or an unknown zone (each path listed).")),
        ("/schedules/{id}", "delete", by_id(Op::new("deleteSchedule", "Deletes a schedule and its missed fire times; its runs stay. One declared in code comes back when a worker of that code starts.")
            .no_content(204, "Deleted."))),
        ("/schedules/{id}/pause", "post", by_id(Op::new("pauseSchedule", "Pauses a schedule: it fires no more until resumed.")
            .ok(200, "The schedule.", schedule.clone()))),
        ("/schedules/{id}/resume", "post", by_id(Op::new("resumeSchedule", "Resumes a schedule from its next fire time after now (fire times passed while paused are not caught up).")
            .ok(200, "The schedule.", schedule))),
        ("/schedules/{id}/trigger", "post", by_id(Op::new("triggerSchedule", "Starts a run of the schedule now; its next fire time does not move.")
            .ok(201, "The new run.", started.clone())
            .ok(200, "The schedule was triggered this second already: that run.", started)
            .error(422, "The schedule's input no longer matches its workflow's schema (each path listed)."))),
        ("/schedules/{id}/backfill", "post", by_id(Op::new("backfillSchedule", "Starts a run for every fire time in a past range (at most 1,000), under the keys live fires use: a fire time that has its run starts nothing and answers that run.")
            .body(range, true)
            .ok(200, "Each fire time with its run.", backfilled)
            .error(400, "The range ends after now, starts after it ends, or holds over 1,000 fire times.")
            .error(422, "The body breaks the shape above, or the schedule's input no longer matches its workflow's schema (each path listed)."))),
    ]
}
