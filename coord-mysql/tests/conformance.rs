//! The shared conformance suite (`testkit::conformance`) against the real MariaDB.

mod common;

use coord_mysql::MySqlStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    // Migrate once; every store the suite makes then connects with migrations off.
    drop(common::store().await);
    testkit::conformance::run_all(|| async {
        MySqlStore::connect(common::settings()).await.unwrap()
    })
    .await;
}
