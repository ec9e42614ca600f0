//! The MySQL migrations against the real MariaDB: idempotent, safe to run concurrently,
//! upgrading a seed-era database in place, and printable DDL that applies as-is.

mod common;

use std::time::Duration;

use common::*;
use coord_core::{
    CoordinationStore, HeartbeatRequest, OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use coord_mysql::MySqlStore;
use mysql_async::prelude::Queryable;

const SEED_DDL: &str = "CREATE TABLE token_holder (group_id VARCHAR(128) NOT NULL PRIMARY KEY, task_id VARCHAR(128) NOT NULL, term BIGINT NOT NULL DEFAULT 1);
CREATE TABLE health_check (task_id VARCHAR(128) NOT NULL, group_id VARCHAR(128) NOT NULL, last_heartbeat DATETIME NOT NULL, PRIMARY KEY (task_id, group_id));";

async fn applied(database: &str) -> Vec<(i64, bool)> {
    let mut conn = admin(database).await;
    let rows: Vec<(i64, bool)> = conn
        .query("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    rows
}

async fn column_type(database: &str, table: &str, column: &str) -> Option<String> {
    let mut conn = admin(database).await;
    let found: Option<String> = conn
        .exec_first(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            (database, table, column),
        )
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    found
}

#[tokio::test]
async fn applying_twice_is_a_no_op() {
    let db = fresh_database().await;
    let url = url_for(&db);
    migrations::migrate_mysql(&url).await.unwrap();
    let first = applied(&db).await;
    assert_eq!(first.len() as i64, migrations::MYSQL_SCHEMA_VERSION);
    assert!(first.iter().all(|(_, ok)| *ok));
    migrations::migrate_mysql(&url).await.unwrap();
    assert_eq!(applied(&db).await, first);
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_both_succeed() {
    let db = fresh_database().await;
    let url = url_for(&db);
    let (a, b) = tokio::join!(
        migrations::migrate_mysql(&url),
        migrations::migrate_mysql(&url)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        applied(&db).await.len() as i64,
        migrations::MYSQL_SCHEMA_VERSION
    );
    // And the store's own migrate, twice at once, on top.
    let mut s = settings_for(&db);
    s.migrate_on_connect = true;
    let store = MySqlStore::connect(s).await.unwrap();
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    a.unwrap();
    b.unwrap();
    drop_database(&db).await;
}

#[tokio::test]
async fn seed_database_is_upgraded_in_place_and_works() {
    let db = fresh_database().await;
    let mut conn = admin(&db).await;
    conn.query_drop(SEED_DDL).await.unwrap();
    conn.query_drop(
        "INSERT INTO token_holder (group_id, task_id, term) VALUES ('orders', 'old-node', 3);
         INSERT INTO health_check (task_id, group_id, last_heartbeat) VALUES ('old-node', 'orders', NOW());
         INSERT INTO health_check (task_id, group_id, last_heartbeat) VALUES ('other-node', 'orders', NOW() - INTERVAL 1 HOUR)",
    )
    .await
    .unwrap();
    conn.disconnect().await.unwrap();

    // Migrations off: a clear schema error that says what to run.
    let err = MySqlStore::connect(settings_for(&db)).await.unwrap_err();
    let StoreError::Schema(message) = &err else {
        panic!("expected a schema error, got {err:?}")
    };
    assert!(message.contains("ftp-listener migrate"), "{message}");
    assert!(
        message.contains(&format!(
            "this build needs {}",
            migrations::MYSQL_SCHEMA_VERSION
        )),
        "{message}"
    );

    let mut s = settings_for(&db);
    s.migrate_on_connect = true;
    let store = MySqlStore::connect(s).await.unwrap();
    assert_eq!(
        column_type(&db, "health_check", "last_heartbeat")
            .await
            .as_deref(),
        Some("datetime(3)")
    );
    assert_eq!(
        column_type(&db, "token_holder", "renewed_at")
            .await
            .as_deref(),
        Some("datetime(3)")
    );

    // The seed-era holder has no lease: it counts as released, and a new member takes over.
    let group = coord_core::GroupId::new("orders").unwrap();
    let me = member("new-node");
    let inc = incarnation();
    let seen = store
        .heartbeat(&HeartbeatRequest {
            group: group.clone(),
            member: me.clone(),
            incarnation: inc,
            liveness_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!(seen.own_row, OwnRow::Written);
    assert_eq!(seen.term, Term(3));
    assert_eq!(seen.holder, None);
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: me.clone(),
            incarnation: inc,
            observed_term: Term(3),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(4)));
    // The seed-era heartbeat rows survive, with no incarnation; a stale one can be replaced.
    let members = store.members(&group).await.unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(names, ["new-node", "old-node", "other-node"]);
    let replaced = store
        .heartbeat(&HeartbeatRequest {
            group: group.clone(),
            member: member("other-node"),
            incarnation: incarnation(),
            liveness_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!(replaced.own_row, OwnRow::Written);
    assert!(replaced.holder_is(&me, inc));
    drop_database(&db).await;
}

#[tokio::test]
async fn printed_ddl_applies_on_an_empty_database() {
    let db = fresh_database().await;
    let mut conn = admin(&db).await;
    let mut result = conn.query_iter(migrations::mysql_ddl()).await.unwrap();
    while !result.is_empty() {
        result.collect::<mysql_async::Row>().await.unwrap();
    }
    drop(result);
    conn.disconnect().await.unwrap();
    for (table, column) in [
        ("token_holder", "renewed_at"),
        ("health_check", "incarnation"),
        ("processed_file", "path_hash"),
        ("cluster_config", "body"),
    ] {
        assert!(
            column_type(&db, table, column).await.is_some(),
            "{table}.{column} missing"
        );
    }
    // The store accepts it, and a later migrate finds nothing to do (checksums match).
    let store = MySqlStore::connect(settings_for(&db)).await.unwrap();
    store.migrate().await.unwrap();
    assert!(applied(&db).await.iter().all(|(_, ok)| *ok));
    drop_database(&db).await;
}

#[tokio::test]
async fn older_schema_is_refused_with_both_versions() {
    let db = fresh_database().await;
    migrations::migrate_mysql(&url_for(&db)).await.unwrap();
    let mut conn = admin(&db).await;
    conn.query_drop("DELETE FROM _sqlx_migrations WHERE version >= 4")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let err = MySqlStore::connect(settings_for(&db)).await.unwrap_err();
    let StoreError::Schema(message) = &err else {
        panic!("expected a schema error, got {err:?}")
    };
    assert!(
        message.contains(&format!(
            "schema version 3 is older than {}",
            migrations::MYSQL_SCHEMA_VERSION
        )),
        "{message}"
    );
    assert!(message.contains("ftp-listener migrate"), "{message}");
    drop_database(&db).await;
}
