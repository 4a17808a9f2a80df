//! The fixture's poll source `feed`, present when `$FIXTURE_POLL_URL` is set: every second it
//! reads `GET {url}/feed?after={cursor}` (a test's local server answering
//! `{"items": [{"id": ..}], "cursor": ..}`) and starts `three-steps` with the tag
//! `feed {id}` for each new item, from the first poll on, with a 5 s timeout per poll.

use std::time::Duration;

use cairn::{PollCtx, PollError, PollSource, Polled, Registry, StartFrom};
use serde::Deserialize;
use serde_json::Value;

use crate::{THREE_STEPS, Tag};

/// One item of the feed.
#[derive(Debug, Deserialize)]
struct Item {
    id: String,
}

/// A page of the feed.
#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
    cursor: Option<Value>,
}

async fn read_feed(
    ctx: PollCtx,
    url: String,
    cursor: Option<Value>,
) -> Result<Polled<Item>, PollError> {
    let after = cursor.map(|cursor| cursor.to_string()).unwrap_or_default();
    let response = ctx
        .http()
        .get(format!("{url}/feed?after={after}"))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(PollError::new(format!(
            "the feed answered {}",
            response.status()
        )));
    }
    let page: Page = response.json().await?;
    Ok(Polled::new(page.items, page.cursor))
}

/// Adds the `feed` source when `$FIXTURE_POLL_URL` is set.
pub(crate) fn register(registry: Registry) -> Registry {
    let Some(url) = std::env::var("FIXTURE_POLL_URL").ok() else {
        return registry;
    };
    let feed = PollSource::new("feed")
        .every("1s")
        .timeout(Duration::from_secs(5))
        .start_from(StartFrom::Beginning)
        .poll(move |ctx, cursor| read_feed(ctx, url.clone(), cursor))
        .item_key(|item: &Item| item.id.clone())
        .attach(&THREE_STEPS, |item: Item| {
            Ok(Some(Tag {
                tag: format!("feed {}", item.id),
            }))
        });
    registry.poll(feed)
}
