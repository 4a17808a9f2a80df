//! The web UI's pages checked in a real browser (headless Chromium through chromedriver):
//! axe-core (vendored under `tests/vendor/`) finds no serious or critical accessibility
//! violation on any page in either theme, and screenshots, saved as PNG files under the
//! target directory (`ui-screenshots/`, kept as CI artifacts) and decoded, show what a person
//! would see: a page that is not blank, a failed run's badge that is mostly red, a dark theme
//! that is dark and a light one that is light.
//!
//! The README's test command installs Chromium when it can, else these tests are reported as
//! not run (`CAIRN_TEST_SKIP_CHROMIUM`); under `CI=true` a missing browser fails the command.

mod support;

use cairn_test_support::Prerequisite;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::{
    TestServer,
    long_run::long_run,
    screenshots::Picture,
    start,
    webdriver::{browser, until},
};

/// axe-core's browser build, injected into each page.
const AXE: &str = include_str!("vendor/axe-core-4.14.1/axe.min.js");

/// The themes, as the toggle stores them.
const THEMES: [&str; 2] = ["light", "dark"];

/// Runs axe on the page: `{ passed, violations }`, how many rules the page passed and its
/// serious and critical violations (rule, impact, help, the first few elements).
const RUN_AXE: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ["violations"] }).then(
  (results) => done({ passed: results.passes.length, violations: results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ rule: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + ": " + n.failureSummary) })) }),
  (error) => done({ passed: 0, violations: [{ rule: "axe-failed", help: String(error) }] }));
"#;

/// Injects axe-core into the page and runs it: how many rules passed, and the serious and
/// critical violations.
async fn axe(client: &Client) -> (u64, Vec<Value>) {
    client
        .execute(&format!("{AXE}\nreturn null"), vec![])
        .await
        .expect("inject axe-core");
    let report = client
        .execute_async(RUN_AXE, vec![])
        .await
        .expect("axe runs");
    let passed = report["passed"].as_u64().expect("a count");
    let violations = report["violations"].as_array().expect("an array").clone();
    (passed, violations)
}

/// Runs in each state a page can show: succeeded, failed, waiting on a hook.
struct Runs {
    succeeded: String,
    failed: String,
    waiting: String,
    hook_step: String,
}

async fn runs(server: &TestServer) -> Runs {
    let succeeded = server.start_run("greet", json!({"name": "ada"})).await;
    let gate = server.file("gate");
    std::fs::write(&gate, "closed").expect("gate");
    let file = gate.to_str().expect("utf-8").to_owned();
    let failed = server
        .start_run("checked", json!({"name": "bo", "file": file}))
        .await;
    let waiting = server.start_run("approval", json!({"name": "cy"})).await;
    server.wait_for_status(&succeeded, "succeeded").await;
    server.wait_for_status(&failed, "failed").await;
    let hook = server.pending_hook(&waiting).await;
    server.wait_for_status(&waiting, "waiting").await;
    Runs {
        succeeded,
        failed,
        waiting,
        hook_step: hook.step_key.as_str().replace('#', "%23"),
    }
}

/// Opens `path` with `theme` chosen and waits until the page applied it.
async fn open(client: &Client, server: &TestServer, path: &str, theme: &str) {
    client.goto(&server.url(path)).await.expect("open the page");
    let choose = format!("localStorage.setItem('cairn-theme', '{theme}'); return null");
    client
        .execute(&choose, vec![])
        .await
        .expect("choose the theme");
    client.refresh().await.expect("reload");
    let applied = "return document.documentElement.dataset.theme ?? null";
    until(client, applied, json!(theme)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_has_a_serious_accessibility_violation_in_either_theme() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let runs = runs(&server).await;
    let long = long_run(&server, 550).await;
    let pages = [
        "/ui/runs".to_owned(),
        "/ui/runs?status=failed&status=succeeded".to_owned(),
        format!("/ui/runs/{}", runs.succeeded),
        format!("/ui/runs/{}", runs.failed),
        format!("/ui/runs/{}", runs.waiting),
        "/ui/workflows".to_owned(),
        "/ui/workflows/greet/start".to_owned(),
        format!("/ui/workflows/greet/start?from={}", runs.succeeded),
        "/ui/hooks".to_owned(),
        format!("/ui/runs/{}/resume?step={}", runs.waiting, runs.hook_step),
        "/ui/credentials".to_owned(),
        "/ui/schedules".to_owned(),
        "/ui/webhooks".to_owned(),
        "/ui/runs/01900000-0000-7000-8000-000000000000".to_owned(),
        // The last window of a long run (its 50 rows, the link to the window before).
        format!("/ui/runs/{long}?after=500"),
    ];
    let (client, _driver) = browser().await;

    // axe itself finds what it should: a button without a name is a critical violation.
    open(&client, &server, &pages[0], "light").await;
    let unnamed =
        "document.querySelector('main').append(document.createElement('button')); return null";
    client.execute(unnamed, vec![]).await.expect("add a button");
    let (_, violations) = axe(&client).await;
    assert!(
        violations.iter().any(|v| v["rule"] == "button-name"),
        "axe did not report an unnamed button: {violations:?}"
    );

    let mut found = Vec::new();
    for theme in THEMES {
        for page in &pages {
            open(&client, &server, page, theme).await;
            let (passed, violations) = axe(&client).await;
            assert!(passed > 10, "axe checked only {passed} rules on {page}");
            if !violations.is_empty() {
                found.push(json!({"page": page, "theme": theme, "violations": violations}));
            }
        }
    }
    client.close().await.expect("close the session");
    assert!(
        found.is_empty(),
        "serious or critical accessibility violations:\n{}",
        serde_json::to_string_pretty(&found).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_show_a_drawn_page_a_red_failure_and_both_themes() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let runs = runs(&server).await;
    let (client, _driver) = browser().await;
    client
        .set_window_size(1280, 900)
        .await
        .expect("a desktop-sized window");
    let run_page = format!("/ui/runs/{}", runs.failed);
    let mut luminance = Vec::new();
    for theme in THEMES {
        open(&client, &server, &run_page, theme).await;
        let page = client.screenshot().await.expect("a screenshot");
        let picture = Picture::keep(&page, &format!("failed-run-{theme}"));
        assert!(
            picture.drawn() > 0.02,
            "the {theme} page is blank: {:.4} of it differs from its background",
            picture.drawn()
        );
        luminance.push(picture.luminance());
        let badge = client
            .find(Locator::Css("h1 .badge.failed"))
            .await
            .expect("the failed badge")
            .screenshot()
            .await
            .expect("its screenshot");
        let badge = Picture::keep(&badge, &format!("failed-badge-{theme}"));
        assert!(
            badge.reddish() > 0.5,
            "the {theme} failed badge is not mostly red: {:.2} of its pixels lean red",
            badge.reddish()
        );
    }
    let [light, dark] = luminance[..] else {
        panic!("two themes")
    };
    assert!(
        light > 0.7,
        "the light theme's mean luminance is {light:.2}"
    );
    assert!(dark < 0.3, "the dark theme's mean luminance is {dark:.2}");

    // The run list and a run that succeeded are drawn too.
    for (name, path) in [
        ("runs", "/ui/runs".to_owned()),
        ("succeeded-run", format!("/ui/runs/{}", runs.succeeded)),
    ] {
        open(&client, &server, &path, "light").await;
        let shot = client.screenshot().await.expect("a screenshot");
        let picture = Picture::keep(&shot, name);
        assert!(picture.drawn() > 0.02, "{name} is blank");
    }
    let badge = "return document.querySelector('h1 .badge').textContent";
    until(&client, badge, Value::from("succeeded")).await;
    client.close().await.expect("close the session");
}
