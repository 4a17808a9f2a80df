//! A command's JSON argument (`run --input`, `hooks resume --payload`, `schedules create
//! --input`): the JSON itself,
//! `@path` to read a file, or `-` to read stdin. An operating system caps one argument near
//! 128 KiB, and payloads may be as large as the payload limit (1 MiB by default). The argument
//! is read and parsed before the store is opened, so bad input changes nothing.

use std::io::Read;

use serde_json::Value;

use super::{
    CliError,
    args::{Command, HooksCommand, SchedulesCommand},
};

/// The command's JSON argument, read and parsed; `Null` for a command without one.
pub(crate) fn read(command: &Command) -> Result<Value, CliError> {
    match command {
        Command::Run(args) => parse("--input", &args.input),
        Command::Hooks(HooksCommand::Resume { payload, .. }) => parse("--payload", payload),
        Command::Schedules(SchedulesCommand::Create(args)) => parse("--input", &args.input),
        _ => Ok(Value::Null),
    }
}

/// Where an argument's JSON text came from, for messages.
enum Source<'a> {
    Inline,
    File(&'a str),
    Stdin,
}

fn parse(option: &str, argument: &str) -> Result<Value, CliError> {
    let (source, text) = text_of(option, argument)?;
    serde_json::from_str(&text).map_err(|err| {
        CliError::Usage(match source {
            Source::Inline => format!(
                "{option} is not valid JSON ({err}); pass an object such as '{{\"name\": \"Ada\"}}', \
                 @file.json to read a file, or - to read stdin"
            ),
            Source::File(path) => format!("{option} file {path} is not valid JSON ({err})"),
            Source::Stdin => format!("{option} read from stdin is not valid JSON ({err})"),
        })
    })
}

/// The JSON text an argument stands for, and where it came from.
fn text_of<'a>(option: &str, argument: &'a str) -> Result<(Source<'a>, String), CliError> {
    if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| CliError::Usage(format!("cannot read {option} from stdin: {err}")))?;
        return Ok((Source::Stdin, text));
    }
    let Some(path) = argument.strip_prefix('@') else {
        return Ok((Source::Inline, argument.to_owned()));
    };
    if path.is_empty() {
        return Err(CliError::Usage(format!(
            "{option} @ needs a file's path after the @ (e.g. {option} @input.json)"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::Usage(format!(
            "cannot read {option} file {path}: {err}; after @ give the path of a readable JSON \
             file, or pass - to read stdin"
        ))
    })?;
    Ok((Source::File(path), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(result: Result<Value, CliError>) -> String {
        match result {
            Err(CliError::Usage(message)) => message,
            other => panic!("a usage error, not {other:?}"),
        }
    }

    #[test]
    fn inline_text_and_files_are_parsed() {
        assert_eq!(
            parse("--input", r#"{"a":1}"#).expect("inline"),
            serde_json::json!({"a": 1})
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("input.json");
        std::fs::write(&file, "{\"a\": [1, 2]}\n").expect("write");
        let argument = format!("@{}", file.display());
        assert_eq!(
            parse("--input", &argument).expect("file"),
            serde_json::json!({"a": [1, 2]})
        );
    }

    #[test]
    fn unreadable_files_and_bad_json_say_what_and_where() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.json");
        let message = usage(parse("--payload", &format!("@{}", missing.display())));
        assert!(
            message.contains("cannot read --payload file") && message.contains("missing.json"),
            "{message}"
        );
        let message = usage(parse("--input", "@"));
        assert!(message.contains("needs a file's path"), "{message}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{nope").expect("write");
        let message = usage(parse("--input", &format!("@{}", bad.display())));
        assert!(message.contains("bad.json is not valid JSON"), "{message}");
        let message = usage(parse("--input", "{nope"));
        assert!(message.contains("@file.json"), "{message}");
    }
}
