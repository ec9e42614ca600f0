//! The shared conformance suite (`testkit::conformance`) over PostgreSQL: every store the
//! closure returns is a separate pool, as a separate process would have.

mod common;

use common::{settings, shared_store};
use coord_postgres::PgStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    shared_store().await;
    testkit::conformance::run_all(|| async {
        PgStore::connect(settings("coord_pg_shared")).await.unwrap()
    })
    .await;
}
