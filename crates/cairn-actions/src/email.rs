//! Email over SMTP (lettre): a text message, optionally with an HTML alternative, sent through
//! the server an `smtp` credential names. The `Message-ID` is derived from the step's
//! idempotency key, so every attempt of a step sends the same one (receivers can drop a
//! duplicate).

use std::{sync::LazyLock, time::Duration};

use cairn_engine::{Action, ActionCtx, Credential, Field, Registry, ResolvedCredential};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart},
    transport::smtp::{
        self,
        authentication::{Credentials, Mechanism},
        client::{Tls, TlsParameters},
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    ACTION_TIMEOUT, config, retry_policy,
    transport::{Failure, Retry, chain},
};

/// The service's name in messages.
const SERVICE: &str = "the SMTP server";

// --- Credential -------------------------------------------------------------------------

/// An SMTP server and the login to it:
/// `credentials set smtp --field host=smtp.example.com --field username=… --field password=@env:SMTP_PASSWORD`.
pub static SMTP: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("smtp")
        .description("An SMTP server to send email through, and the login to it")
        .field("host", Field::text().description("The server's host name"))
        .field(
            "port",
            Field::text()
                .optional()
                .description("Its port (default: 587 with starttls, 465 with tls, 25 with none)"),
        )
        .field(
            "username",
            Field::text()
                .optional()
                .description("The login's user name (no login without it)"),
        )
        .field(
            "password",
            Field::secret()
                .optional()
                .description("The login's password"),
        )
        .field(
            "tls",
            Field::text().optional().description(
                "starttls (the default: plain, then upgraded, required), tls (TLS from the \
                 start) or none (plain text: trusted local relays only)",
            ),
        )
        .field(
            "from",
            Field::text()
                .optional()
                .description("The default sender: `address` or `Name <address>`"),
        )
});

// --- Inputs and outputs -----------------------------------------------------------------

/// An email to send. Addresses are `user@example.com` or `Name <user@example.com>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SendEmail {
    /// The recipients (at least one).
    #[schemars(length(min = 1))]
    pub to: Vec<String>,
    /// Copied recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    /// Blind-copied recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
    /// The sender (default: the `smtp` credential's `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Where replies go, if not to the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The subject.
    pub subject: String,
    /// The body, as plain text.
    pub text: String,
    /// The body as HTML too: sent as an alternative to `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// The email sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SentEmail {
    /// Its `Message-ID` header, `<…@domain>` (put it in `In-Reply-To` to answer it).
    pub message_id: String,
}

// --- Actions ----------------------------------------------------------------------------

/// Sends an email through the `smtp` credential's server. Credential: [`SMTP`].
pub static SEND: LazyLock<Action<SendEmail, SentEmail>> = LazyLock::new(|| {
    Action::new("email-send")
        .name("Send an email")
        .description("Send an email (plain text, optionally with HTML) over SMTP")
        .credential(&SMTP)
        .timeout(ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: SendEmail, ctx: ActionCtx| async move {
            send(input, &ctx).await.map_err(Failure::into_action)
        })
});

/// Registers the email action (and so its credential type).
pub fn register(registry: Registry) -> Registry {
    registry.action(&SEND)
}

async fn send(input: SendEmail, ctx: &ActionCtx) -> Result<SentEmail, Failure> {
    let config = config::of(ctx)?;
    let credential = ctx.credential(&SMTP)?;
    let server = Server::of(credential)?;
    let from = input
        .from
        .as_deref()
        .or_else(|| credential.get("from").map(|from| from.expose()))
        .ok_or_else(|| {
            Failure::Invalid(
                "the email has no sender: give `from`, or set the `smtp` credential's from \
                 field"
                    .to_owned(),
            )
        })?;
    let from = mailbox("from", from)?;
    let message_id = message_id(ctx, &from);
    let mut builder = Message::builder()
        .from(from)
        .subject(input.subject)
        .message_id(Some(message_id.clone()));
    for to in &input.to {
        builder = builder.to(mailbox("to", to)?);
    }
    for cc in &input.cc {
        builder = builder.cc(mailbox("cc", cc)?);
    }
    for bcc in &input.bcc {
        builder = builder.bcc(mailbox("bcc", bcc)?);
    }
    if let Some(reply_to) = &input.reply_to {
        builder = builder.reply_to(mailbox("reply_to", reply_to)?);
    }
    let message = match input.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(input.text, html)),
        None => builder.singlepart(SinglePart::plain(input.text)),
    }
    .map_err(|err| Failure::Invalid(format!("the email cannot be built: {err}")))?;
    let transport = server.transport(config.smtp_timeout)?;
    let target = server.to_string();
    tokio::select! {
        biased;
        () = ctx.cancellation().cancelled() => {
            return Err(Failure::Canceled { service: SERVICE, target });
        }
        sent = transport.send(message) => {
            sent.map_err(|err| smtp_failure(&err, target, config.smtp_timeout))?;
        }
    }
    Ok(SentEmail { message_id })
}

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    None,
    StartTls,
    Tls,
}

/// Where to send and how to log in, from the credential.
struct Server<'a> {
    host: &'a str,
    port: u16,
    tls: TlsMode,
    login: Option<(&'a str, &'a str)>,
}

impl<'a> Server<'a> {
    fn of(credential: &'a ResolvedCredential) -> Result<Server<'a>, Failure> {
        let bad = |field: &str, why: &str| {
            Failure::Invalid(format!(
                "the `smtp` credential {}'s {field} {why}; set it again with `credentials set \
                 smtp --field {field}=…`",
                credential.id()
            ))
        };
        let host = credential.field("host")?.expose();
        let tls = match credential
            .get("tls")
            .map(|tls| tls.expose().to_ascii_lowercase())
        {
            None => TlsMode::StartTls,
            Some(mode) => match mode.as_str() {
                "starttls" => TlsMode::StartTls,
                "tls" => TlsMode::Tls,
                "none" => TlsMode::None,
                _ => return Err(bad("tls", "is not none, starttls or tls")),
            },
        };
        let port = match credential.get("port") {
            None => match tls {
                TlsMode::StartTls => 587,
                TlsMode::Tls => 465,
                TlsMode::None => 25,
            },
            Some(port) => port
                .expose()
                .trim()
                .parse()
                .map_err(|_| bad("port", "is not a port number"))?,
        };
        let login = match (credential.get("username"), credential.get("password")) {
            (Some(user), Some(password)) => Some((user.expose(), password.expose())),
            (None, None) => None,
            (Some(_), None) => return Err(bad("password", "is missing (a username is set)")),
            (None, Some(_)) => return Err(bad("username", "is missing (a password is set)")),
        };
        Ok(Server {
            host,
            port,
            tls,
            login,
        })
    }

    fn transport(&self, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, Failure> {
        crate::config::install_crypto_provider();
        let parameters = || {
            TlsParameters::new(self.host.to_owned()).map_err(|err| {
                Failure::Invalid(format!("TLS to {self} cannot be set up: {}", chain(&err)))
            })
        };
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(parameters()?),
            TlsMode::Tls => Tls::Wrapper(parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = self.login {
            builder = builder
                .credentials(Credentials::new(user.to_owned(), password.to_owned()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(builder.build())
    }
}

impl std::fmt::Display for Server<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.tls {
            TlsMode::None => "no TLS",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::Tls => "TLS",
        };
        write!(f, "{}:{} with {mode}", self.host, self.port)
    }
}

fn mailbox(field: &str, address: &str) -> Result<Mailbox, Failure> {
    address.parse().map_err(|err| {
        Failure::Invalid(format!(
            "{field} {address:?} is not an email address ({err}); write `user@example.com` or \
             `Name <user@example.com>`"
        ))
    })
}

/// `<run-id.step-key@sender's domain>`: the same for every attempt of the step.
fn message_id(ctx: &ActionCtx, from: &Mailbox) -> String {
    let key: String = ctx
        .idempotency_key()
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '#' | '.' => c,
            _ => '.',
        })
        .collect();
    format!("<{key}@{}>", from.email.domain())
}

// --- Error mapping ----------------------------------------------------------------------

/// SMTP reply codes that refuse the login.
const LOGIN_REFUSED: [&str; 4] = ["530", "534", "535", "538"];

/// A failed send: the server's 5xx replies (a refused login, a refused recipient) and TLS
/// failures are fatal; 4xx replies, timeouts and dropped connections are retried.
fn smtp_failure(err: &smtp::Error, target: String, timeout: Duration) -> Failure {
    let reason = chain(err);
    if err.is_timeout() {
        return Failure::TimedOut {
            service: SERVICE,
            target,
            after: timeout,
            setting: "cairn_actions::Config::smtp_timeout",
        };
    }
    let code = err
        .status()
        .map(|code| code.to_string())
        .unwrap_or_default();
    let refused = |operation: &'static str, hint: &str, retry: Retry| Failure::Refused {
        service: SERVICE,
        operation,
        reason: format!("{reason} ({target})"),
        hint: hint.to_owned(),
        retry,
    };
    if LOGIN_REFUSED.contains(&code.as_str()) {
        refused(
            "the login",
            "; check the `smtp` credential's username and password",
            Retry::Never,
        )
    } else if err.is_permanent() {
        refused("the email", "", Retry::Never)
    } else if err.is_transient() {
        refused(
            "the email for now",
            "; the step is retried",
            Retry::After(None),
        )
    } else if err.is_tls() {
        refused(
            "TLS",
            "; check the `smtp` credential's tls mode (none, starttls, tls) and port",
            Retry::Never,
        )
    } else if err.is_client() {
        Failure::Invalid(format!(
            "the SMTP exchange with {target} cannot go on: {reason} (a server that offers no \
             AUTH PLAIN or LOGIN may need tls=starttls first)"
        ))
    } else {
        Failure::Unreachable {
            service: SERVICE,
            target,
            reason,
        }
    }
}
