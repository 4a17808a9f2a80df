//! Recorded values: `ctx.now()`, `ctx.random()` and `ctx.uuid()` are steps whose value is
//! recorded, so a replay sees the same one.

use std::{sync::Arc, time::SystemTime};

use cairn_core::{NOW_SLUG, RANDOM_SLUG, StepKind, UUID_SLUG};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    base::{clock::system_time, entropy::EntropyExt},
    call::{Begin, Call},
    run::{Stop, body::WorkflowCtx},
};

impl WorkflowCtx {
    /// The current time, recorded: a replay sees the same value.
    pub fn now(&self) -> SystemTime {
        let clock = self.run.env.clock.clone();
        let ms = self.recorded(StepKind::Now, NOW_SLUG, move || Value::from(clock.now_ms()));
        system_time(ms.as_i64().unwrap_or_default())
    }

    /// A uniform random number in `0..1`, recorded: a replay sees the same value.
    pub fn random(&self) -> f64 {
        let entropy = self.run.env.entropy.clone();
        let value = self.recorded(StepKind::Random, RANDOM_SLUG, move || {
            Value::from(entropy.unit())
        });
        value.as_f64().unwrap_or_default()
    }

    /// A random UUID (v4), recorded: a replay sees the same value.
    pub fn uuid(&self) -> Uuid {
        let entropy = self.run.env.entropy.clone();
        let value = self.recorded(StepKind::Uuid, UUID_SLUG, move || {
            let bytes: [u8; 16] = entropy.bytes();
            Value::from(
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .to_string(),
            )
        });
        value
            .as_str()
            .and_then(|text| Uuid::parse_str(text).ok())
            .unwrap_or_default()
    }

    /// Replays a recorded value or produces and records a new one (written with the next
    /// barrier, see `writes`). When the call must not go on (the run is stopping, the steps
    /// limit is reached), nothing is recorded and a fresh value is returned: the body stops
    /// at its next await.
    fn recorded(&self, kind: StepKind, slug: &str, produce: impl FnOnce() -> Value) -> Value {
        let call = match Call::make(self.run.clone(), kind, Arc::from(slug), None) {
            Ok(call) => call,
            Err(err) => {
                self.run.stop(Stop::Fail(err.info().clone()));
                return unrecorded(kind);
            }
        };
        match call.decide(&Value::Null) {
            Some(Begin::Replayed(Ok(output))) => output,
            Some(Begin::Replayed(Err(_))) | None => unrecorded(kind),
            Some(Begin::Execute(_)) => {
                let output = produce();
                call.run.defer([call.completed(output.clone())]);
                output
            }
        }
    }
}

/// A value for a call that was not recorded (the body is stopping and never sees it used).
fn unrecorded(kind: StepKind) -> Value {
    match kind {
        StepKind::Uuid => Value::from(Uuid::nil().to_string()),
        StepKind::Random => Value::from(0.0),
        _ => Value::from(0),
    }
}
