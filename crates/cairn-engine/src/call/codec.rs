//! Payloads in and out of a step: serialized to JSON under the payload limit, validated
//! against a schema, and turned back into typed values.

use cairn_core::ErrorKind;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    base::{
        error::StepError,
        schema::{Schema, json_size},
    },
    call::Call,
    run::RunContext,
};

impl Call {
    /// Serializes the step's input, checking the payload limit.
    pub(crate) fn encode_input<I: Serialize>(&self, input: &I) -> Result<Value, StepError> {
        let value = serde_json::to_value(input).map_err(|err| {
            StepError::new(self.error(
                ErrorKind::InvalidInput,
                format!("input cannot be serialized to JSON: {err}"),
            ))
        })?;
        self.check_size("input", &value)?;
        Ok(value)
    }

    /// Checks one of the step's payloads against the configured limit.
    pub(crate) fn check_size(&self, what: &str, value: &Value) -> Result<(), StepError> {
        check_payload(&self.run, || format!("{what} of step {}", self.key), value)
            .map_err(|message| StepError::new(self.error(ErrorKind::PayloadTooLarge, message)))
    }

    /// Validates a replayed or fresh output against `schema` and turns it into `O`.
    pub(crate) fn decode_output<O: DeserializeOwned>(
        &self,
        schema: &Schema,
        output: Value,
    ) -> Result<O, StepError> {
        let invalid =
            |message: String| StepError::new(self.error(ErrorKind::InvalidOutput, message));
        schema.validate(&output).map_err(|v| {
            invalid(format!(
                "recorded output does not match the current output schema: {v}"
            ))
        })?;
        serde_json::from_value(output).map_err(|err| {
            invalid(format!(
                "recorded output does not fit the output type: {err}"
            ))
        })
    }
}

/// Checks a payload of `run` against the payload limit; the error message names `what`.
pub(crate) fn check_payload(
    run: &RunContext,
    what: impl FnOnce() -> String,
    value: &Value,
) -> Result<(), String> {
    run.env
        .config
        .limits
        .check_payload(what, json_size(value))
        .map_err(|err| err.to_string())
}
