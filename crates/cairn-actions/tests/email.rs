//! The email action runs as a step of a real workflow against an SMTP sink on loopback: the
//! login, the envelope and the message as sent; a refused login fails the step at once; no
//! connection without a credential; an unreachable server is retried.

mod support;

use cairn_actions::email::{SEND, SendEmail, SentEmail};
use cairn_core::{ErrorKind, StepStatus};
use support::{Env, calling, config, env, failed_at_once, only_step, output, smtp::Sink};

const USER: &str = "mailer@example.com";
const PASSWORD: &str = "hunter2-smtp";

fn email() -> SendEmail {
    SendEmail {
        to: vec!["Ada Lovelace <ada@example.org>".into()],
        cc: vec!["ops@example.org".into()],
        bcc: Vec::new(),
        from: None,
        reply_to: None,
        subject: "Weekly report".into(),
        text: "All systems nominal.".into(),
        html: None,
    }
}

async fn email_env(
    sink: &Sink,
    password: &str,
) -> (Env, cairn_engine::Workflow<SendEmail, SentEmail>) {
    let workflow = calling("mail", &SEND);
    let env = env(&workflow, config());
    let port = sink.addr.port().to_string();
    env.set_credential(
        "smtp",
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("tls", "none"),
            ("username", USER),
            ("password", password),
            ("from", "Cairn Reports <reports@example.com>"),
        ],
    )
    .await;
    (env, workflow)
}

#[tokio::test]
async fn an_email_is_sent_with_the_login_and_recorded_by_the_server() {
    let sink = Sink::start(USER, PASSWORD).await;
    let (env, workflow) = email_env(&sink, PASSWORD).await;

    let detail = env.run(&workflow, &email()).await;

    let sent: SentEmail = output(&detail);
    let received = sink.received();
    assert_eq!(received.logins, [(USER.to_owned(), PASSWORD.to_owned())]);
    assert_eq!(received.messages.len(), 1);
    let mail = &received.messages[0];
    assert_eq!(mail.from, "reports@example.com");
    assert_eq!(mail.to, ["ada@example.org", "ops@example.org"]);
    let data = &mail.data;
    for expected in [
        "Subject: Weekly report\r\n",
        "From: \"Cairn Reports\" <reports@example.com>\r\n",
        "To: \"Ada Lovelace\" <ada@example.org>\r\n",
        "Cc: ops@example.org\r\n",
        &format!("Message-ID: {}\r\n", sent.message_id),
        "\r\n\r\nAll systems nominal.\r\n",
    ] {
        assert!(data.contains(expected), "{expected:?} is not in:\n{data}");
    }
    // Derived from the step's idempotency key: the same for every attempt of the step.
    let run_id = detail.run.run_id.to_string();
    assert_eq!(
        sent.message_id,
        format!("<{run_id}.email-send#0@example.com>")
    );
    let recorded = serde_json::to_string(&detail.events).unwrap();
    assert!(
        !recorded.contains(PASSWORD),
        "the password is in the run's log"
    );
}

#[tokio::test]
async fn an_html_alternative_is_sent_beside_the_text() {
    let sink = Sink::start(USER, PASSWORD).await;
    let (env, workflow) = email_env(&sink, PASSWORD).await;
    let input = SendEmail {
        html: Some("<p>All systems <b>nominal</b>.</p>".into()),
        from: Some("alerts@example.net".into()),
        ..email()
    };

    let _: SentEmail = output(&env.run(&workflow, &input).await);

    let data = &sink.received().messages[0].data;
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("<p>All systems <b>nominal</b>.</p>"),
        "{data}"
    );
    assert!(data.contains("All systems nominal."), "{data}");
    assert!(data.contains("From: alerts@example.net\r\n"), "{data}");
}

#[tokio::test]
async fn a_refused_login_fails_the_step_at_once() {
    let sink = Sink::start(USER, PASSWORD).await;
    let (env, workflow) = email_env(&sink, "wrong-password").await;

    let detail = env.run(&workflow, &email()).await;

    let error = failed_at_once(&detail);
    assert!(
        error.message.contains("535")
            && error.message.contains("refused the login")
            && error.message.contains("username and password"),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains("wrong-password"),
        "{}",
        error.message
    );
    let received = sink.received();
    assert_eq!(
        received.logins,
        [(USER.to_owned(), "wrong-password".to_owned())]
    );
    assert!(received.messages.is_empty());
}

#[tokio::test]
async fn a_bad_address_fails_the_step_at_once() {
    let sink = Sink::start(USER, PASSWORD).await;
    let (env, workflow) = email_env(&sink, PASSWORD).await;
    let input = SendEmail {
        to: vec!["not an address".into()],
        ..email()
    };

    let detail = env.run(&workflow, &input).await;

    let error = failed_at_once(&detail);
    assert!(
        error.message.contains("to \"not an address\""),
        "{}",
        error.message
    );
    assert_eq!(sink.received().connections, 0);
}

#[tokio::test]
async fn without_a_credential_the_step_fails_with_missing_credentials_and_connects_nowhere() {
    let sink = Sink::start(USER, PASSWORD).await;
    let workflow = calling("mail", &SEND);
    let env = env(&workflow, config());

    let detail = env.run(&workflow, &email()).await;

    let error = failed_at_once(&detail);
    assert_eq!(
        error.kind,
        ErrorKind::MissingCredentials,
        "{}",
        error.message
    );
    assert!(error.message.contains("smtp"), "{}", error.message);
    assert_eq!(sink.received().connections, 0);
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let workflow = calling("mail", &SEND);
    let env = env(&workflow, config());
    env.set_credential(
        "smtp",
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("tls", "none"),
            ("from", "a@example.com"),
        ],
    )
    .await;

    let detail = env.run(&workflow, &email()).await;

    let step = only_step(&detail);
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 5));
    let error = step.error.as_ref().expect("an error");
    assert!(error.retryable, "{}", error.message);
    assert!(
        error.message.contains("could not be reached"),
        "{}",
        error.message
    );
}
