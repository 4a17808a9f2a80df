//! Forms generated from a JSON Schema (a workflow's input, a hook's payload), rendered by
//! the server and read back into JSON.
//!
//! [`Form::of`] walks the schema (following local `$ref`s and `Option`'s `null` unions) into
//! fields, each named by its value's JSON pointer (`f/address/city`): text (with `email`,
//! `uri` and `date-time` inputs), integer and number (with their bounds), boolean
//! (checkbox), string enum (select), nested object (fieldset), array of scalars (a
//! repeatable field: one input per item and an empty one to add), and a JSON textarea for
//! anything else. [`Form::read`] turns the posted pairs back into the JSON value, saying per
//! field what could not be read; the schema itself is then checked by the engine, whose
//! violations [`Form::attach`] puts on the fields their paths name.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

/// The prefix of every field's name (the root value is `f`).
const PREFIX: &str = "f";
/// How deep nested objects are made into fieldsets before a JSON textarea takes over.
const MAX_DEPTH: usize = 8;

/// What one field is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A one-line input of this HTML type (`text`, `email`, `url`, `datetime-local`).
    Text(&'static str),
    /// A number input; `integer` when only whole numbers are valid.
    Number {
        integer: bool,
        min: Option<String>,
        max: Option<String>,
    },
    /// A checkbox.
    Boolean,
    /// A select of these values.
    Choice(Vec<String>),
    /// A fieldset of these fields.
    Object(Vec<Field>),
    /// One input of this HTML type per item, and an empty one to add an item.
    List(&'static str),
    /// A textarea holding JSON.
    Json,
}

/// One field of a form.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Field {
    /// The JSON pointer of its value (`/address/city`; empty for the root).
    pub(crate) pointer: String,
    /// Its label.
    pub(crate) label: String,
    /// The schema's description, as help text.
    pub(crate) help: String,
    pub(crate) required: bool,
    pub(crate) kind: Kind,
}

impl Field {
    /// The form control's name.
    pub(crate) fn name(&self) -> String {
        format!("{PREFIX}{}", self.pointer)
    }
}

/// A form for one schema: its fields, the values shown in them, and the errors shown.
#[derive(Clone, Debug, Default)]
pub(crate) struct Form {
    pub(crate) fields: Vec<Field>,
    /// The values shown, by control name (several for a list).
    pub(crate) values: HashMap<String, Vec<String>>,
    /// Errors by JSON pointer of the field they belong to.
    pub(crate) errors: HashMap<String, String>,
    /// Errors no field owns (`(path, message)`).
    pub(crate) general: Vec<(String, String)>,
}

impl Form {
    /// The form of `schema` (its `$defs` resolve its `$ref`s), empty.
    pub(crate) fn of(schema: &Value) -> Form {
        let root = field(schema, schema, String::new(), "Input".into(), true, 0);
        let fields = match root.kind {
            Kind::Object(fields) => fields,
            _ => vec![root],
        };
        Form {
            fields,
            ..Form::default()
        }
    }

    /// The form showing `value`.
    pub(crate) fn filled(mut self, value: &Value) -> Form {
        for field in &self.fields {
            fill(field, value, &mut self.values);
        }
        self
    }

    /// Reads the posted `pairs` into JSON: the value, or the form showing what was posted
    /// with an error on each field that could not be read.
    pub(crate) fn read(self, pairs: &[(String, String)]) -> Result<Value, Box<Form>> {
        let mut form = self.showing(pairs);
        let mut errors = HashMap::new();
        let value = if form.fields.len() == 1 && form.fields[0].pointer.is_empty() {
            read_field(&form.fields[0], &form.values, &mut errors).unwrap_or(Value::Null)
        } else {
            Value::Object(read_object(&form.fields, &form.values, &mut errors))
        };
        if errors.is_empty() {
            Ok(value)
        } else {
            form.errors = errors;
            Err(Box::new(form))
        }
    }

    /// The form showing the posted `pairs` (the form's own fields only).
    pub(crate) fn showing(mut self, pairs: &[(String, String)]) -> Form {
        for (name, value) in pairs {
            if name.starts_with(PREFIX) {
                self.values
                    .entry(name.clone())
                    .or_default()
                    .push(value.clone());
            }
        }
        self
    }

    /// Puts each `(path, message)` on the field whose pointer is the longest prefix of its
    /// path, or among the general errors.
    pub(crate) fn attach(mut self, violations: impl IntoIterator<Item = (String, String)>) -> Form {
        let mut pointers = Vec::new();
        for field in &self.fields {
            pointers_of(field, &mut pointers);
        }
        for (path, message) in violations {
            let owner = pointers
                .iter()
                .filter(|pointer| {
                    path == **pointer
                        || (path.starts_with(pointer.as_str())
                            && path[pointer.len()..].starts_with('/'))
                })
                .max_by_key(|pointer| pointer.len());
            match owner {
                Some(pointer) => {
                    self.errors.insert(pointer.clone(), message);
                }
                None => self.general.push((path, message)),
            }
        }
        self
    }
}

/// The field for `schema` (resolved against `root`) at `pointer`.
fn field(
    root: &Value,
    schema: &Value,
    pointer: String,
    label: String,
    required: bool,
    depth: usize,
) -> Field {
    let (schema, nullable) = resolve(root, schema);
    let help = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let label = schema
        .get("title")
        .and_then(Value::as_str)
        .map_or(label, str::to_owned);
    let kind = kind(root, schema, &pointer, depth);
    Field {
        pointer,
        label,
        help,
        required: required && !nullable,
        kind,
    }
}

/// What a field of `schema` is.
fn kind(root: &Value, schema: &Value, pointer: &str, depth: usize) -> Kind {
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        let texts: Option<Vec<String>> = choices
            .iter()
            .map(|choice| choice.as_str().map(str::to_owned))
            .collect();
        return texts.map_or(Kind::Json, Kind::Choice);
    }
    match single_type(schema) {
        Some("string") => Kind::Text(text_input(schema)),
        Some(kind @ ("integer" | "number")) => Kind::Number {
            integer: kind == "integer",
            min: bound(schema, "minimum"),
            max: bound(schema, "maximum"),
        },
        Some("boolean") => Kind::Boolean,
        Some("object") if depth < MAX_DEPTH => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return Kind::Json;
            };
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Kind::Object(
                properties
                    .iter()
                    .map(|(name, property)| {
                        field(
                            root,
                            property,
                            format!("{pointer}/{}", escape(name)),
                            name.clone(),
                            required.contains(&name.as_str()),
                            depth + 1,
                        )
                    })
                    .collect(),
            )
        }
        Some("array") => {
            let items = schema.get("items").map(|items| resolve(root, items).0);
            match items.and_then(single_type) {
                Some("string") if items.is_some_and(|items| items.get("enum").is_none()) => {
                    Kind::List(text_input(items.unwrap_or(&Value::Null)))
                }
                Some("integer" | "number") => Kind::List("number"),
                _ => Kind::Json,
            }
        }
        _ => Kind::Json,
    }
}

/// `schema` with a local `$ref` followed and `Option`'s `null` taken out: the schema, and
/// whether `null` is allowed.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> (&'a Value, bool) {
    let mut schema = schema;
    let mut nullable = false;
    for _ in 0..MAX_DEPTH {
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            match target
                .strip_prefix('#')
                .and_then(|pointer| root.pointer(pointer))
            {
                Some(found) => {
                    schema = found;
                    continue;
                }
                None => break,
            }
        }
        let union = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(options) = union {
            let (nulls, others): (Vec<&Value>, Vec<&Value>) = options
                .iter()
                .partition(|option| option.get("type").and_then(Value::as_str) == Some("null"));
            if !nulls.is_empty() && others.len() == 1 {
                nullable = true;
                schema = others[0];
                continue;
            }
        }
        break;
    }
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        nullable |= types.iter().any(|kind| kind.as_str() == Some("null"));
    }
    (schema, nullable)
}

/// The one non-null type `schema` names, if it names one.
fn single_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(kind) => Some(kind),
        Value::Array(kinds) => {
            let named: Vec<&str> = kinds
                .iter()
                .filter_map(Value::as_str)
                .filter(|kind| *kind != "null")
                .collect();
            (named.len() == 1).then(|| named[0])
        }
        _ => None,
    }
}

/// The HTML input type of a string schema.
fn text_input(schema: &Value) -> &'static str {
    match schema.get("format").and_then(Value::as_str) {
        Some("email") => "email",
        Some("uri" | "url") => "url",
        Some("date-time") => "datetime-local",
        Some("date") => "date",
        _ => "text",
    }
}

fn bound(schema: &Value, name: &str) -> Option<String> {
    schema
        .get(name)
        .filter(|value| value.is_number())
        .map(Value::to_string)
}

/// A property name as a JSON pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Shows `value`'s part at `field` in `values`.
fn fill(field: &Field, value: &Value, values: &mut HashMap<String, Vec<String>>) {
    let Some(part) = value.pointer(&field.pointer) else {
        return;
    };
    let shown = match (&field.kind, part) {
        (Kind::Object(fields), _) => {
            for inner in fields {
                fill(inner, value, values);
            }
            return;
        }
        (_, Value::Null) => return,
        (Kind::Json, part) => vec![serde_json::to_string_pretty(part).unwrap_or_default()],
        (Kind::List(_), Value::Array(items)) => items.iter().map(scalar_text).collect(),
        (Kind::Boolean, part) => match part.as_bool() {
            Some(true) => vec!["true".to_owned()],
            _ => return,
        },
        (_, part) => vec![scalar_text(part)],
    };
    values.insert(field.name(), shown);
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The object `fields` make of the posted values (fields left empty and not required are
/// left out).
fn read_object(
    fields: &[Field],
    values: &HashMap<String, Vec<String>>,
    errors: &mut HashMap<String, String>,
) -> Map<String, Value> {
    let mut object = Map::new();
    for field in fields {
        if let Some(value) = read_field(field, values, errors) {
            let name = field.pointer.rsplit('/').next().unwrap_or_default();
            object.insert(name.replace("~1", "/").replace("~0", "~"), value);
        }
    }
    object
}

/// The value of one field, `None` when it is left empty (and may be).
fn read_field(
    field: &Field,
    values: &HashMap<String, Vec<String>>,
    errors: &mut HashMap<String, String>,
) -> Option<Value> {
    let posted: Vec<&str> = values
        .get(&field.name())
        .map(|texts| texts.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let text = posted.first().copied().unwrap_or_default().trim();
    let mut fail = |message: String| {
        errors.insert(field.pointer.clone(), message);
        None
    };
    match &field.kind {
        Kind::Object(fields) => Some(Value::Object(read_object(fields, values, errors))),
        Kind::Boolean => match (text, field.required) {
            ("", false) => None,
            ("", true) => Some(Value::Bool(false)),
            _ => Some(Value::Bool(true)),
        },
        Kind::List(input) => {
            let items: Vec<&str> = posted
                .iter()
                .map(|text| text.trim())
                .filter(|text| !text.is_empty())
                .collect();
            if items.is_empty() && !field.required {
                return None;
            }
            let mut read = Vec::new();
            for item in items {
                match scalar(item, *input == "number", false) {
                    Ok(value) => read.push(value),
                    Err(message) => return fail(format!("{item:?}: {message}")),
                }
            }
            Some(Value::Array(read))
        }
        _ if text.is_empty() && !field.required => None,
        Kind::Json => match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(err) => fail(format!("not valid JSON: {err}")),
        },
        Kind::Number { integer, .. } => match scalar(text, true, *integer) {
            Ok(value) => Some(value),
            Err(message) => fail(message),
        },
        Kind::Text(_) | Kind::Choice(_) => Some(Value::String(text.to_owned())),
    }
}

/// `text` as a JSON number (a whole one when `integer`), else as a string.
fn scalar(text: &str, number: bool, integer: bool) -> Result<Value, String> {
    if !number {
        return Ok(Value::String(text.to_owned()));
    }
    if let Ok(whole) = text.parse::<i64>() {
        return Ok(Value::Number(whole.into()));
    }
    if integer {
        return Err("must be a whole number".to_owned());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| "must be a number".to_owned())
}

/// Every field's pointer, nested ones included.
fn pointers_of(field: &Field, pointers: &mut Vec<String>) {
    pointers.push(field.pointer.clone());
    if let Kind::Object(fields) = &field.kind {
        for inner in fields {
            pointers_of(inner, pointers);
        }
    }
}

#[cfg(test)]
#[path = "form_tests.rs"]
mod tests;
