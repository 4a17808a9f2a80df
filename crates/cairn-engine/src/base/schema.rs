//! JSON Schemas of typed inputs and outputs, compiled once per action or workflow.

use std::{
    any::TypeId,
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A type that can be a step's or a run's input or output: JSON with a schema.
pub trait Payload: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

impl<T: Serialize + DeserializeOwned + JsonSchema + Send + 'static> Payload for T {}

/// Checks `value` against `T`'s JSON Schema with the validator that checks actions' inputs
/// and outputs (compiled once per type), collecting every violation with its JSON path. For
/// integrations that receive JSON meant to be a `T` (a model's structured answer).
pub fn validate_payload<T: Payload>(value: &Value) -> Result<(), Violations> {
    Schema::cached::<T>().validate(value)
}

/// A JSON Schema generated from a Rust type and compiled into a validator.
pub(crate) struct Schema {
    json: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    /// Generates and compiles the schema of `T` (formats such as `email` are checked).
    pub(crate) fn of<T: JsonSchema>() -> Schema {
        let json = serde_json::to_value(schemars::schema_for!(T))
            .expect("a schemars schema always serializes to JSON");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&json)
            .unwrap_or_else(|err| {
                panic!(
                    "the JSON Schema generated for {} does not compile: {err}",
                    std::any::type_name::<T>()
                )
            });
        Schema { json, validator }
    }

    /// The schema of `T`, generated and compiled once per type for the whole process.
    pub(crate) fn cached<T: JsonSchema + 'static>() -> Arc<Schema> {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Schema>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(Schema::of::<T>()))
            .clone()
    }

    /// Compiles a stored schema (a hook's), or says why it does not compile.
    pub(crate) fn from_json(json: Value) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&json)
            .map_err(|err| format!("the stored JSON Schema does not compile: {err}"))?;
        Ok(Schema { json, validator })
    }

    /// The schema as JSON.
    pub(crate) fn json(&self) -> &Value {
        &self.json
    }

    /// Checks `value`, collecting every violation with its JSON path.
    pub(crate) fn validate(&self, value: &Value) -> Result<(), Violations> {
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let items: Vec<Violation> = self
            .validator
            .iter_errors(value)
            .map(|error| Violation {
                path: error.instance_path().to_string(),
                message: error.to_string(),
            })
            .collect();
        debug_assert!(
            !items.is_empty(),
            "an invalid value has at least one violation"
        );
        Err(Violations(items))
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schema").field(&self.json).finish()
    }
}

/// One broken rule: where (a JSON pointer, `/` for the root) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value, e.g. `/email`.
    pub path: String,
    /// The rule broken, e.g. `"x" is not a "email"`.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Every violation found in one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            violation.fmt(f)?;
        }
        Ok(())
    }
}

/// The serialized size of a JSON value in bytes.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value)
        .map(|()| counter.0)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Signup {
        name: String,
        #[schemars(email)]
        email: String,
    }

    #[test]
    fn violations_name_the_path_and_the_rule() {
        let schema = Schema::of::<Signup>();
        assert!(
            schema
                .validate(&json!({"name": "Ada", "email": "ada@example.com"}))
                .is_ok()
        );
        let err = schema
            .validate(&json!({"name": "Ada", "email": "x"}))
            .unwrap_err();
        assert_eq!(err.to_string(), r#"/email: "x" is not a "email""#);
        let err = schema.validate(&json!({"email": "a@b.co"})).unwrap_err();
        assert!(err.to_string().starts_with("/: "), "{err}");
        assert!(err.to_string().contains("name"), "{err}");
    }
}
