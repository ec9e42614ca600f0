//! The shared conformance suite over SQLite: every store the closure returns has its own pool
//! on the same file, as separate processes on one host would.

mod common;

use common::TempDb;
use coord_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let db = TempDb::migrated().await;
    let settings = db.settings();
    testkit::conformance::run_all(|| async {
        SqliteStore::connect(settings.clone()).await.unwrap()
    })
    .await;
}
