//! OAuth connect over real HTTP against a fake authorization server on loopback: `connect`
//! (behind the API key) redirects to the provider with the client, the redirect URI on the
//! public URL, an S256 challenge, the state and the scopes; the provider's redirect lands on
//! the open callback, which stores the user's credential and answers a page; the credential
//! is listed for the user; a declined connection and a forged state are 400s; no response
//! holds a token or the client secret.

mod support;

use std::collections::HashMap;

use cairn_engine::{Credential, Field, OAuth, Url};
use cairn_server::{ApiKeys, ServeOptions};
use cairn_test_support::oauth::{FakeProvider, TOKEN_MARKER};
use reqwest::{Client, StatusCode, header, redirect::Policy};
use serde_json::{Value, json};
use support::{problem, start_public};

const CLIENT_ID: &str = "cairn-server-test";
const CLIENT_SECRET: &str = "client-s3cret-7d2";
const API_KEY: &str = "key-one";

/// The `slack` credential type, connected with OAuth at `provider`.
pub fn slack(provider: &FakeProvider) -> Credential {
    Credential::new("slack")
        .field("botToken", Field::secret())
        .field("refreshToken", Field::secret().optional())
        .oauth(
            OAuth::new(provider.authorize_url(), provider.token_url())
                .scopes(["chat:write"])
                .access_token_field("botToken")
                .client_id(CLIENT_ID)
                .client_secret(CLIENT_SECRET),
        )
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connects_through_the_provider_and_no_answer_holds_a_token() {
    let provider = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, 3600).await;
    let options = ServeOptions {
        api_keys: ApiKeys::from_list(API_KEY),
        ..ServeOptions::default()
    };
    let server = start_public(&slack(&provider), options).await;
    // A browser that does not follow redirects, so each hop is seen.
    let browser = Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let mut seen = String::new();
    let connect = server.url("/credentials/connect/slack?user=ada&org=acme");

    let refused = browser.get(&connect).send().await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "connect needs the API key"
    );

    let redirected = browser
        .get(&connect)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), StatusCode::FOUND);
    let location = redirected.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.starts_with(&provider.authorize_url()),
        "{location}"
    );
    let asked = query(&location);
    let callback = server.url("/credentials/callback/slack");
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], callback);
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["scope"], "chat:write");
    assert!(asked["code_challenge"].len() >= 43 && !asked["state"].is_empty());
    seen.push_str(&location);

    let as_json = browser
        .get(&connect)
        .bearer_auth(API_KEY)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), StatusCode::OK);
    let body: Value = as_json.json().await.unwrap();
    assert!(
        body["authorizeUrl"]
            .as_str()
            .unwrap()
            .starts_with(&provider.authorize_url())
    );

    // The person approves; the provider sends their browser back to the open callback.
    let approved = browser.get(&location).send().await.unwrap();
    assert_eq!(approved.status(), StatusCode::FOUND);
    let back = approved.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.starts_with(&format!("{callback}?")), "{back}");
    let page = browser
        .get(&back)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().await.unwrap();
    assert!(text.contains("Connected") && text.contains("ada"), "{text}");
    seen.push_str(&text);

    let listed = browser
        .get(server.url("/credentials?key=slack"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    seen.push_str(&listed);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let credentials = listed["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 1, "{listed}");
    let credential = &credentials[0];
    assert_eq!(
        credential["holder"],
        json!({"scope": "user", "org": "acme", "user": "ada"})
    );
    assert_eq!(credential["fields"], json!(["botToken", "refreshToken"]));
    assert_eq!(credential["isDefault"], true);
    assert!(credential["expiresAt"].is_string(), "{credential}");

    // Declined at the provider, a code without state, a forged state: 400s that say so.
    let declined = browser
        .get(format!(
            "{callback}?error=access_denied&error_description=The+user+declined"
        ))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let declined = problem(declined, StatusCode::BAD_REQUEST).await;
    let detail = declined["detail"].as_str().unwrap();
    assert!(
        detail.contains("access_denied") && detail.contains("declined"),
        "{detail}"
    );
    let forged = browser
        .get(format!("{callback}?code=code-9&state=AAAA"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let forged = problem(forged, StatusCode::BAD_REQUEST).await;
    assert!(
        forged["detail"].as_str().unwrap().contains("state"),
        "{forged}"
    );
    seen.push_str(&forged.to_string());
    let no_user = browser
        .get(server.url("/credentials/connect/slack"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let no_user = problem(no_user, StatusCode::BAD_REQUEST).await;
    assert!(
        no_user["detail"].as_str().unwrap().contains("user="),
        "{no_user}"
    );

    assert!(!seen.contains(TOKEN_MARKER), "a token leaked: {seen}");
    assert!(
        !seen.contains(CLIENT_SECRET),
        "the client secret leaked: {seen}"
    );
    let grants: Vec<_> = provider
        .requests()
        .into_iter()
        .map(|r| (r.grant_type, r.status))
        .collect();
    assert_eq!(grants, [("authorization_code".to_owned(), 200)]);
}
