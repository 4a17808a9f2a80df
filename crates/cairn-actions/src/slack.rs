//! Slack: post a message (`chat.postMessage`) and list channels (`conversations.list`) with a
//! bot token. Slack answers most failures with HTTP 200, `ok: false` and an error code; the
//! codes are mapped to fatal or retryable by `refused` (table: docs/integrations.md).

use std::sync::LazyLock;

use cairn_engine::{Action, ActionCtx, Credential, Field, Registry};
use reqwest::{Method, header::CONTENT_TYPE};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    ACTION_TIMEOUT, LONG_ACTION_TIMEOUT, config, retry_policy,
    transport::{Failure, Retry, endpoint, excerpt, retry_after, send},
};

/// The service's name in messages.
const SERVICE: &str = "Slack";
/// Channels asked for per `conversations.list` page (Slack recommends at most 200).
const PAGE_SIZE: u32 = 200;
/// Pages one listing reads at most (Slack may answer short pages with a cursor).
const MAX_PAGES: usize = 50;

// --- Credential -------------------------------------------------------------------------

/// A Slack app's bot token: `credentials set slack --field botToken=@env:SLACK_BOT_TOKEN`.
pub static SLACK: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("slack")
        .description(
            "A Slack app's bot token, with the scopes chat:write (to post) and channels:read, \
             groups:read (to list channels)",
        )
        .field(
            "botToken",
            Field::secret().description("The bot user OAuth token (xoxb-…)"),
        )
});

// --- Inputs and outputs -----------------------------------------------------------------

/// A message to post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SendMessage {
    /// The channel: an id (`C0123456789`), a name (`#general`), or a user id for a direct
    /// message.
    #[schemars(length(min = 1))]
    pub channel: String,
    /// The message in Markdown (sent as Slack's `markdown_text`), up to 12,000 characters.
    #[schemars(length(min = 1, max = 12000))]
    pub markdown_text: String,
    /// Reply in a thread: the `ts` of the thread's parent message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

/// The message posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SentMessage {
    /// The channel's id.
    pub channel: String,
    /// The message's timestamp: its id within the channel (reply to it with `thread_ts`).
    pub ts: String,
}

/// A kind of conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// A public channel.
    PublicChannel,
    /// A private channel the bot is in.
    PrivateChannel,
    /// A group direct message.
    Mpim,
    /// A direct message.
    Im,
}

impl ChannelType {
    fn as_str(self) -> &'static str {
        match self {
            ChannelType::PublicChannel => "public_channel",
            ChannelType::PrivateChannel => "private_channel",
            ChannelType::Mpim => "mpim",
            ChannelType::Im => "im",
        }
    }
}

/// Which channels to list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListChannels {
    /// The kinds of conversation to list (default: public channels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<ChannelType>,
    /// Leave out archived channels (default: true).
    #[serde(default = "yes")]
    pub exclude_archived: bool,
    /// The most channels to return, over as many pages as needed (1 to 1,000; default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// Go on from an earlier listing's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl Default for ListChannels {
    fn default() -> Self {
        ListChannels {
            types: Vec::new(),
            exclude_archived: true,
            limit: None,
            cursor: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// One channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Channel {
    /// Its id (`C0123456789`).
    pub id: String,
    /// Its name, without `#` (empty for direct messages).
    #[serde(default)]
    pub name: String,
    /// Whether it is private.
    #[serde(default)]
    pub is_private: bool,
    /// Whether it is archived.
    #[serde(default)]
    pub is_archived: bool,
    /// Whether the bot is a member (it can post there).
    #[serde(default)]
    pub is_member: bool,
    /// How many members it has, when Slack says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_members: Option<u64>,
}

/// The channels listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Channels {
    /// The channels, in Slack's order.
    pub channels: Vec<Channel>,
    /// Set when there are more: pass it as `cursor` to go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// --- Actions ----------------------------------------------------------------------------

/// Posts a message to a channel (`chat.postMessage`). Credential: [`SLACK`].
pub static SEND_MESSAGE: LazyLock<Action<SendMessage, SentMessage>> = LazyLock::new(|| {
    Action::new("slack-send-message")
        .name("Send a Slack message")
        .description("Post a Markdown message to a Slack channel, or reply in a thread")
        .credential(&SLACK)
        .timeout(ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: SendMessage, ctx: ActionCtx| async move {
            send_message(input, &ctx)
                .await
                .map_err(Failure::into_action)
        })
});

/// Lists channels (`conversations.list`), following Slack's cursor up to a limit.
/// Credential: [`SLACK`].
pub static LIST_CHANNELS: LazyLock<Action<ListChannels, Channels>> = LazyLock::new(|| {
    Action::new("slack-list-channels")
        .name("List Slack channels")
        .description("List the workspace's channels the bot can see, up to a limit")
        .credential(&SLACK)
        .timeout(LONG_ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: ListChannels, ctx: ActionCtx| async move {
            list_channels(input, &ctx)
                .await
                .map_err(Failure::into_action)
        })
});

/// Registers Slack's actions (and so its credential type).
pub fn register(registry: Registry) -> Registry {
    registry.action(&SEND_MESSAGE).action(&LIST_CHANNELS)
}

async fn send_message(input: SendMessage, ctx: &ActionCtx) -> Result<SentMessage, Failure> {
    let body = serde_json::to_vec(&input).map_err(|err| Failure::Invalid(err.to_string()))?;
    call(ctx, Method::POST, "chat.postMessage", &[], Some(body)).await
}

async fn list_channels(input: ListChannels, ctx: &ActionCtx) -> Result<Channels, Failure> {
    let limit = input.limit.unwrap_or(PAGE_SIZE) as usize;
    let types = if input.types.is_empty() {
        ChannelType::PublicChannel.as_str().to_owned()
    } else {
        let names: Vec<&str> = input.types.iter().map(|t| t.as_str()).collect();
        names.join(",")
    };
    let mut listed = Channels {
        channels: Vec::new(),
        next_cursor: input.cursor,
    };
    for _ in 0..MAX_PAGES {
        let want = (limit - listed.channels.len()).min(PAGE_SIZE as usize);
        let mut query = vec![
            ("types", types.clone()),
            ("exclude_archived", input.exclude_archived.to_string()),
            ("limit", want.to_string()),
        ];
        if let Some(cursor) = listed.next_cursor.take() {
            query.push(("cursor", cursor));
        }
        let page: Page = call(ctx, Method::GET, "conversations.list", &query, None).await?;
        listed.channels.extend(page.channels.into_iter().take(want));
        listed.next_cursor = page
            .response_metadata
            .map(|meta| meta.next_cursor)
            .filter(|cursor| !cursor.is_empty());
        if listed.next_cursor.is_none() || listed.channels.len() >= limit {
            break;
        }
    }
    Ok(listed)
}

/// One page of `conversations.list`.
#[derive(Deserialize)]
struct Page {
    channels: Vec<Channel>,
    #[serde(default)]
    response_metadata: Option<PageMeta>,
}

#[derive(Deserialize)]
struct PageMeta {
    #[serde(default)]
    next_cursor: String,
}

/// What every Slack answer has: `ok`, and `error` when it is false.
#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Calls the Web API method `operation` with the bot token: a JSON `body`, or a `query`.
async fn call<T: DeserializeOwned>(
    ctx: &ActionCtx,
    method: Method,
    operation: &'static str,
    query: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<T, Failure> {
    let config = config::of(ctx)?;
    let token = ctx.credential(&SLACK)?.field("botToken")?;
    let mut url = endpoint(&config.slack_base_url, &[operation]);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut request = config
        .client
        .request(method, url)
        .bearer_auth(token.expose());
    if let Some(body) = body {
        request = request
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body);
    }
    let reply = send(ctx, &config, SERVICE, request).await?;
    if !reply.status.is_success() {
        let detail = match reply.json::<Envelope>(SERVICE) {
            Ok(Envelope {
                error: Some(code), ..
            }) => format!("error {code:?}"),
            _ => excerpt(&reply.body),
        };
        return Err(reply.status_failure(SERVICE, detail));
    }
    let envelope: Envelope = reply.json(SERVICE)?;
    if !envelope.ok {
        let code = envelope.error.unwrap_or_else(|| "unknown_error".to_owned());
        return Err(refused(operation, code, retry_after(&reply.headers)));
    }
    serde_json::from_value(Value::Object(envelope.rest)).map_err(|err| Failure::Unexpected {
        service: SERVICE,
        target: reply.target.clone(),
        reason: err.to_string(),
    })
}

// --- Error mapping ----------------------------------------------------------------------

/// Slack's error `code` for `operation`: retryable for rate limits and Slack's own trouble
/// (after `retry_after` if it said), fatal otherwise, with what to do for the usual ones.
fn refused(
    operation: &'static str,
    code: String,
    retry_after: Option<std::time::Duration>,
) -> Failure {
    const CHECK_TOKEN: &str = "; check the `slack` credential's botToken (a bot token, xoxb-…): \
         `credentials set slack --field botToken=@env:SLACK_BOT_TOKEN`";
    let (retry, hint) = match code.as_str() {
        "ratelimited" | "rate_limited" => {
            (Retry::After(retry_after), "; retried after Slack's delay")
        }
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => (
            Retry::After(retry_after),
            "; Slack had trouble of its own, the step is retried",
        ),
        "invalid_auth"
        | "not_authed"
        | "account_inactive"
        | "token_revoked"
        | "token_expired"
        | "not_allowed_token_type" => (Retry::Never, CHECK_TOKEN),
        "missing_scope" => (
            Retry::Never,
            "; add the scope to the Slack app (chat:write to post; channels:read, groups:read to \
             list) and reinstall it",
        ),
        "channel_not_found" => (
            Retry::Never,
            "; check the channel's id or name, and that the bot can see the channel",
        ),
        "not_in_channel" => (
            Retry::Never,
            "; invite the bot to the channel (`/invite @bot`) or give the app chat:write.public",
        ),
        "is_archived" => (Retry::Never, "; the channel is archived"),
        "msg_too_long" => (
            Retry::Never,
            "; shorten the message (markdown_text takes up to 12,000 characters)",
        ),
        "no_text" => (Retry::Never, "; give the message some text"),
        _ => (Retry::Never, ""),
    };
    Failure::Refused {
        service: SERVICE,
        operation,
        reason: format!("error {code:?}"),
        hint: hint.to_owned(),
        retry,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn error_codes_map_to_fatal_or_retryable() {
        let error = refused("chat.postMessage", "channel_not_found".into(), None).into_action();
        assert!(!error.is_retryable());
        assert!(
            error
                .message()
                .starts_with("Slack refused chat.postMessage: error \"channel_not_found\"; check"),
            "{}",
            error.message()
        );
        let limited = refused(
            "chat.postMessage",
            "ratelimited".into(),
            Some(Duration::from_secs(3)),
        );
        let limited = limited.into_action();
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_delay(), Some(Duration::from_secs(3)));
        for fatal in [
            "invalid_auth",
            "not_authed",
            "account_inactive",
            "msg_too_long",
            "no_text",
            "something_new",
        ] {
            assert!(
                !refused("x", fatal.into(), None)
                    .into_action()
                    .is_retryable(),
                "{fatal}"
            );
        }
        assert!(
            refused("x", "internal_error".into(), None)
                .into_action()
                .is_retryable()
        );
    }
}
