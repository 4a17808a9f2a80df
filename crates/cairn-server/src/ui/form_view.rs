//! A generated form as the rows its template renders (`templates/form_fields.html`): the
//! fields flattened in order, nested objects opening and closing fieldsets, each control
//! with its id, label, help and error (linked by `aria-describedby`) and its shown value.

use super::form::{Field, Form, Kind};

/// One control's common parts.
pub(crate) struct Control {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) help: String,
    pub(crate) required: bool,
    pub(crate) error: Option<String>,
    /// The ids `aria-describedby` names (help, error), space-separated.
    pub(crate) described_by: String,
}

/// One row of a rendered form.
pub(crate) enum Row {
    /// A nested object's fieldset begins.
    Open { legend: String, help: String },
    /// The innermost open fieldset ends.
    Close,
    /// A one-line input (`kind`: its HTML type).
    Input {
        control: Control,
        kind: &'static str,
        value: String,
        min: Option<String>,
        max: Option<String>,
        step: &'static str,
    },
    /// A checkbox.
    Checkbox { control: Control, checked: bool },
    /// A select: each option and whether it is chosen.
    Select {
        control: Control,
        options: Vec<(String, bool)>,
    },
    /// One input per item, and an empty one to add an item.
    List {
        control: Control,
        kind: &'static str,
        /// Items are numbers (any step).
        number: bool,
        values: Vec<String>,
    },
    /// A JSON textarea.
    Json { control: Control, value: String },
}

/// The rows of `form`.
pub(crate) fn rows(form: &Form) -> Vec<Row> {
    let mut rows = Vec::new();
    for field in &form.fields {
        push(field, form, &mut rows);
    }
    rows
}

fn push(field: &Field, form: &Form, rows: &mut Vec<Row>) {
    let shown = form.values.get(&field.name());
    let first = shown
        .and_then(|values| values.first())
        .cloned()
        .unwrap_or_default();
    let control = control(field, form);
    let row = match &field.kind {
        Kind::Object(fields) => {
            rows.push(Row::Open {
                legend: field.label.clone(),
                help: field.help.clone(),
            });
            for inner in fields {
                push(inner, form, rows);
            }
            Row::Close
        }
        Kind::Text(kind) => Row::Input {
            control,
            kind,
            value: first,
            min: None,
            max: None,
            step: "",
        },
        Kind::Number { integer, min, max } => Row::Input {
            control,
            kind: "number",
            value: first,
            min: min.clone(),
            max: max.clone(),
            step: if *integer { "1" } else { "any" },
        },
        Kind::Boolean => Row::Checkbox {
            control,
            checked: first == "true",
        },
        Kind::Choice(choices) => Row::Select {
            options: choices
                .iter()
                .map(|choice| (choice.clone(), *choice == first))
                .collect(),
            control,
        },
        Kind::List(kind) => Row::List {
            control,
            kind,
            number: *kind == "number",
            values: shown.cloned().unwrap_or_default(),
        },
        Kind::Json => Row::Json {
            control,
            value: first,
        },
    };
    rows.push(row);
}

fn control(field: &Field, form: &Form) -> Control {
    let id: String = format!("in{}", field.pointer)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let help = !field.help.is_empty();
    let error = form.errors.get(&field.pointer).cloned();
    let described_by = [
        help.then(|| format!("{id}-help")),
        error.as_ref().map(|_| format!("{id}-error")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    Control {
        name: field.name(),
        label: field.label.clone(),
        help: field.help.clone(),
        required: field.required,
        error,
        described_by,
        id,
    }
}
