//! The conformance suite every [`Store`] backend runs: one `pub async fn` per part of the
//! contract documented on [`Store`], and [`conformance_tests!`](crate::conformance_tests),
//! which turns them into one `#[tokio::test]` each in the backend's crate.
//!
//! Every function takes a fresh, empty store and panics (with a message naming the broken
//! rule) when the store breaks the contract. Times are fixed (`now_ms` is passed in), so
//! the suite is deterministic apart from the interleaving of its concurrency tests, whose
//! assertions hold for every interleaving.
//!
//! A backend runs the suite from an integration test, e.g. `tests/conformance.rs`:
//!
//! ```text
//! cairn_store::conformance_tests!(|| async {
//!     let dir = tempfile::tempdir().expect("a temp dir");
//!     let store = cairn_store_sqlite::SqliteStore::open_in_dir(dir.path()).expect("open");
//!     cairn_store::conformance::TestStore::with_guard(store, dir)
//! });
//! ```

mod append;
mod children;
mod claim;
mod control;
mod create;
mod credentials;
mod follow;
mod instances;
mod lease;
#[cfg(feature = "model")]
mod model;
mod polls;
mod read;
mod schedules;
mod summaries;
mod support;
mod waits;
mod webhooks;

use std::{any::Any, sync::Arc};

use crate::Store;

pub use append::{
    an_append_moves_updated_at, append_is_fenced_by_the_lease,
    concurrent_appends_to_many_runs_all_land, terminal_events_end_the_run,
};
pub use children::{
    a_child_end_leaves_a_running_parent_alone, a_child_end_wakes_its_parked_parent,
    park_with_a_child_depends_on_the_child,
};
pub use claim::{
    claim_ready_concurrent_calls_never_share_a_run, claim_ready_takes_ready_runs_oldest_first,
    claim_run_outcomes, claim_run_takes_over_a_lapsed_lease,
    next_ready_at_reports_the_earliest_wake_up,
};
pub use control::{
    cancel_run_ends_the_run_with_the_reason, retry_run_requeues_failed_and_canceled_runs,
};
pub use create::{
    commits_are_timed_once_observed, create_run_history_takes_effect_like_an_append,
    create_run_records_run_created_and_history, create_run_with_a_lease_is_held_by_its_creator,
    create_run_with_an_existing_id_writes_nothing, get_run_and_events_of_an_unknown_run,
    idempotency_key_yields_one_run_per_workflow,
};
pub use credentials::{
    a_run_keeps_its_owner, credentials_round_trip_with_one_default_per_holder,
    list_credentials_filters_and_orders, reseal_credentials_is_all_or_nothing,
};
pub use follow::{
    a_watch_reports_every_kind_of_change, events_after_returns_the_events_that_follow_a_seq,
    every_watch_sees_a_change,
};
pub use instances::{
    a_follower_sees_every_event_once_in_order, a_watch_sees_another_instances_commits,
};
pub use lease::{
    release_lease_requeues_the_run_from_ready_at, renew_lease_extends_and_is_fenced,
    the_store_clock_reads_the_time_of_day,
};
#[cfg(feature = "model")]
pub use model::{ModelBackend, Op, Who, check_against_the_memory_store};
pub use polls::{
    a_poll_commit_records_items_and_starts_the_new_ones, a_stale_poll_lease_writes_nothing,
    item_keys_are_forgotten_after_seven_days, poll_sources_are_declared_claimed_and_controlled,
    racing_poll_commits_start_one_set_of_runs,
};
pub use read::{
    events_are_numbered_in_order_without_gaps, list_runs_filters_and_orders_newest_first,
    list_runs_filters_by_patch_marker_and_unended, list_runs_filters_by_statuses_time_and_search,
    payloads_round_trip_exactly,
};
pub use schedules::{
    a_fire_returns_the_run_an_existing_key_has, a_stale_fire_writes_nothing,
    concurrent_fires_create_one_run, delete_schedule_removes_it_and_its_misses,
    fire_schedule_creates_runs_and_advances, list_runs_filters_by_trigger_prefix,
    put_schedule_upserts_by_id,
};
pub use summaries::list_run_summaries_list_what_list_runs_lists;
pub use waits::{
    a_resume_before_parking_is_not_lost, hooks_close_with_their_run_and_list_by_run_and_state,
    park_run_frees_the_lease_until_the_wake_time,
    resume_hook_records_the_payload_once_and_wakes_the_run,
    time_out_hook_is_fenced_and_loses_to_a_resume,
};
pub use webhooks::{
    webhook_deliveries_are_listed_newest_first, webhook_deliveries_keep_the_newest,
};

/// A store under test, plus whatever must outlive it (e.g. the temporary directory holding
/// its database file). The store is dropped before the guard.
pub struct TestStore {
    store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

impl TestStore {
    /// A store that needs nothing kept alive beside it.
    pub fn new(store: impl Store) -> TestStore {
        TestStore::with_guard(store, ())
    }

    /// A store and a guard dropped after it (a `tempfile::TempDir`, a server handle, …).
    pub fn with_guard(store: impl Store, guard: impl Send + 'static) -> TestStore {
        TestStore {
            store: Arc::new(store),
            _guard: Box::new(guard),
        }
    }

    /// The store, to hand to a suite function.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
}

/// Expands to one `#[tokio::test]` per function of [`conformance`](crate::conformance), each
/// on a fresh store made by `factory`.
///
/// `factory` is any expression callable with no arguments that returns a future resolving to
/// a [`TestStore`](crate::conformance::TestStore): a closure `|| async { … }` or the name of
/// an `async fn`. Each test calls it once, so give every call its own database (a new temp
/// directory, a new schema): the tests run in parallel. A backend whose server may be absent
/// returns `Option<TestStore>` instead; on `None` the test returns at once (the factory
/// reports it as not run).
///
/// The generated tests use `::tokio` from the **calling** crate (so `cairn-store` does not
/// force test features on its users): add tokio to the backend's `[dev-dependencies]` with the
/// `macros` and `rt-multi-thread` features. Each test runs on a two-thread runtime so the
/// concurrency tests really race. Wrap the call in a `mod` to keep the test names apart from
/// the crate's own.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(
            $factory;
            create_run_records_run_created_and_history,
            create_run_history_takes_effect_like_an_append,
            idempotency_key_yields_one_run_per_workflow,
            create_run_with_an_existing_id_writes_nothing,
            create_run_with_a_lease_is_held_by_its_creator,
            get_run_and_events_of_an_unknown_run,
            events_are_numbered_in_order_without_gaps,
            list_runs_filters_and_orders_newest_first,
            list_runs_filters_by_patch_marker_and_unended,
            payloads_round_trip_exactly,
            claim_run_outcomes,
            claim_run_takes_over_a_lapsed_lease,
            claim_ready_takes_ready_runs_oldest_first,
            claim_ready_concurrent_calls_never_share_a_run,
            next_ready_at_reports_the_earliest_wake_up,
            renew_lease_extends_and_is_fenced,
            the_store_clock_reads_the_time_of_day,
            release_lease_requeues_the_run_from_ready_at,
            append_is_fenced_by_the_lease,
            an_append_moves_updated_at,
            terminal_events_end_the_run,
            concurrent_appends_to_many_runs_all_land,
            cancel_run_ends_the_run_with_the_reason,
            retry_run_requeues_failed_and_canceled_runs,
            park_run_frees_the_lease_until_the_wake_time,
            resume_hook_records_the_payload_once_and_wakes_the_run,
            a_resume_before_parking_is_not_lost,
            time_out_hook_is_fenced_and_loses_to_a_resume,
            hooks_close_with_their_run_and_list_by_run_and_state,
            events_after_returns_the_events_that_follow_a_seq,
            a_watch_reports_every_kind_of_change,
            every_watch_sees_a_change,
            a_child_end_wakes_its_parked_parent,
            a_child_end_leaves_a_running_parent_alone,
            park_with_a_child_depends_on_the_child,
            commits_are_timed_once_observed,
            a_run_keeps_its_owner,
            credentials_round_trip_with_one_default_per_holder,
            list_credentials_filters_and_orders,
            reseal_credentials_is_all_or_nothing,
            put_schedule_upserts_by_id,
            fire_schedule_creates_runs_and_advances,
            a_stale_fire_writes_nothing,
            concurrent_fires_create_one_run,
            a_fire_returns_the_run_an_existing_key_has,
            poll_sources_are_declared_claimed_and_controlled,
            a_poll_commit_records_items_and_starts_the_new_ones,
            a_stale_poll_lease_writes_nothing,
            racing_poll_commits_start_one_set_of_runs,
            item_keys_are_forgotten_after_seven_days,
            delete_schedule_removes_it_and_its_misses,
            list_runs_filters_by_trigger_prefix,
            webhook_deliveries_are_listed_newest_first,
            webhook_deliveries_keep_the_newest,
            list_runs_filters_by_statuses_time_and_search,
            list_run_summaries_list_what_list_runs_lists,
        );
    };
}

/// The expansion behind [`conformance_tests!`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture: ::std::option::Option<$crate::conformance::TestStore> =
                    ($factory)().await.into();
                // `None`: the backend's server is not available here, and the factory has
                // said so (the test is reported as not run, not passed).
                let ::std::option::Option::Some(fixture) = fixture else {
                    return;
                };
                $crate::conformance::$test(fixture.store()).await;
            }
        )+
    };
}
