//! The shared conformance suite (`testkit::conformance`) over the real Redis: every store the
//! closure returns has its own connection, as a separate process would have. All keys live
//! under a prefix unique to this run, removed at the end.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let prefix = common::unique_prefix("conformance");
    testkit::conformance::run_all_without_write_times(|| common::store(&prefix)).await;
    assert!(
        !common::keys_under(&prefix).await.is_empty(),
        "wrote under the prefix"
    );
    common::clean_up(&prefix).await;
    assert!(common::keys_under(&prefix).await.is_empty());
}
