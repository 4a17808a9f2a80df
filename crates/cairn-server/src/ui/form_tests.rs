//! Forms from schemas as schemars writes them: every kind of field, values read back into
//! the JSON the schema describes, what cannot be read named per field, violations put on the
//! fields their paths name, and a run's input shown again.

use serde_json::json;

use super::*;

/// A schema like schemars' for a struct with a nested struct, an enum, a list and an option.
fn signup() -> Value {
    json!({
        "type": "object",
        "required": ["email", "age", "plan", "address", "tags", "admin"],
        "properties": {
            "email": {"type": "string", "format": "email", "description": "Where we write"},
            "age": {"type": "integer", "minimum": 18, "maximum": 130},
            "score": {"type": ["number", "null"]},
            "plan": {"$ref": "#/$defs/Plan"},
            "address": {"$ref": "#/$defs/Address"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "admin": {"type": "boolean"},
            "extra": {"type": "array", "items": {"type": "object"}},
            "note": {"anyOf": [{"$ref": "#/$defs/Note"}, {"type": "null"}]}
        },
        "$defs": {
            "Plan": {"type": "string", "enum": ["free", "pro"]},
            "Address": {
                "type": "object",
                "required": ["city"],
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}
            },
            "Note": {"type": "string"}
        }
    })
}

fn kinds(form: &Form) -> Vec<(String, Kind, bool)> {
    form.fields
        .iter()
        .map(|field| (field.pointer.clone(), field.kind.clone(), field.required))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn each_schema_kind_makes_its_field() {
    let form = Form::of(&signup());
    let address = Kind::Object(vec![
        Field {
            pointer: "/address/city".into(),
            label: "city".into(),
            help: String::new(),
            required: true,
            kind: Kind::Text("text"),
        },
        Field {
            pointer: "/address/zip".into(),
            label: "zip".into(),
            help: String::new(),
            required: false,
            kind: Kind::Text("text"),
        },
    ]);
    let number = |integer, min: Option<&str>, max: Option<&str>| Kind::Number {
        integer,
        min: min.map(str::to_owned),
        max: max.map(str::to_owned),
    };
    assert_eq!(
        kinds(&form),
        vec![
            ("/address".into(), address, true),
            ("/admin".into(), Kind::Boolean, true),
            ("/age".into(), number(true, Some("18"), Some("130")), true),
            ("/email".into(), Kind::Text("email"), true),
            ("/extra".into(), Kind::Json, false),
            ("/note".into(), Kind::Text("text"), false),
            (
                "/plan".into(),
                Kind::Choice(vec!["free".into(), "pro".into()]),
                true
            ),
            ("/score".into(), number(false, None, None), false),
            ("/tags".into(), Kind::List("text"), true),
        ]
    );
    assert_eq!(form.fields[3].help, "Where we write");
}

#[test]
fn posted_values_are_read_into_the_schemas_json() {
    let posted = pairs(&[
        ("f/email", "ada@example.com"),
        ("f/age", "36"),
        ("f/score", "9.5"),
        ("f/plan", "pro"),
        ("f/address/city", "London"),
        ("f/address/zip", ""),
        ("f/tags", "math"),
        ("f/tags", ""),
        ("f/tags", "engines"),
        ("f/admin", "true"),
        ("f/extra", r#"[{"a": 1}]"#),
        ("f/note", ""),
        ("csrf", "ignored"),
    ]);
    let value = Form::of(&signup()).read(&posted).expect("readable");
    assert_eq!(
        value,
        json!({
            "email": "ada@example.com",
            "age": 36,
            "score": 9.5,
            "plan": "pro",
            "address": {"city": "London"},
            "tags": ["math", "engines"],
            "admin": true,
            "extra": [{"a": 1}]
        })
    );
    let unchecked = Form::of(&signup())
        .read(&pairs(&[("f/age", "40")]))
        .expect("readable");
    assert_eq!(
        unchecked["admin"],
        json!(false),
        "a required box left unticked"
    );
    assert_eq!(unchecked["tags"], json!([]), "a required list left empty");
}

#[test]
fn what_cannot_be_read_is_said_per_field_and_kept() {
    let posted = pairs(&[("f/age", "thirty"), ("f/extra", "[1,"), ("f/email", "a@b")]);
    let form = Form::of(&signup()).read(&posted).expect_err("unreadable");
    assert_eq!(form.errors["/age"], "must be a whole number");
    assert!(
        form.errors["/extra"].starts_with("not valid JSON"),
        "{:?}",
        form.errors
    );
    assert_eq!(form.errors.len(), 2);
    assert_eq!(
        form.values["f/age"],
        vec!["thirty"],
        "the user's text is kept"
    );
}

#[test]
fn violations_go_to_the_field_their_path_names() {
    let form = Form::of(&signup()).attach([
        ("/address/city".to_owned(), "too short".to_owned()),
        ("/extra/0/a".to_owned(), "not a string".to_owned()),
        (String::new(), "\"email\" is a required property".to_owned()),
    ]);
    assert_eq!(form.errors["/address/city"], "too short");
    assert_eq!(
        form.errors["/extra"], "not a string",
        "inside the JSON field"
    );
    assert_eq!(form.general.len(), 1, "the root's violation has no field");
}

#[test]
fn a_runs_input_is_shown_again() {
    let input = json!({
        "email": "ada@example.com",
        "age": 36,
        "plan": "free",
        "address": {"city": "London"},
        "tags": ["math", "engines"],
        "admin": true,
        "extra": [{"a": 1}],
        "note": null
    });
    let form = Form::of(&signup()).filled(&input);
    assert_eq!(form.values["f/address/city"], vec!["London"]);
    assert_eq!(form.values["f/tags"], vec!["math", "engines"]);
    assert_eq!(form.values["f/admin"], vec!["true"]);
    assert_eq!(form.values["f/age"], vec!["36"]);
    assert!(form.values["f/extra"][0].contains("\"a\": 1"));
    assert!(!form.values.contains_key("f/note"));
    // Read back, the shown values are the input (minus the null).
    let posted: Vec<(String, String)> = form
        .values
        .iter()
        .flat_map(|(name, texts)| texts.iter().map(move |text| (name.clone(), text.clone())))
        .collect();
    let mut expected = input.clone();
    expected.as_object_mut().unwrap().remove("note");
    assert_eq!(
        Form::of(&signup()).read(&posted).expect("readable"),
        expected
    );
}

#[test]
fn a_schema_that_is_not_an_object_is_one_json_field() {
    let form = Form::of(&json!({"type": "array", "items": {"type": "object"}}));
    assert_eq!(form.fields.len(), 1);
    assert_eq!(form.fields[0].name(), "f");
    let value = form
        .read(&pairs(&[("f", r#"[{"x": true}]"#)]))
        .expect("readable");
    assert_eq!(value, json!([{"x": true}]));
}
