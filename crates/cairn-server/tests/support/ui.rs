//! What the web UI tests share: a client that does not follow redirects, pages fetched with a
//! cookie (asserted to be HTML), forms posted, and the CSRF cookie a page sets.

use reqwest::{Client, StatusCode, header, redirect::Policy};

use super::TestServer;

/// A client that does not follow redirects (the tests check them).
pub fn browser() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// `GET path` with `cookie`: the status and the body (asserted to be HTML when not a redirect).
pub async fn page(server: &TestServer, path: &str, cookie: &str) -> (StatusCode, String) {
    let response = browser()
        .get(server.url(path))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .expect("request");
    let status = response.status();
    if status.is_success() || status.is_client_error() {
        let media = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(media.starts_with("text/html"), "{path} answered {media}");
    }
    (status, response.text().await.expect("a body"))
}

/// Posts a form with the cookie; the status and where it redirects.
pub async fn submit(
    server: &TestServer,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let response = browser()
        .post(server.url(path))
        .header(header::COOKIE, cookie)
        .form(form)
        .send()
        .await
        .expect("request");
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (response.status(), location)
}

/// The CSRF cookie the page at `path` set, as `name=value`, and its value (which its forms
/// carry).
pub async fn csrf(server: &TestServer, path: &str) -> (String, String) {
    let response = browser()
        .get(server.url(path))
        .send()
        .await
        .expect("request");
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("the page sets its CSRF cookie")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let pair = set.split(';').next().expect("a pair").to_owned();
    let value = pair.split_once('=').expect("name=value").1.to_owned();
    let html = response.text().await.expect("a body");
    assert!(
        html.contains(&format!("value=\"{value}\"")),
        "the forms carry the token"
    );
    (pair, value)
}
