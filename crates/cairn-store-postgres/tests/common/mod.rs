//! Test databases: every test gets a schema of its own, freshly named, in the PostgreSQL
//! server named by `CAIRN_TEST_DATABASE_URL` (see `cairn_test_support::postgres_url`),
//! dropped when the test ends (best effort). Shared by the crate's unit tests and its
//! integration tests.
#![allow(dead_code)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_store_postgres::{PostgresOptions, PostgresStore};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A schema for one test, dropped (with everything in it) when this is dropped.
pub struct TestSchema {
    /// The server.
    pub url: String,
    /// The schema's name: `cairn_test_<uuid>`.
    pub name: String,
}

impl TestSchema {
    /// A new, unused name; the store creates the schema when it connects. `None` when the
    /// test command found no PostgreSQL: the test has been reported as not run and returns.
    pub fn new() -> Option<TestSchema> {
        Some(TestSchema {
            url: cairn_test_support::postgres_url()?,
            name: format!("cairn_test_{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Store options for this schema, with a small pool and `application_name`.
    pub fn options(&self, application_name: &str) -> PostgresOptions {
        PostgresOptions {
            schema: Some(self.name.clone()),
            max_connections: 4,
            application_name: application_name.to_owned(),
            ..PostgresOptions::default()
        }
    }

    /// A store on this schema.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect_with(&self.url, self.options("cairn-test"))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot connect to the test database {} (set CAIRN_TEST_DATABASE_URL): {error}",
                    self.url
                )
            })
    }

    /// A store on this schema whose connections alone carry an `application_name` made of
    /// `prefix` and the schema's name, and that name (to find them in `pg_stat_activity`).
    pub async fn store_named(&self, prefix: &str) -> (PostgresStore, String) {
        let app = format!("{prefix}-{}", &self.name[11..23]);
        let store = PostgresStore::connect_with(&self.url, self.options(&app))
            .await
            .expect("connect");
        (store, app)
    }

    /// Two stores on this schema, as two worker processes would have: `worker-a` and
    /// `worker-b` in `pg_stat_activity`.
    pub async fn two_stores(&self) -> (Arc<PostgresStore>, Arc<PostgresStore>) {
        let connect = |name: &str| PostgresStore::connect_with(&self.url, self.options(name));
        let (a, b) = tokio::join!(connect("worker-a"), connect("worker-b"));
        (
            Arc::new(a.expect("connect a")),
            Arc::new(b.expect("connect b")),
        )
    }

    /// Terminates the backends of `application_name` whose current query is `LIKE query`
    /// (`%` for all), waiting until they are gone; returns how many there were.
    pub async fn terminate(&self, application_name: &str, query: &str) -> usize {
        let mut raw = self.raw().await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE $2",
        )
        .bind(application_name)
        .bind(query)
        .fetch_all(&mut raw)
        .await
        .expect("terminate the store's connections");
        raw.close().await.expect("close");
        killed.into_iter().filter(|killed| *killed).count()
    }

    /// A plain connection to the server, outside any store.
    pub async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestSchema {
    /// Drops the schema on a thread of its own (this may run inside the test's runtime,
    /// which must not be blocked on), waiting at most a few seconds for locks.
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(|error| error.to_string())?;
                let sql = format!("SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {name} CASCADE");
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(|error| error.to_string())?;
                conn.close().await.map_err(|error| error.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test schema {}: {error}", self.name),
            Err(_) => eprintln!("dropping test schema {} panicked", self.name),
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
