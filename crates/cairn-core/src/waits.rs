//! What waits record as their step's input, typed: a sleep its wake-up time, a hook its token
//! and timeout. Read back by replay, inspection (`runs get`, the API) and the testing harness,
//! so the JSON shape is decided here once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The recorded input of a durable sleep: when it wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepInput {
    /// When the sleep ends (unix ms).
    pub wake_at_ms: i64,
}

/// The recorded input of a hook: the token that resumes it and when waiting gives up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookInput {
    /// The unguessable token that resumes the hook.
    pub token: String,
    /// When waiting on it gives up (unix ms), if ever.
    pub timeout_at_ms: Option<i64>,
}

macro_rules! json_form {
    ($type:ty) => {
        impl $type {
            /// The input as recorded in the log.
            pub fn to_value(&self) -> Value {
                serde_json::to_value(self).unwrap_or(Value::Null)
            }

            /// Reads a recorded input; `None` if it has another shape.
            pub fn from_value(value: &Value) -> Option<Self> {
                Self::deserialize(value).ok()
            }
        }
    };
}

json_form!(SleepInput);
json_form!(HookInput);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wait_inputs_keep_the_recorded_json_shape() {
        let sleep = SleepInput { wake_at_ms: 42 };
        assert_eq!(sleep.to_value(), json!({"wakeAtMs": 42}));
        assert_eq!(
            SleepInput::from_value(&json!({"wakeAtMs": 42})),
            Some(sleep)
        );
        let hook = HookInput {
            token: "hk_1".into(),
            timeout_at_ms: None,
        };
        // Written by earlier versions with an explicit null.
        assert_eq!(
            hook.to_value(),
            json!({"token": "hk_1", "timeoutAtMs": null})
        );
        assert_eq!(HookInput::from_value(&hook.to_value()), Some(hook));
        assert_eq!(SleepInput::from_value(&json!({"token": "x"})), None);
    }
}
