//! A run of 5,000 steps on its page: at most 500 step rows at a time, "Load more" and
//! "Earlier steps" links that reach every step (over HTTP, without JavaScript), a bad `after`
//! answered by a 400 page naming it, no live stream for an ended run; and in a real browser
//! (headless Chromium): the first screen within 1 s (navigation timing), ≤ 500 rows in the
//! DOM, the next window swapped in place and Back returning to the first, and a screenshot
//! (`ui-screenshots/run-5000-steps.png`) that is not blank.

mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use cairn_test_support::Prerequisite;
use fantoccini::Locator;
use serde_json::json;
use support::{
    long_run::long_run,
    screenshots::Picture,
    start,
    webdriver::{browser, until},
};

const STEPS: u32 = 5_000;
const WINDOW: usize = 500;

/// The step numbers a page's rows show (`<tr id="step-N">`).
fn step_numbers(html: &str) -> Vec<usize> {
    html.split("<tr id=\"step-")
        .skip(1)
        .map(|rest| {
            rest[..rest.find('"').expect("the id's end")]
                .parse()
                .expect("a number")
        })
        .collect()
}

/// The href of the link whose text is `text`, if the page has one.
fn link(html: &str, text: &str) -> Option<String> {
    let text_at = html.find(&format!(">{text}</a>"))?;
    let start = html[..text_at].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_5000_steps_is_paged_500_at_a_time_by_links() {
    let server = start().await;
    let run = long_run(&server, STEPS).await;
    let first = format!("/ui/runs/{run}");

    let mut renders = Vec::new();
    let mut html = String::new();
    for _ in 0..3 {
        let began = Instant::now();
        let response = server.get(&first).await;
        assert!(response.status().is_success());
        html = response.text().await.expect("the page");
        renders.push(began.elapsed());
    }
    renders.sort();
    println!(
        "first window of a {STEPS}-step run over HTTP: median {:?}",
        renders[1]
    );
    assert!(
        renders[1] < Duration::from_secs(1),
        "the first window took {renders:?}"
    );
    assert!(
        !html.contains("data-live"),
        "an ended run's page opens no stream"
    );
    assert!(html.contains("Steps 1–500 of 5000."), "the window is said");
    assert_eq!(link(&html, "Earlier steps"), None);

    // Load more, page after page, reaches every step once; each page's Earlier steps link
    // leads back to the page before.
    let mut seen = BTreeSet::new();
    let mut page = first.clone();
    let mut pages = 0;
    loop {
        let response = server.get(&page).await;
        assert!(response.status().is_success(), "{page}");
        let html = response.text().await.expect("the page");
        let numbers = step_numbers(&html);
        assert!(!numbers.is_empty() && numbers.len() <= WINDOW, "{page}");
        for number in numbers {
            assert!(seen.insert(number), "step {number} shown twice");
        }
        if pages > 0 {
            let earlier = link(&html, "Earlier steps").expect("an Earlier steps link");
            let back = server.get(&earlier).await.text().await.expect("the page");
            assert_eq!(step_numbers(&back).last(), Some(&(pages * WINDOW)));
        }
        pages += 1;
        match link(&html, "Load more") {
            Some(next) => page = next,
            None => break,
        }
    }
    assert_eq!(pages, 10);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (1..=STEPS as usize).collect::<Vec<_>>()
    );

    // A bad window: a 400 page naming `after`.
    for bad in ["abc", "-1", "1.5", "5000", "99999", "18446744073709551616"] {
        let response = server.get(&format!("{first}?after={bad}")).await;
        assert_eq!(response.status(), 400, "after={bad}");
        let text = response.text().await.expect("the page");
        assert!(text.contains("after="), "names the parameter: {text}");
    }
    // A run of few steps has no windows.
    let short = server.start_run("greet", json!({"name": "few"})).await;
    server.wait_for_status(&short, "succeeded").await;
    let html = server.get(&format!("/ui/runs/{short}")).await.text().await;
    let html = html.expect("the page");
    assert!(!html.contains("Load more") && !html.contains("Steps 1–"));
    let response = server.get(&format!("/ui/runs/{short}?after=500")).await;
    assert_eq!(response.status(), 400, "past the last of its steps");
}

/// Loads the page and answers its navigation timing: until the load event ended, and until
/// the first contentful paint (ms from the navigation's start).
const TIMING: &str = "const nav = performance.getEntriesByType('navigation')[0];\
    const paint = performance.getEntriesByName('first-contentful-paint')[0];\
    return [nav.loadEventEnd - nav.startTime, paint ? paint.startTime : null];";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_5000_steps_shows_its_first_screen_within_a_second_in_a_browser() {
    if Prerequisite::Chromium.missing() {
        return;
    }
    let server = start().await;
    let run = long_run(&server, STEPS).await;
    let (client, _driver) = browser().await;
    client
        .set_window_size(1280, 900)
        .await
        .expect("a desktop-sized window");
    let url = server.url(&format!("/ui/runs/{run}"));
    // Best of three loads (the first also warms the browser's caches of app.js and app.css).
    let mut loads = Vec::new();
    for _ in 0..3 {
        client.goto(&url).await.expect("open the run");
        let complete = "return document.readyState";
        until(&client, complete, json!("complete")).await;
        let timing = client.execute(TIMING, vec![]).await.expect("timing");
        let load = timing[0].as_f64().expect("the load time");
        let paint = timing[1].as_f64();
        loads.push((load, paint));
    }
    println!("a {STEPS}-step run's page in Chromium (load end, first paint, ms): {loads:?}");
    let best = loads
        .iter()
        .map(|(load, _)| *load)
        .fold(f64::INFINITY, f64::min);
    assert!(best < 1_000.0, "the first screen took {loads:?} ms");
    let rows = "return document.querySelectorAll('table.steps tbody tr').length";
    until(&client, rows, json!(WINDOW)).await;
    let shot = client.screenshot().await.expect("a screenshot");
    let picture = Picture::keep(&shot, "run-5000-steps");
    assert!(
        picture.drawn() > 0.02,
        "the page is blank: {:.4} of it differs from its background",
        picture.drawn()
    );

    // Load more swaps the next window in place (no reload) and pushes its URL; Back returns.
    client
        .execute("window.cairnMarker = 7; return null", vec![])
        .await
        .expect("mark the page");
    client
        .find(Locator::LinkText("Load more"))
        .await
        .expect("the Load more link")
        .click()
        .await
        .expect("click it");
    let first_row = "return document.querySelector('table.steps tbody tr').id";
    until(&client, first_row, json!("step-501")).await;
    until(&client, "return location.search", json!("?after=500")).await;
    until(&client, rows, json!(WINDOW)).await;
    let marker = client
        .execute("return window.cairnMarker ?? null", vec![])
        .await
        .expect("read the mark");
    assert_eq!(marker, json!(7), "the window changed without a reload");
    client.back().await.expect("back");
    until(&client, first_row, json!("step-1")).await;
    until(&client, "return location.search", json!("")).await;
    client.close().await.expect("close the session");
}
