//! Named limits. Every unbounded thing a user can feed the engine has one, with a clear error.

use serde::{Deserialize, Serialize};

/// The engine's limits. Defaults suit most deployments; all of them can be configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest JSON payload (run input/output, step input/output), in bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Most steps one run may record. Default 10,000.
    pub max_steps_per_run: usize,
    /// Most attempts a retry policy may ask for. Default 1,000.
    pub max_attempts: u32,
    /// Most times one step's attempts may be interrupted (its worker stopped mid-attempt:
    /// crash, kill, lost lease) before the step fails: a guard against a step that takes
    /// its worker down every time. Default 5.
    pub max_step_recoveries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_steps_per_run: 10_000,
            max_attempts: 1_000,
            max_step_recoveries: 5,
        }
    }
}

/// A limit was exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// A JSON payload is larger than `max_payload_bytes`.
    #[error(
        "{what} is {size} bytes, over the payload limit of {limit} bytes; pass a reference (a URL or an id) instead of the data, or raise the limit (--max-payload-bytes / CAIRN_MAX_PAYLOAD_BYTES)"
    )]
    Payload {
        /// What the payload was (e.g. "input of step research-signup#0").
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A run made more step calls than `max_steps_per_run`.
    #[error("run made more than {limit} step calls; split the work into child workflows")]
    Steps {
        /// The limit.
        limit: usize,
    },
}

impl Limits {
    /// Checks a serialized payload against `max_payload_bytes`.
    pub fn check_payload(
        &self,
        what: impl FnOnce() -> String,
        size: usize,
    ) -> Result<(), LimitExceeded> {
        if size > self.max_payload_bytes {
            return Err(LimitExceeded::Payload {
                what: what(),
                size,
                limit: self.max_payload_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_over_the_limit_names_the_limit() {
        let limits = Limits {
            max_payload_bytes: 10,
            ..Limits::default()
        };
        assert!(limits.check_payload(|| "x".into(), 10).is_ok());
        let err = limits
            .check_payload(|| "input of run".into(), 11)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("11 bytes") && text.contains("limit of 10 bytes"),
            "{text}"
        );
    }
}
