//! Declaring poll sources: a name, how often it is polled, the poll function (a context and
//! the stored cursor in, items and the next cursor out), each item's key, and the workflow
//! each new item starts with the input a transform makes of it:
//! `PollSource::new("new-issues").every("5m").poll(list_issues).item_key(|i| i.id.to_string())
//! .attach(&TRIAGE, |i| Ok(Some(i.into())))`.

use std::{future::Future, sync::Arc, time::Duration};

use cairn_core::Owner;
use cairn_triggers::{TransformError, poll::parse_interval};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::{
    base::{credential::Credential, schema::Payload},
    run::body::ErasedWorkflow,
    steps::{
        poll_ctx::{PollCtx, PollError, Polled},
        workflow::Workflow,
    },
};

/// The longest source name.
const MAX_NAME_LEN: usize = 64;
/// How often a source is polled unless [`PollSource::every`] says.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How long a poll may take unless [`PollSource::timeout`] says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a new source starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// The first poll records the items there are without starting runs: only items that
    /// appear later start runs (the default).
    #[default]
    Now,
    /// The first poll's items start runs too.
    Beginning,
}

/// A poll source being declared; give it a [`poll`](Self::poll) function.
#[derive(Clone, Debug)]
pub struct PollSource {
    name: String,
    interval: Result<Duration, String>,
    start_from: StartFrom,
    owner: Option<Owner>,
    credentials: Vec<Credential>,
    timeout: Duration,
}

impl PollSource {
    /// A source named `name` (1–64 of `a-z 0-9 - _`), polled every 5 minutes unless
    /// [`every`](Self::every) says.
    pub fn new(name: impl Into<String>) -> Self {
        PollSource {
            name: name.into(),
            interval: Ok(DEFAULT_INTERVAL),
            start_from: StartFrom::Now,
            owner: None,
            credentials: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// How often to poll: `"30s"`, `"5m"`, `"1h"`, `"1d"` (a bad one is a registry error).
    pub fn every(mut self, interval: &str) -> Self {
        self.interval = parse_interval(interval).map_err(|err| err.to_string());
        self
    }

    /// Where the first poll starts (default [`StartFrom::Now`]).
    pub fn start_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }

    /// On whose behalf the runs execute and whose credentials the poll function gets
    /// (default: organization and project `default`).
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// A credential the poll function reads with [`PollCtx::credential`], resolved for the
    /// owner (its project's default, then its organization's) before each poll.
    pub fn credential(mut self, credential: &Credential) -> Self {
        self.credentials.push(credential.clone());
        self
    }

    /// How long one poll may take (default 60 s): a slower one is cancelled and counts as
    /// an error. The poll's lease lasts this long plus the engine's lease time.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The poll function: given the context and the cursor its last successful poll
    /// returned (`None` at first), the items there are and the next cursor.
    pub fn poll<T, F, Fut>(self, poll: F) -> PollingSource<T>
    where
        T: Send + 'static,
        F: Fn(PollCtx, Option<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Polled<T>, PollError>> + Send + 'static,
    {
        PollingSource {
            source: self,
            poll: Arc::new(move |ctx, cursor| Box::pin(poll(ctx, cursor))),
            item_key: None,
        }
    }
}

/// A user's poll function, boxed.
type PollFn<T> = Arc<
    dyn Fn(PollCtx, Option<Value>) -> BoxFuture<'static, Result<Polled<T>, PollError>>
        + Send
        + Sync,
>;

/// What tells a source's items apart, boxed.
type ItemKey<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// A poll source with its poll function: give it an [`item_key`](Self::item_key) and
/// [`attach`](Self::attach) it to a workflow.
pub struct PollingSource<T> {
    source: PollSource,
    poll: PollFn<T>,
    item_key: Option<ItemKey<T>>,
}

impl<T: Send + 'static> PollingSource<T> {
    /// What tells items apart: an item whose key the source saw in the last 7 days starts
    /// nothing. Keys over 128 characters are replaced by their SHA-256.
    pub fn item_key(mut self, key: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.item_key = Some(Arc::new(key));
        self
    }

    /// Each new item starts `workflow` with the input `transform` makes of it: `Ok(Some)`
    /// starts a run, `Ok(None)` skips the item (it is still recorded), an error fails the
    /// poll (nothing is recorded; the item comes again at the next poll).
    pub fn attach<I, O, F>(self, workflow: &Workflow<I, O>, transform: F) -> Poll
    where
        I: Payload,
        O: Payload,
        F: Fn(T) -> Result<Option<I>, TransformError> + Send + Sync + 'static,
    {
        let PollingSource {
            source,
            poll,
            item_key,
        } = self;
        let mut problem = source.problem();
        let Some(item_key) = item_key else {
            problem.get_or_insert_with(|| {
                format!(
                    "poll source {:?} has no item key: add .item_key(|item| ..) naming what \
                     tells its items apart",
                    source.name
                )
            });
            return Poll::declared(source, workflow, problem, Arc::new(|_, _| unkeyed()));
        };
        let transform = Arc::new(transform);
        let fetch: Fetch = Arc::new(move |ctx, cursor| {
            let (poll, item_key, transform) = (poll.clone(), item_key.clone(), transform.clone());
            Box::pin(async move {
                let polled = poll(ctx, cursor).await?;
                let items = polled
                    .items
                    .into_iter()
                    .map(|item| {
                        let key = item_key(&item);
                        let input = transform(item).and_then(|input| {
                            input
                                .map(|input| {
                                    serde_json::to_value(&input).map_err(|err| {
                                        TransformError::new(format!(
                                            "the transform's input does not serialize: {err}"
                                        ))
                                    })
                                })
                                .transpose()
                        });
                        FetchedItem { key, input }
                    })
                    .collect();
                Ok(Fetched {
                    items,
                    cursor: polled.cursor,
                })
            })
        });
        Poll::declared(source, workflow, problem, fetch)
    }
}

/// The fetch of a source declared without an item key (never run: the registry refuses it).
fn unkeyed() -> BoxFuture<'static, Result<Fetched, PollError>> {
    Box::pin(async { Err(PollError::new("the poll source has no item key")) })
}

impl PollSource {
    /// What makes the declaration unusable, if anything.
    fn problem(&self) -> Option<String> {
        let name = &self.name;
        let well_formed = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !well_formed {
            return Some(format!(
                "poll source name {name:?} is not valid: use 1 to {MAX_NAME_LEN} of a-z, 0-9, \
                 - and _"
            ));
        }
        if let Err(error) = &self.interval {
            return Some(format!("poll source {name:?}: {error}"));
        }
        if self.timeout.is_zero() {
            return Some(format!(
                "poll source {name:?} has a zero timeout; give each poll time to answer"
            ));
        }
        None
    }
}

/// What a poll found, with each item's key and the input its transform made.
pub(crate) struct Fetched {
    pub(crate) items: Vec<FetchedItem>,
    pub(crate) cursor: Option<Value>,
}

/// One item found: its key and its run's input (`None`: skipped by the transform).
pub(crate) struct FetchedItem {
    pub(crate) key: String,
    pub(crate) input: Result<Option<Value>, TransformError>,
}

/// A poll function with its items' keys and transform applied.
pub(crate) type Fetch = Arc<
    dyn Fn(PollCtx, Option<Value>) -> BoxFuture<'static, Result<Fetched, PollError>> + Send + Sync,
>;

/// A poll source attached to a workflow, ready for [`Registry::poll`](crate::Registry::poll).
#[derive(Clone)]
pub struct Poll {
    pub(crate) name: String,
    pub(crate) interval: Duration,
    pub(crate) start_from: StartFrom,
    pub(crate) owner: Option<Owner>,
    pub(crate) credentials: Vec<Credential>,
    pub(crate) timeout: Duration,
    pub(crate) slug: String,
    pub(crate) workflow: Arc<dyn ErasedWorkflow>,
    pub(crate) invalid: Option<String>,
    pub(crate) problem: Option<String>,
    pub(crate) fetch: Fetch,
}

impl Poll {
    fn declared<I: Payload, O: Payload>(
        source: PollSource,
        workflow: &Workflow<I, O>,
        problem: Option<String>,
        fetch: Fetch,
    ) -> Poll {
        Poll {
            name: source.name,
            // A bad interval is the registry's problem: the source is never polled.
            interval: source.interval.unwrap_or(DEFAULT_INTERVAL),
            start_from: source.start_from,
            owner: source.owner,
            credentials: source.credentials,
            timeout: source.timeout,
            slug: workflow.slug().to_owned(),
            workflow: workflow.erased(),
            invalid: workflow.invalid().map(str::to_owned),
            problem,
            fetch,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("workflow", &self.slug)
            .finish_non_exhaustive()
    }
}
