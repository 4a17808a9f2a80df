//! The run page's actions and the generated forms, clicked in a real browser (Debian's
//! Chromium through chromedriver and fantoccini) and checked in the store, not only on the
//! page: Retry on a failed run, Cancel on a waiting run (refused by the browser until it is
//! confirmed), Rerun from the second step (the new run is linked to its original), a hook
//! resumed through its payload form (the run continues; the form sent again shows the 409
//! page and changes nothing), a schema violation shown on its field (422) with no run
//! started, and an unknown run's 404 page with its link back.
//!
//! Skipped like the other browser tests when Chromium is missing (see `ui_browser.rs`).

mod support;

use cairn_test_support::Prerequisite;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator, error::CmdError};
use serde_json::{Value, json};
use support::{
    TestServer, start,
    webdriver::{browser, until},
};

const BADGE: &str = "return document.querySelector('h1 .badge')?.textContent ?? null";
const H1: &str = "return document.querySelector('h1')?.textContent.trim() ?? null";

/// Clicks the element `css` matches. A live page swaps its fragments when its run changes
/// (and once after it subscribes), which can replace the element between finding and
/// clicking it: then it is found again, until a deadline.
async fn click(client: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.map(drop),
            Err(err) => Err(err),
        };
        match clicked {
            Ok(()) => return,
            Err(err) if Instant::now() < deadline && is_transient(&err) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("click `{css}`: {err}"),
        }
    }
}

/// A stale element, or one not there yet (the page is being swapped or loaded).
fn is_transient(err: &CmdError) -> bool {
    let text = err.to_string();
    text.contains("stale element") || text.contains("no such element")
}

/// Opens a run's page and waits until its badge reads `status` and, if the page is live (its
/// run has not ended), until it has fetched itself once its status stream listened
/// (`app.js` counts its swaps in `data-refreshed`), so a form filled in next is not swapped
/// away under the test. An ended run's page opens no stream: nothing swaps it.
async fn open_run(client: &Client, server: &TestServer, run_id: &str, status: &str) {
    client
        .goto(&server.url(&format!("/ui/runs/{run_id}")))
        .await
        .expect("open the run's page");
    until(client, BADGE, json!(status)).await;
    let settled = "const main = document.querySelector('main'); \
        return !main.dataset.live || Number(main.dataset.refreshed || 0) >= 1";
    until(client, settled, json!(true)).await;
}

/// The id of the run whose page the browser shows.
async fn shown_run(client: &Client) -> String {
    let url = client.current_url().await.expect("a URL");
    url.path()
        .strip_prefix("/ui/runs/")
        .unwrap_or_else(|| panic!("on a run's page, not {url}"))
        .to_owned()
}

/// The stored run, as the engine reads it.
async fn stored(server: &TestServer, run_id: &str) -> cairn_engine::RunDetail {
    server
        .engine
        .get_run(run_id.parse().expect("a run id"))
        .await
        .expect("the run is stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_cancel_and_rerun_clicked_in_the_browser_change_the_store() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let gate = server.file("gate");
    std::fs::write(&gate, b"").expect("create the gate");
    let file = gate.display().to_string();
    let failed = server
        .start_run("checked", json!({"name": "ada", "file": file}))
        .await;
    let waiting = server.start_run("approval", json!({"name": "bob"})).await;
    let greeted = server.start_run("greet", json!({"name": "cy"})).await;
    server.wait_for_status(&failed, "failed").await;
    server.wait_for_status(&waiting, "waiting").await;
    server.wait_for_status(&greeted, "succeeded").await;
    let (client, _driver) = browser().await;

    // Retry: the failed run runs again and, its gate gone, succeeds.
    open_run(&client, &server, &failed, "failed").await;
    std::fs::remove_file(&gate).expect("open the gate");
    click(&client, "form[action$='/retry'] button").await;
    until(&client, BADGE, json!("succeeded")).await;
    let retried = server.wait_for_status(&failed, "succeeded").await;
    assert_eq!(retried["output"], json!({"name": "ADA"}));
    let executions = stored(&server, &failed).await.run.executions;
    assert!(executions >= 2, "ran again after the retry: {executions}");

    // Cancel: refused by the browser until the box is ticked, then the run ends canceled.
    open_run(&client, &server, &waiting, "waiting").await;
    client
        .execute("window.cairnMarker = 7; return null", vec![])
        .await
        .expect("mark the page");
    click(&client, "form[action$='/cancel'] button").await;
    let unconfirmed = "return [window.cairnMarker ?? null, \
         document.getElementById('confirm-cancel').validity.valueMissing]";
    until(&client, unconfirmed, json!([7, true])).await;
    assert_eq!(
        stored(&server, &waiting).await.run.status.to_string(),
        "waiting",
        "an unconfirmed cancel changes nothing"
    );
    click(&client, "#confirm-cancel").await;
    click(&client, "form[action$='/cancel'] button").await;
    until(&client, BADGE, json!("canceled")).await;
    assert_eq!(
        stored(&server, &waiting).await.run.status.to_string(),
        "canceled"
    );

    // Rerun from the second step: the browser lands on a new run, linked to its original.
    open_run(&client, &server, &greeted, "succeeded").await;
    // Chosen and sent in one script: the ended run's page may still swap in its last
    // events, which would reset a choice made in an earlier command.
    let rerun_from = "const from = document.getElementById('rerun-from'); \
         from.value = 'shout#1'; from.form.querySelector('button').click(); return from.value";
    let chosen = client
        .execute(rerun_from, vec![])
        .await
        .expect("rerun from shout#1");
    assert_eq!(chosen, json!("shout#1"), "the second step is offered");
    let elsewhere = format!("return location.pathname !== '/ui/runs/{greeted}'");
    until(&client, &elsewhere, json!(true)).await;
    let rerun = shown_run(&client).await;
    let origin = stored(&server, &rerun)
        .await
        .run
        .forked_from
        .expect("the new run is linked to its original");
    assert_eq!(origin.run_id.to_string(), greeted);
    assert_eq!(origin.step.as_str(), "shout#1");
    server.wait_for_status(&rerun, "succeeded").await;
    let link = format!("return !!document.querySelector('a[href=\"/ui/runs/{greeted}\"]')");
    until(&client, &link, json!(true)).await;
    client.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_resume_a_hook_once_and_bad_input_starts_nothing() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let run_id = server.start_run("approval", json!({"name": "dee"})).await;
    server.pending_hook(&run_id).await;
    let (client, _driver) = browser().await;

    // The pending hooks page leads to the hook's form; resumed, the run goes on to the end.
    client
        .goto(&server.url("/ui/hooks"))
        .await
        .expect("open the hooks page");
    click(&client, &format!("a[href^='/ui/runs/{run_id}/resume']")).await;
    until(
        &client,
        "return !!document.forms[0] && !!document.querySelector('form.generated')",
        json!(true),
    )
    .await;
    click(&client, "input[name='f/approved']").await;
    click(&client, "form.generated button[type=submit]").await;
    until(&client, BADGE, json!("succeeded")).await;
    assert_eq!(shown_run(&client).await, run_id);
    let done = server.wait_for_status(&run_id, "succeeded").await;
    let output = json!({"name": "DEE APPROVED=TRUE"});
    assert_eq!(done["output"], output);

    // The same form sent again (Back, submit): a 409 page, nothing changed.
    client.back().await.expect("back to the form");
    until(
        &client,
        "return !!document.querySelector('form.generated')",
        json!(true),
    )
    .await;
    click(&client, "form.generated button[type=submit]").await;
    until(&client, H1, json!("Not now")).await;
    let detail = client
        .execute(
            "return document.querySelector('[role=alert]')?.textContent ?? ''",
            vec![],
        )
        .await
        .expect("the message");
    assert!(
        detail.as_str().is_some_and(|text| !text.trim().is_empty()),
        "the 409 page says why: {detail}"
    );
    let after = stored(&server, &run_id).await;
    assert_eq!(
        after.run.output,
        Some(output),
        "the second resume changed nothing"
    );
    let hooks = server
        .engine
        .list_hooks(&cairn_store::HookFilter {
            run_id: Some(run_id.parse().expect("a run id")),
            state: None,
            limit: 10,
        })
        .await
        .expect("hooks");
    assert_eq!(hooks.len(), 1, "one hook");
    assert_eq!(hooks[0].state, cairn_store::HookState::Resumed);

    // A schema violation: the form comes back with the value and the field's error.
    let before = server.run_count().await;
    client
        .goto(&server.url("/ui/workflows/tally/start"))
        .await
        .expect("open the start form");
    let count = client
        .find(Locator::Id("in-count"))
        .await
        .expect("the count field");
    count.clear().await.expect("clear it");
    count
        .send_keys("11")
        .await
        .expect("type a count over the maximum");
    click(&client, "form.generated button[type=submit]").await;
    let field = "return [document.getElementById('in-count')?.value ?? null, \
         document.getElementById('in-count')?.getAttribute('aria-invalid') ?? null, \
         document.getElementById('in-count-error')?.textContent ?? null]";
    let shown = wait_for_error(&client, field).await;
    assert_eq!(shown[0], json!("11"), "the value is kept");
    assert_eq!(shown[1], json!("true"), "the field is marked invalid");
    let error = shown[2].as_str().expect("an error text");
    assert!(error.contains("10"), "the error names the bound: {error}");
    assert_eq!(server.run_count().await, before, "no run was started");

    // An unknown run: a page that says so, with a link back to the runs.
    client
        .goto(&server.url("/ui/runs/01a23e00-7b83-7919-979b-de2c8cfc41fc"))
        .await
        .expect("open an unknown run");
    until(&client, H1, json!("Not found")).await;
    click(&client, "main a[href='/ui/runs']").await;
    until(&client, "return location.pathname", json!("/ui/runs")).await;
    assert_eq!(server.run_count().await, before, "nothing was started");
    client.close().await.expect("close the session");
}

/// Waits until the start form shows the count field's error; returns value, mark, error.
async fn wait_for_error(client: &Client, script: &str) -> Vec<Value> {
    let shown = "return !!document.getElementById('in-count-error')";
    until(client, shown, json!(true)).await;
    let value = client
        .execute(script, vec![])
        .await
        .expect("read the field");
    value.as_array().cloned().expect("three values")
}
