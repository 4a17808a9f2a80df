//! The web UI in a real browser: Debian's Chromium, headless, driven through `chromedriver`
//! (from the PATH, on a free port) with fantoccini. A run started from its workflow's
//! generated form lands on its page, which follows the run live: the hook is resumed over the
//! API and the page shows the run succeeded, with its new steps,
//! without reloading; the theme toggle switches to the dark theme and keeps it.
//!
//! The README's test command installs Chromium when it can, else these tests are reported as
//! not run (`CAIRN_TEST_SKIP_CHROMIUM`); under `CI=true` a missing browser fails the command.

mod support;

use cairn_test_support::Prerequisite;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use serde_json::json;
use support::{
    start,
    webdriver::{browser, until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_page_follows_the_run_live_and_the_theme_toggles() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let (client, _driver) = browser().await;

    // Started from the workflow's generated form: the browser lands on the new run's page.
    client
        .goto(&server.url("/ui/workflows/approval/start"))
        .await
        .expect("open the start form");
    client
        .find(fantoccini::Locator::Id("in-name"))
        .await
        .expect("the name field")
        .send_keys("ada")
        .await
        .expect("type a name");
    client
        .find(fantoccini::Locator::Css(
            "form.generated button[type=submit]",
        ))
        .await
        .expect("the start button")
        .click()
        .await
        .expect("start the run");
    let path = "return location.pathname.startsWith('/ui/runs/')";
    until(&client, path, json!(true)).await;
    let landed = client.current_url().await.expect("a URL");
    let run_id = landed
        .path()
        .strip_prefix("/ui/runs/")
        .expect("on the run's page")
        .to_owned();
    let stored = server.wait_for_status(&run_id, "waiting").await;
    assert_eq!(stored["input"], json!({"name": "ada"}), "the form's value");
    let badge = "return document.querySelector('h1 .badge').textContent";
    until(&client, badge, json!("waiting")).await;
    client
        .execute("window.cairnMarker = 42; return null", vec![])
        .await
        .expect("mark the page");

    let hook = server.pending_hook(&run_id).await;
    let resumed = server
        .post(
            &format!("/hooks/{}", hook.token),
            &json!({"approved": true}),
        )
        .await;
    assert!(resumed.status().is_success());
    until(&client, badge, json!("succeeded")).await;
    let steps = "return [...document.querySelectorAll('table.steps tbody th code')].map(e => e.textContent)";
    until(
        &client,
        steps,
        json!(["cairn.hook#0", "shout#0", "shout#1"]),
    )
    .await;
    let marker = client
        .execute("return window.cairnMarker ?? null", vec![])
        .await
        .expect("read the mark");
    assert_eq!(marker, json!(42), "the page changed without a reload");
    server.wait_for_status(&run_id, "succeeded").await;

    let theme = "return document.documentElement.dataset.theme ?? null";
    client
        .find(fantoccini::Locator::Id("theme-toggle"))
        .await
        .expect("the toggle")
        .click()
        .await
        .expect("click it");
    until(&client, theme, json!("dark")).await;
    client.refresh().await.expect("reload");
    until(&client, theme, json!("dark")).await;
    client.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_reaches_a_run() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let older = server.start_run("greet", json!({"name": "old"})).await;
    let newer = server.start_run("greet", json!({"name": "new"})).await;
    for run in [&older, &newer] {
        server.wait_for_status(run, "succeeded").await;
    }
    let (client, _driver) = browser().await;
    client
        .goto(&server.url("/ui/runs"))
        .await
        .expect("open the runs list");
    // Keys as a person types them, to whatever has the focus (WebDriver's key actions).
    let press = |key: char| {
        let client = client.clone();
        async move {
            let typed = KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
            client.perform_actions(typed).await.expect("press");
        }
    };
    press('?').await;
    until(
        &client,
        "return document.getElementById('keys-help').open",
        json!(true),
    )
    .await;
    press('?').await;
    until(
        &client,
        "return document.getElementById('keys-help').open",
        json!(false),
    )
    .await;
    // Newest first: `j` twice reaches the second row, `k` back to the first, `j` again.
    press('j').await;
    press('j').await;
    press('k').await;
    press('j').await;
    press('\u{E007}').await; // Enter
    let path = "return location.pathname";
    until(&client, path, json!(format!("/ui/runs/{older}"))).await;
    press('/').await; // no filter on a run's page: nothing happens, nothing breaks
    client.back().await.expect("back");
    press('/').await;
    let focused = "return document.activeElement.id";
    until(&client, focused, json!("workflow")).await;
    assert_ne!(older, newer);
    client.close().await.expect("close the session");
}
