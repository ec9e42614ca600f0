//! The shared conformance suite (`testkit::conformance`) over PostgreSQL: every store the
//! closure returns is a separate pool, as a separate process would have.

mod common;

use common::{admin, fresh_schema, settings, shared_store};
use coord_core::{GroupId, StoredLedgerRow};
use coord_postgres::PgStore;
use sha2::{Digest, Sha256};
use testkit::conformance::RawRows;
use tokio_postgres::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    shared_store().await;
    testkit::conformance::run_all(|| async {
        PgStore::connect(settings("coord_pg_shared")).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    shared_store().await;
    testkit::history_conformance::run(|| async {
        PgStore::connect(settings("coord_pg_shared")).await.unwrap()
    })
    .await;
}

/// The cluster configuration and each member's apply status (`ConfigStore`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_conformance() {
    shared_store().await;
    let store = PgStore::connect(settings("coord_pg_shared")).await.unwrap();
    testkit::config_conformance::run(&store).await;
}

/// Rows written behind the store's back, in a schema of their own whose `state` check is
/// dropped, as a newer build's migration might (so an unknown state word can be stored).
struct PgRaw {
    client: Client,
    schema: String,
}

impl RawRows for PgRaw {
    async fn seed_holder(&self, group: &GroupId, task_id: &str, term: i64) {
        let sql = format!(
            "INSERT INTO {}.token_holder (group_id, task_id, term) VALUES ($1, $2, $3)",
            self.schema
        );
        self.client
            .execute(&sql, &[&group.as_str(), &task_id, &term])
            .await
            .unwrap();
    }

    async fn seed_heartbeat(&self, group: &GroupId, task_id: &str) {
        let sql = format!(
            "INSERT INTO {}.health_check (task_id, group_id, last_heartbeat) \
             VALUES ($1, $2, clock_timestamp() AT TIME ZONE 'UTC')",
            self.schema
        );
        self.client
            .execute(&sql, &[&task_id, &group.as_str()])
            .await
            .unwrap();
    }

    async fn ledger_row(&self, group: &GroupId, row: &StoredLedgerRow) -> bool {
        // A UTF-8 database's text cannot hold anything else.
        let (Ok(path), Ok(state)) = (
            std::str::from_utf8(&row.path),
            std::str::from_utf8(&row.state),
        ) else {
            return false;
        };
        let hash: String = Sha256::digest(&row.path)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sql = format!(
            "INSERT INTO {}.processed_file (group_id, path_hash, path, size, mtime_ms, state, \
             term, attempts, last_error, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, clock_timestamp())",
            self.schema
        );
        let attempts = i32::try_from(row.attempts).unwrap();
        self.client
            .execute(
                &sql,
                &[
                    &group.as_str(),
                    &hash,
                    &path,
                    &row.size,
                    &row.mtime_ms,
                    &state,
                    &row.term,
                    &attempts,
                ],
            )
            .await
            .unwrap();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_raw_rows() {
    let schema = fresh_schema("coord_pg_raw").await;
    let store = PgStore::open(settings(&schema)).unwrap();
    store.migrate().await.unwrap();
    let client = admin().await;
    client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.processed_file DROP CONSTRAINT IF EXISTS processed_file_state_check"
        ))
        .await
        .unwrap();
    let raw = PgRaw { client, schema };
    testkit::conformance::run_raw(
        || async { PgStore::connect(settings("coord_pg_raw")).await.unwrap() },
        &raw,
    )
    .await;
}
