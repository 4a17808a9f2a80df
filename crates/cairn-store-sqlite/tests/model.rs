//! The SQLite store against the memory store: generated sequences of run operations, with
//! the store closed and opened again on the same file between any two of them (see
//! `cairn_store::conformance::check_against_the_memory_store`).

use std::{future::Future, pin::Pin, sync::Arc};

use cairn_store::{
    Store,
    conformance::{ModelBackend, check_against_the_memory_store},
};
use cairn_store_sqlite::SqliteStore;

struct Sqlite;

impl ModelBackend for Sqlite {
    type Home = tempfile::TempDir;

    fn home(&self) -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    fn open<'a>(
        &'a self,
        home: &'a tempfile::TempDir,
    ) -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + 'a>> {
        Box::pin(async move {
            let store = SqliteStore::open_in_dir(home.path()).expect("open the SQLite store");
            Arc::new(store) as Arc<dyn Store>
        })
    }
}

#[test]
fn the_sqlite_store_answers_as_the_memory_store_across_reopens() {
    check_against_the_memory_store(&Sqlite, 64, 60);
}
