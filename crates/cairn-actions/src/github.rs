//! GitHub's REST API: create an issue, comment on an issue or pull request, with a token.
//! Rate limits (403 or 429 with `x-ratelimit-remaining: 0` or `Retry-After`) are retried when
//! GitHub says; other 4xx are fatal with GitHub's own message.

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn_engine::{Action, ActionCtx, Credential, Field, Registry};
use reqwest::{
    StatusCode,
    header::{ACCEPT, HeaderMap},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    ACTION_TIMEOUT, config, retry_policy,
    transport::{Failure, MAX_RETRY_AFTER, Reply, Retry, endpoint, excerpt, retry_after, send},
};

/// The service's name in messages.
const SERVICE: &str = "GitHub";
/// The REST API version the actions are written against.
const API_VERSION: &str = "2022-11-28";
/// GitHub's advice when a secondary rate limit names no delay: wait at least a minute.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

// --- Credential -------------------------------------------------------------------------

/// A GitHub token: `credentials set github --field token=@env:GITHUB_TOKEN`.
pub static GITHUB: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("github")
        .description(
            "A GitHub token (fine-grained with Issues: write, a classic one with repo, or an \
             app installation token)",
        )
        .field(
            "token",
            Field::secret().description("The token, sent as `Authorization: Bearer <token>`"),
        )
});

// --- Inputs and outputs -----------------------------------------------------------------

/// An issue to open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateIssue {
    /// The repository's owner (a user or an organization).
    #[schemars(regex(pattern = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"))]
    pub owner: String,
    /// The repository's name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub repo: String,
    /// The title.
    #[schemars(length(min = 1))]
    pub title: String,
    /// The body, in GitHub Markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Labels to add (they must exist, or the token must be allowed to create them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Logins to assign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
}

/// The issue opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// Its number in the repository.
    pub number: u64,
    /// Its id across GitHub.
    pub id: u64,
    /// Its page (`https://github.com/OWNER/REPO/issues/N`).
    pub html_url: String,
}

/// A comment to add to an issue or a pull request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddComment {
    /// The repository's owner (a user or an organization).
    #[schemars(regex(pattern = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"))]
    pub owner: String,
    /// The repository's name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub repo: String,
    /// The issue's (or pull request's) number.
    #[schemars(range(min = 1))]
    pub issue_number: u64,
    /// The comment, in GitHub Markdown.
    #[schemars(length(min = 1))]
    pub body: String,
}

/// The comment added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    /// Its id.
    pub id: u64,
    /// Its place on the issue's page.
    pub html_url: String,
}

// --- Actions ----------------------------------------------------------------------------

/// Opens an issue (`POST /repos/{owner}/{repo}/issues`). Credential: [`GITHUB`].
pub static CREATE_ISSUE: LazyLock<Action<CreateIssue, Issue>> = LazyLock::new(|| {
    Action::new("github-create-issue")
        .name("Create a GitHub issue")
        .description("Open an issue in a GitHub repository, with labels and assignees")
        .credential(&GITHUB)
        .timeout(ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: CreateIssue, ctx: ActionCtx| async move {
            let path = ["repos", &input.owner, &input.repo, "issues"];
            let body = serde_json::json!({
                "title": input.title,
                "body": input.body,
                "labels": input.labels,
                "assignees": input.assignees,
            });
            post(&ctx, &path, body).await.map_err(Failure::into_action)
        })
});

/// Comments on an issue or a pull request
/// (`POST /repos/{owner}/{repo}/issues/{issue_number}/comments`). Credential: [`GITHUB`].
pub static ADD_COMMENT: LazyLock<Action<AddComment, Comment>> = LazyLock::new(|| {
    Action::new("github-add-comment")
        .name("Comment on a GitHub issue")
        .description("Add a comment to a GitHub issue or pull request")
        .credential(&GITHUB)
        .timeout(ACTION_TIMEOUT)
        .retry(retry_policy())
        .run(|input: AddComment, ctx: ActionCtx| async move {
            let number = input.issue_number.to_string();
            let path = [
                "repos",
                &input.owner,
                &input.repo,
                "issues",
                &number,
                "comments",
            ];
            let body = serde_json::json!({ "body": input.body });
            post(&ctx, &path, body).await.map_err(Failure::into_action)
        })
});

/// Registers GitHub's actions (and so its credential type).
pub fn register(registry: Registry) -> Registry {
    registry.action(&CREATE_ISSUE).action(&ADD_COMMENT)
}

/// POSTs `body` to the API path `path` with the token; the answer as `T`.
async fn post<T: DeserializeOwned>(
    ctx: &ActionCtx,
    path: &[&str],
    body: Value,
) -> Result<T, Failure> {
    let config = config::of(ctx)?;
    let token = ctx.credential(&GITHUB)?.field("token")?;
    let request = config
        .client
        .post(endpoint(&config.github_base_url, path))
        .bearer_auth(token.expose())
        .header(ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", API_VERSION)
        .json(&body);
    let reply = send(ctx, &config, SERVICE, request).await?;
    if !reply.status.is_success() {
        return Err(failure(&reply));
    }
    reply.json(SERVICE)
}

// --- Error mapping ----------------------------------------------------------------------

/// GitHub's error body: `{"message": …, "errors": [{…}], "documentation_url": …}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    errors: Vec<Value>,
}

/// A failed call: rate limits retried when GitHub says, 5xx retried, other 4xx fatal with
/// GitHub's message and a hint.
fn failure(reply: &Reply) -> Failure {
    let (message, details) = match reply.json::<ErrorBody>(SERVICE) {
        Ok(body) => (body.message, body.errors),
        Err(_) => (excerpt(&reply.body), Vec::new()),
    };
    let mut detail = message.clone();
    if !details.is_empty() {
        let details: Vec<String> = details.iter().map(Value::to_string).collect();
        detail.push_str(&format!(" ({})", details.join("; ")));
    }
    let status = reply.status;
    let limited = matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    );
    if limited && let Some(delay) = rate_limit_delay(&reply.headers, &message) {
        detail.push_str("; rate limited, retried when GitHub's limit resets");
        return Failure::Status {
            service: SERVICE,
            target: reply.target.clone(),
            status,
            detail,
            retry: Retry::After(Some(delay)),
        };
    }
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            "; check the `github` credential's token: `credentials set github --field \
             token=@env:GITHUB_TOKEN`"
        }
        StatusCode::FORBIDDEN => "; the token lacks a permission this needs (Issues: write)",
        StatusCode::NOT_FOUND => {
            "; check the owner, repository and number, and that the token can see the repository"
        }
        StatusCode::GONE => "; issues are turned off for this repository",
        StatusCode::UNPROCESSABLE_ENTITY => "; GitHub rejected a field of the input",
        _ => "",
    };
    detail.push_str(hint);
    reply.status_failure(SERVICE, detail)
}

/// How long to wait for a rate limit: `Retry-After`; else until `x-ratelimit-reset` when
/// `x-ratelimit-remaining` is 0; else a minute for a secondary limit. `None`: not a rate limit.
fn rate_limit_delay(headers: &HeaderMap, message: &str) -> Option<Duration> {
    if let Some(delay) = retry_after(headers) {
        return Some(delay);
    }
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if header("x-ratelimit-remaining") == Some(0) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let wait = header("x-ratelimit-reset").map_or(SECONDARY_LIMIT_WAIT.as_secs(), |reset| {
            reset.saturating_sub(now).max(1)
        });
        return Some(Duration::from_secs(wait).min(MAX_RETRY_AFTER));
    }
    message
        .to_ascii_lowercase()
        .contains("rate limit")
        .then_some(SECONDARY_LIMIT_WAIT)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn rate_limits_are_told_from_permissions() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            rate_limit_delay(&headers, "Resource not accessible by integration"),
            None
        );
        assert_eq!(
            rate_limit_delay(&headers, "You have exceeded a secondary rate limit"),
            Some(SECONDARY_LIMIT_WAIT)
        );
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let delay = rate_limit_delay(&headers, "API rate limit exceeded").unwrap();
        assert!(
            delay > Duration::from_secs(25) && delay <= Duration::from_secs(30),
            "{delay:?}"
        );
        headers.insert("retry-after", HeaderValue::from_static("5"));
        assert_eq!(rate_limit_delay(&headers, ""), Some(Duration::from_secs(5)));
    }
}
