//! Bad input gets one clear error, no panic, no retry storm.

mod common;

use std::time::{Duration, Instant};

use common::*;
use coord_core::{CoordinationStore, StoreError};
use coord_sqlite::{SqliteSettings, SqliteStore};

async fn connect_err(settings: SqliteSettings) -> StoreError {
    SqliteStore::connect(settings).await.unwrap_err()
}

#[tokio::test]
async fn a_directory_that_does_not_exist_is_named() {
    for migrate in [false, true] {
        let mut settings = SqliteSettings::new("/no/such/dir/coord.db");
        settings.migrate = migrate;
        let err = connect_err(settings).await;
        assert!(
            err.to_string().contains("/no/such/dir does not exist"),
            "migrate={migrate}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot connect to sqlite:///no/such/dir/coord.db: "),
            "{err}"
        );
        assert!(!err.is_transient(), "{err:?}");
    }
}

#[tokio::test]
async fn a_directory_that_is_not_writable_is_a_clear_error() {
    // /proc refuses new files even to root (a chmod-ed directory would not stop root).
    let mut settings = SqliteSettings::new("/proc/coord-sqlite-test.db");
    settings.migrate = true;
    let err = connect_err(settings).await;
    let text = err.to_string();
    assert!(
        text.contains("/proc/coord-sqlite-test.db")
            && text.contains("unable to open")
            && text.contains("writable"),
        "{text}"
    );
    assert!(!err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_directory_given_as_the_file_is_named() {
    let db = TempDb::new();
    let mut settings = SqliteSettings::new(db.dir.path().to_str().unwrap());
    settings.migrate = true;
    let err = connect_err(settings).await;
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let db = TempDb::new();
    std::fs::write(
        &db.file,
        "this is a text file, not a database\n".repeat(200),
    )
    .unwrap();
    let err = connect_err(db.settings()).await;
    assert!(err.to_string().contains("file is not a database"), "{err}");
    assert!(
        matches!(
            err,
            StoreError::Connect {
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
    let expected = format!("cannot connect to sqlite://{}: ", db.file.display());
    assert!(err.to_string().starts_with(&expected), "{err}");
    assert!(!err.to_string().contains("group"), "{err}");
    let mut settings = db.settings();
    settings.migrate = true;
    let err = connect_err(settings).await;
    assert!(err.to_string().contains("file is not a database"), "{err}");
    // Nothing was overwritten.
    assert!(
        std::fs::read_to_string(&db.file)
            .unwrap()
            .starts_with("this is a text file")
    );
}

#[tokio::test]
async fn a_missing_file_with_migrations_off_says_to_migrate() {
    let db = TempDb::new();
    let err = connect_err(db.settings()).await;
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    assert!(err.to_string().contains("ftp-listener migrate"), "{err}");
    assert!(!db.file.exists(), "connect must not create the file");
}

#[tokio::test]
async fn missing_tables_with_migrations_off_say_to_migrate() {
    let db = TempDb::new();
    let mut conn = db.raw().await;
    exec(&mut conn, "CREATE TABLE unrelated (x INTEGER)").await;
    let err = connect_err(db.settings()).await;
    let StoreError::Schema(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("_sqlx_migrations"), "{text}");
    assert!(text.contains("run `ftp-listener migrate`"), "{text}");
}

#[tokio::test]
async fn an_older_schema_names_both_versions() {
    let db = TempDb::migrated().await;
    let mut conn = db.raw().await;
    exec(&mut conn, "DELETE FROM _sqlx_migrations WHERE version >= 2").await;
    let err = connect_err(db.settings()).await;
    let StoreError::Schema(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("schema version 1"), "{text}");
    let required = format!("version {} is required", migrations::SQLITE_SCHEMA_VERSION);
    assert!(text.contains(&required), "{text}");
    assert!(text.contains("ftp-listener migrate"), "{text}");
}

#[tokio::test]
async fn a_table_dropped_behind_the_stores_back_is_a_schema_error() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let mut conn = db.raw().await;
    exec(&mut conn, "DROP TABLE processed_file").await;
    let err = store.load_ledger(&group("g")).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    assert!(err.to_string().contains("no such table"), "{err}");
}

/// Another process holds the write lock longer than the store may wait: the call fails once,
/// within its timeout, as a transient error, and the next call after the lock is gone works.
#[tokio::test]
async fn a_held_write_lock_fails_fast_and_recovers() {
    let db = TempDb::migrated().await;
    let mut settings = db.settings();
    settings.busy_timeout = Duration::from_millis(100);
    settings.statement_timeout = Duration::from_millis(500);
    let store = SqliteStore::connect(settings).await.unwrap();
    let (g, a) = (group("locked"), member("a"));
    let request = beat(&g, &a, 1);

    let mut blocker = db.raw().await;
    exec(&mut blocker, "BEGIN IMMEDIATE").await;
    let started = Instant::now();
    let err = store.heartbeat(&request).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("heartbeat on group"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let err = store.take_over(&take(&g, &a, 1, 0)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    exec(&mut blocker, "COMMIT").await;
    store.heartbeat(&request).await.unwrap();
}

#[test]
fn settings_deserialize_with_human_durations_and_refuse_unknown_keys() {
    let s: SqliteSettings = serde_json::from_str(
        r#"{"url": "sqlite:///var/lib/coord.db", "busy_timeout": "250ms", "statement_timeout": "3s"}"#,
    )
    .unwrap();
    assert_eq!(s.busy_timeout, Duration::from_millis(250));
    assert_eq!(s.statement_timeout, Duration::from_secs(3));
    assert_eq!(s.pool_size, 4);
    assert!(!s.migrate);
    let err =
        serde_json::from_str::<SqliteSettings>(r#"{"path": "x.db", "pasword": "x"}"#).unwrap_err();
    assert!(err.to_string().contains("pasword"), "{err}");
    let err = serde_json::from_str::<SqliteSettings>(r#"{"path": "x.db", "busy_timeout": "soon"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("soon"), "{err}");
}

#[tokio::test]
async fn zero_timeouts_and_pools_are_refused() {
    let mut settings = SqliteSettings::new("x.db");
    settings.statement_timeout = Duration::ZERO;
    assert!(
        connect_err(settings)
            .await
            .to_string()
            .contains("statement_timeout")
    );
    let mut settings = SqliteSettings::new("x.db");
    settings.pool_size = 0;
    assert!(
        connect_err(settings)
            .await
            .to_string()
            .contains("pool_size")
    );
}

/// Deleting the file under a running process would leave it on the unlinked inode while new
/// processes create a new file and elect a second leader: the store refuses to go on.
#[tokio::test]
async fn a_file_removed_or_replaced_under_the_store_is_refused() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("gone"), member("a"));
    store.heartbeat(&beat(&g, &a, 1)).await.unwrap();

    std::fs::remove_file(&db.file).unwrap();
    let err = store.heartbeat(&beat(&g, &a, 1)).await.unwrap_err();
    assert!(err.to_string().contains("was removed or replaced"), "{err}");
    assert!(err.is_transient(), "{err:?}");

    // A fresh database at the same path is a different file: still refused.
    migrations::migrate_sqlite(db.file.to_str().unwrap())
        .await
        .unwrap();
    let err = store.take_over(&take(&g, &a, 1, 0)).await.unwrap_err();
    assert!(err.to_string().contains("was removed or replaced"), "{err}");
}

/// A trigger that keeps a heartbeat's INSERT for member `slow` busy: it counts `rows`²
/// pairs (8000 rows take about a second in a debug build).
async fn slow_heartbeats_for_member_slow(conn: &mut sqlx::SqliteConnection, rows: u32) {
    exec(
        conn,
        &format!(
            "CREATE TABLE pad (x INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO pad SELECT x FROM c;
         CREATE TRIGGER slow AFTER INSERT ON health_check WHEN NEW.task_id = 'slow'
         BEGIN SELECT count(*) FROM pad a, pad b; END;"
        ),
    )
    .await;
}

/// A call slower than the statement timeout fails with `Timeout` naming it; its connection is
/// closed (its transaction rolled back) and the store goes on with a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_its_timeout_is_abandoned_cleanly() {
    let db = TempDb::migrated().await;
    let mut settings = db.settings();
    settings.statement_timeout = Duration::from_millis(300);
    settings.pool_size = 1;
    let store = SqliteStore::connect(settings).await.unwrap();
    let g = group("timeout");
    let mut other = db.raw().await;
    slow_heartbeats_for_member_slow(&mut other, 8000).await;

    let err = store
        .heartbeat(&beat(&g, &member("slow"), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { operation: "heartbeat", after, .. }
            if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
    // Wait (on the lock itself) until the engine has given the abandoned batch up.
    exec(&mut other, "BEGIN IMMEDIATE; ROLLBACK;").await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM health_check")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the abandoned heartbeat must not commit");
    // The only pooled connection was replaced, not reused with an open transaction.
    store.heartbeat(&beat(&g, &member("a"), 1)).await.unwrap();
}

/// A caller that gives up on a call (drops the future) while the engine is inside the batch
/// must not leave an orphaned write transaction behind: sqlx stops a batch at the first result
/// nobody reads, after BEGIN and before COMMIT, and that connection must be closed (rolling
/// back), not returned to the pool holding the write lock every other process needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_leaves_no_transaction_behind() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let g = group("cancel");
    let mut other = db.raw().await;
    slow_heartbeats_for_member_slow(&mut other, 8000).await;
    let started = std::time::Instant::now();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        store.heartbeat(&beat(&g, &member("slow"), 1)),
    )
    .await;
    assert!(gave_up.is_err(), "the heartbeat should still be running");

    // Another process can take the write lock once the engine finishes that statement.
    exec(&mut other, "BEGIN IMMEDIATE; ROLLBACK;").await;
    eprintln!("write lock free again after {:?}", started.elapsed());
    // Nothing of the abandoned batch was committed, and the store works on.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM health_check")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    store.heartbeat(&beat(&g, &member("a"), 1)).await.unwrap();
}
