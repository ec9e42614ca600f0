//! The shared conformance suite over SQLite: every store the closure returns has its own pool
//! on the same file, as separate processes on one host would.

mod common;

use common::TempDb;
use coord_core::{GroupId, StoredLedgerRow};
use coord_sqlite::SqliteStore;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use testkit::conformance::RawRows;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let db = TempDb::migrated().await;
    let settings = db.settings();
    testkit::conformance::run_all(|| async {
        SqliteStore::connect(settings.clone()).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    let db = TempDb::migrated().await;
    let settings = db.settings();
    testkit::history_conformance::run(|| async {
        SqliteStore::connect(settings.clone()).await.unwrap()
    })
    .await;
}

/// The cluster configuration and each member's apply status (`ConfigStore`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_conformance() {
    let db = TempDb::migrated().await;
    let store = SqliteStore::connect(db.settings()).await.unwrap();
    testkit::config_conformance::run(&store).await;
}

/// The database's clock in integer milliseconds, as the store writes it.
const NOW_MS: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

/// Rows written behind the store's back, on a raw connection to the same file.
impl RawRows for TempDb {
    async fn seed_holder(&self, group: &GroupId, task_id: &str, term: i64) {
        let mut conn = self.raw().await;
        sqlx::query("INSERT INTO token_holder (group_id, task_id, term) VALUES (?1, ?2, ?3)")
            .bind(group.as_str())
            .bind(task_id)
            .bind(term)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    async fn seed_heartbeat(&self, group: &GroupId, task_id: &str) {
        let mut conn = self.raw().await;
        sqlx::query(&format!(
            "INSERT INTO health_check (task_id, group_id, last_heartbeat) VALUES (?1, ?2, {NOW_MS})"
        ))
        .bind(task_id)
        .bind(group.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    async fn ledger_row(&self, group: &GroupId, row: &StoredLedgerRow) -> bool {
        let hash: String = Sha256::digest(&row.path)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut conn = self.raw().await;
        // SQLite keeps the bytes it is given: a path that is not UTF-8 is stored as TEXT.
        sqlx::query(&format!(
            "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, \
             attempts, last_error, updated_at) \
             VALUES (?1, ?2, CAST(?3 AS TEXT), ?4, ?5, CAST(?6 AS TEXT), ?7, ?8, NULL, {NOW_MS})"
        ))
        .bind(group.as_str())
        .bind(hash)
        .bind(row.path.clone())
        .bind(row.size)
        .bind(row.mtime_ms)
        .bind(row.state.clone())
        .bind(row.term)
        .bind(row.attempts)
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_raw_rows() {
    let db = TempDb::migrated().await;
    let settings = db.settings();
    testkit::conformance::run_raw(
        || async { SqliteStore::connect(settings.clone()).await.unwrap() },
        &db,
    )
    .await;
}
