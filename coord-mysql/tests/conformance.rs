//! The shared conformance suite (`testkit::conformance`) against the real MariaDB.

mod common;

use coord_core::{GroupId, StoredLedgerRow};
use coord_mysql::MySqlStore;
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};
use testkit::conformance::RawRows;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    // Migrate once; every store the suite makes then connects with migrations off.
    drop(common::store().await);
    testkit::conformance::run_all(|| async {
        MySqlStore::connect(common::settings()).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    drop(common::store().await);
    testkit::history_conformance::run(|| async {
        MySqlStore::connect(common::settings()).await.unwrap()
    })
    .await;
}

/// The cluster configuration and each member's apply status (`ConfigStore`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_conformance() {
    drop(common::store().await);
    let store = MySqlStore::connect(common::settings()).await.unwrap();
    testkit::config_conformance::run(&store).await;
}

/// Rows written behind the store's back, on a root connection of their own.
struct MySqlRaw;

impl RawRows for MySqlRaw {
    async fn seed_holder(&self, group: &GroupId, task_id: &str, term: i64) {
        let mut conn = common::admin(&common::db()).await;
        conn.exec_drop(
            "INSERT INTO token_holder (group_id, task_id, term) VALUES (?, ?, ?)",
            (group.as_str(), task_id, term),
        )
        .await
        .unwrap();
        conn.disconnect().await.unwrap();
    }

    async fn seed_heartbeat(&self, group: &GroupId, task_id: &str) {
        let mut conn = common::admin(&common::db()).await;
        conn.exec_drop(
            "INSERT INTO health_check (task_id, group_id, last_heartbeat) \
             VALUES (?, ?, UTC_TIMESTAMP(3))",
            (task_id, group.as_str()),
        )
        .await
        .unwrap();
        conn.disconnect().await.unwrap();
    }

    async fn ledger_row(&self, group: &GroupId, row: &StoredLedgerRow) -> bool {
        // A utf8mb4 column cannot hold a path that is not UTF-8 (strict mode refuses it).
        if std::str::from_utf8(&row.path).is_err() {
            return false;
        }
        let hash: String = Sha256::digest(&row.path)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut conn = common::admin(&common::db()).await;
        conn.exec_drop(
            "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, \
             attempts, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, UTC_TIMESTAMP(3))",
            (
                group.as_str(),
                hash,
                row.path.clone(),
                row.size,
                row.mtime_ms,
                row.state.clone(),
                row.term,
                row.attempts,
            ),
        )
        .await
        .unwrap();
        conn.disconnect().await.unwrap();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_raw_rows() {
    drop(common::store().await);
    testkit::conformance::run_raw(
        || async { MySqlStore::connect(common::settings()).await.unwrap() },
        &MySqlRaw,
    )
    .await;
}
