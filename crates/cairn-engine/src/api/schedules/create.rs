//! Creating a schedule through the API (`PUT /schedules/{id}`): the spec is checked whole
//! (the workflow is registered, the input matches its schema, the expression parses, the
//! zone exists) before anything is saved, and the id is the dedup key: the same spec again
//! changes nothing, another spec is a conflict naming the difference (unlike a declaration
//! in code, which an edited binary replaces).

use cairn_store::{SchedulePut, ScheduleRecord, ScheduleSpec};
use cairn_triggers::ScheduleError;

use super::{new_record, schedule_of_spec};
use crate::{
    api::engine::Engine,
    base::{
        error::EngineError,
        schema::{Violation, Violations},
    },
};

impl Engine {
    /// Saves schedule `id` with `spec` if no schedule has the id ([`SchedulePut::Created`],
    /// first fire after now), or answers the stored one if its spec is `spec`
    /// ([`SchedulePut::Unchanged`]); a stored schedule with another spec is
    /// [`EngineError::ScheduleConflict`] naming each difference. A spec that is not valid is
    /// [`EngineError::InvalidSchedule`], each problem with the JSON path of the request field
    /// (`/workflow`, `/input/…`, `/cron`, `/timezone`); a bad id is
    /// [`EngineError::Schedule`].
    pub async fn create_schedule(
        &self,
        id: &str,
        spec: ScheduleSpec,
    ) -> Result<(SchedulePut, ScheduleRecord), EngineError> {
        let schedule = self.checked_schedule(id, &spec)?;
        let store = &self.runtime.env.store;
        if let Some(stored) = store.get_schedule(id).await? {
            if stored.spec == spec {
                return Ok((SchedulePut::Unchanged, stored));
            }
            return Err(EngineError::ScheduleConflict {
                id: id.to_owned(),
                difference: difference(&stored.spec, &spec),
            });
        }
        let record = new_record(&schedule, spec, self.runtime.env.clock.now_ms());
        Ok(store.put_schedule(record).await?)
    }

    /// The schedule `spec` describes, or every way it is not valid.
    fn checked_schedule(
        &self,
        id: &str,
        spec: &ScheduleSpec,
    ) -> Result<cairn_triggers::Schedule, EngineError> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(Violation {
                path: path.to_owned(),
                message,
            });
        };
        let registry = &self.runtime.registry;
        match registry.get(&spec.workflow) {
            None => problem(
                "/workflow",
                format!(
                    "unknown workflow {:?}; registered workflows: {}",
                    spec.workflow,
                    registry.slugs().join(", ")
                ),
            ),
            Some(workflow) => {
                if let Err(Violations(violations)) = workflow.input_schema().validate(&spec.input) {
                    for violation in violations {
                        problem(&format!("/input{}", violation.path), violation.message);
                    }
                }
            }
        }
        let schedule = match schedule_of_spec(id, spec) {
            Ok(schedule) => Some(schedule),
            Err(error @ ScheduleError::Id(_)) => return Err(error.into()),
            Err(error @ ScheduleError::TimeZone(_)) => {
                problem("/timezone", error.to_string());
                None
            }
            Err(error) => {
                problem("/cron", error.to_string());
                // The zone may be wrong too: say so in the same answer.
                let zone = cairn_triggers::Schedule::cron(id, "* * * * *")
                    .and_then(|every_minute| every_minute.timezone(&spec.timezone));
                if zone.is_err() {
                    problem(
                        "/timezone",
                        ScheduleError::TimeZone(spec.timezone.clone()).to_string(),
                    );
                }
                None
            }
        };
        match schedule {
            Some(schedule) if problems.is_empty() => Ok(schedule),
            _ => Err(EngineError::InvalidSchedule {
                id: id.to_owned(),
                violations: Violations(problems),
            }),
        }
    }
}

/// What differs between a stored spec and one asked for, field by field (named as the
/// request names them).
fn difference(stored: &ScheduleSpec, asked: &ScheduleSpec) -> String {
    fn text(value: &impl serde::Serialize) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }
    let fields: [(&str, String, String); 6] = [
        ("workflow", text(&stored.workflow), text(&asked.workflow)),
        ("input", text(&stored.input), text(&asked.input)),
        ("cron", text(&stored.expression), text(&asked.expression)),
        ("timezone", text(&stored.timezone), text(&asked.timezone)),
        ("catchUp", text(&stored.catch_up), text(&asked.catch_up)),
        ("overlap", text(&stored.overlap), text(&asked.overlap)),
    ];
    fields
        .into_iter()
        .filter(|(_, stored, asked)| stored != asked)
        .map(|(name, stored, asked)| format!("{name}: stored {stored}, asked {asked}"))
        .collect::<Vec<_>>()
        .join("; ")
}
