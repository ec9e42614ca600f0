//! The SQLite migrations: idempotent, safe to start concurrently, printable, and able to take
//! over a database made with the seeds' DDL.

mod common;

use common::*;
use coord_core::{CoordinationStore, OwnRow, TakeoverOutcome, Term};
use coord_sqlite::{SQLITE_SCHEMA_VERSION, SqliteStore};
use migrations::{migrate_sqlite, sqlite_ddl};

async fn applied_versions(db: &TempDb) -> Vec<i64> {
    let mut conn = db.raw().await;
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn applying_twice_is_a_no_op() {
    let db = TempDb::new();
    let url = format!("sqlite://{}", db.file.display());
    migrate_sqlite(&url).await.unwrap();
    let first = applied_versions(&db).await;
    migrate_sqlite(&url).await.unwrap();
    assert_eq!(applied_versions(&db).await, first);
    assert_eq!(first.last().copied(), Some(SQLITE_SCHEMA_VERSION));
    // And the store accepts the result.
    db.store().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_both_succeed() {
    for _ in 0..5 {
        let db = TempDb::new();
        let path = db.file.to_str().unwrap().to_owned();
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { migrate_sqlite(&path).await })
            })
            .collect();
        for run in runs {
            run.await.unwrap().unwrap();
        }
        let versions = applied_versions(&db).await;
        assert_eq!(versions, (1..=SQLITE_SCHEMA_VERSION).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_with_migrate_on_both_connect() {
    let db = TempDb::new();
    let mut settings = db.settings();
    settings.migrate = true;
    let (a, b) = tokio::join!(
        SqliteStore::connect(settings.clone()),
        SqliteStore::connect(settings)
    );
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn printed_ddl_applies_on_an_empty_file() {
    let db = TempDb::new();
    let mut conn = db.raw().await;
    let ddl = sqlite_ddl();
    exec(&mut conn, &format!("BEGIN;\n{ddl}\nCOMMIT;")).await;
    drop(conn);
    // The store accepts it without migrating, and the migrator finds nothing to do.
    let store = db.store().await;
    let before = applied_versions(&db).await;
    migrate_sqlite(db.file.to_str().unwrap()).await.unwrap();
    assert_eq!(applied_versions(&db).await, before);
    let g = group("ddl");
    let obs = store.heartbeat(&beat(&g, &member("m"), 1)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::Written);
}

#[tokio::test]
async fn a_seed_ddl_database_is_upgraded_in_place() {
    let db = TempDb::new();
    let mut conn = db.raw().await;
    exec(
        &mut conn,
        "CREATE TABLE token_holder (
            group_id VARCHAR(128) NOT NULL PRIMARY KEY,
            task_id VARCHAR(128) NOT NULL,
            term BIGINT NOT NULL DEFAULT 1
         );
         CREATE TABLE health_check (
            task_id VARCHAR(128) NOT NULL,
            group_id VARCHAR(128) NOT NULL,
            last_heartbeat DATETIME NOT NULL,
            PRIMARY KEY (task_id, group_id)
         );
         INSERT INTO token_holder (group_id, task_id) VALUES ('legacy', 'old-node');
         INSERT INTO health_check VALUES ('old-node', 'legacy', '2024-01-02 03:04:05');",
    )
    .await;
    migrate_sqlite(db.file.to_str().unwrap()).await.unwrap();

    // The text timestamp became integer milliseconds (UTC).
    let ms: i64 = sqlx::query_scalar("SELECT last_heartbeat FROM health_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ms, 1_704_164_645_000);

    // The seed row counts as released: a standby sees term 1 and no holder, and takes over.
    let store = db.store().await;
    let g = coord_core::GroupId::new("legacy").unwrap();
    let m = member("new-node");
    let obs = store.heartbeat(&beat(&g, &m, 9)).await.unwrap();
    assert_eq!(obs.term, Term(1));
    assert_eq!(obs.holder, None);
    assert_eq!(
        store.take_over(&take(&g, &m, 9, 1)).await.unwrap(),
        TakeoverOutcome::Won(Term(2))
    );
    // The old member's heartbeat is still listed, with its incarnation unknown.
    let members = store.members(&g).await.unwrap();
    assert!(members.iter().any(|s| s.member.as_str() == "old-node"));
}

/// A database migrated by a newer build: this build's store still connects (migrations are
/// additive), but its migrator refuses to run against it, naming the unknown version.
#[tokio::test]
async fn a_newer_database_connects_but_is_not_migrated_by_an_older_build() {
    let db = TempDb::migrated().await;
    let mut conn = db.raw().await;
    exec(
        &mut conn,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (999, 'from the future', TRUE, X'00', 0)",
    )
    .await;
    db.store().await;
    let err = migrate_sqlite(db.file.to_str().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
    let mut settings = db.settings();
    settings.migrate = true;
    let err = SqliteStore::connect(settings).await.unwrap_err();
    assert!(matches!(err, coord_core::StoreError::Schema(_)), "{err:?}");
    eprintln!("{err}");
}
