//! The PostgreSQL store against the memory store: generated sequences of run operations,
//! with the store's connections closed and a new store connected to the same schema between
//! any two of them (see `cairn_store::conformance::check_against_the_memory_store`). Not run
//! (and reported so) when the test command found no PostgreSQL.

mod common;

use std::{future::Future, pin::Pin, sync::Arc};

use cairn_store::{
    Store,
    conformance::{ModelBackend, check_against_the_memory_store},
};
use common::TestSchema;

struct Postgres;

impl ModelBackend for Postgres {
    type Home = TestSchema;

    fn home(&self) -> TestSchema {
        TestSchema::new().expect("checked before the model check starts")
    }

    fn open<'a>(
        &'a self,
        home: &'a TestSchema,
    ) -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + 'a>> {
        Box::pin(async move { Arc::new(home.store().await) as Arc<dyn Store> })
    }
}

#[test]
fn the_postgres_store_answers_as_the_memory_store_across_reconnects() {
    if TestSchema::new().is_none() {
        return;
    }
    check_against_the_memory_store(&Postgres, 32, 50);
}
