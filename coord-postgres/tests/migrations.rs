//! The PostgreSQL migrations against the real server: idempotent, safe to run concurrently,
//! upgrade a seed-era database in place, printable DDL, and the store's schema check.

mod common;

use std::time::Duration;

use common::{admin, fresh_schema, incarnation, member, settings};
use coord_core::{
    CoordinationStore, GroupId, HeartbeatRequest, OwnRow, StoreError, TakeoverOutcome,
    TakeoverRequest, Term,
};
use coord_postgres::PgStore;

const SEED_DDL: &str = "
CREATE TABLE token_holder (group_id VARCHAR(128) NOT NULL PRIMARY KEY, task_id VARCHAR(128) NOT NULL, term BIGINT NOT NULL DEFAULT 1);
CREATE TABLE health_check (task_id VARCHAR(128) NOT NULL, group_id VARCHAR(128) NOT NULL, last_heartbeat TIMESTAMP NOT NULL, PRIMARY KEY (task_id, group_id));";

async fn applied(schema: &str) -> Vec<(i64, String)> {
    admin()
        .await
        .query(
            &format!(
                "SELECT version, installed_on::text FROM {schema}._sqlx_migrations ORDER BY version"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    let schema = fresh_schema("pgmig_twice").await;
    let store = PgStore::open(settings(&schema)).unwrap();
    store.migrate().await.unwrap();
    let first = applied(&schema).await;
    assert_eq!(
        first.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..=migrations::POSTGRES_SCHEMA_VERSION).collect::<Vec<_>>()
    );
    store.migrate().await.unwrap();
    assert_eq!(applied(&schema).await, first, "second run changed nothing");
    PgStore::connect(settings(&schema)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_both_succeed() {
    let schema = fresh_schema("pgmig_concurrent").await;
    let a = PgStore::open(settings(&schema)).unwrap();
    let b = PgStore::open(settings(&schema)).unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let versions: Vec<i64> = applied(&schema).await.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (1..=migrations::POSTGRES_SCHEMA_VERSION).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn seed_database_is_upgraded_in_place_and_taken_over() {
    let schema = fresh_schema("pgmig_seed").await;
    let admin = admin().await;
    admin
        .batch_execute(&format!(
            "SET search_path TO {schema}; {SEED_DDL}
             INSERT INTO token_holder (group_id, task_id, term) VALUES ('seed-group', 'old-node', 5);
             INSERT INTO health_check VALUES ('old-node', 'seed-group', now()::timestamp);
             INSERT INTO health_check VALUES ('other-node', 'seed-group', now()::timestamp);"
        ))
        .await
        .unwrap();
    let store = PgStore::open(settings(&schema)).unwrap();
    store.migrate().await.unwrap();
    let store = PgStore::connect(settings(&schema)).await.unwrap();

    // The seed rows survived, the heartbeat column has millisecond precision.
    let kept: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {schema}.health_check WHERE group_id = 'seed-group'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2);
    let precision: i32 = admin
        .query_one(
            "SELECT datetime_precision FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'health_check' AND column_name = 'last_heartbeat'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(precision, 3);

    // A seed-era token row has no lease: it counts as released, and the term carries on.
    let group = GroupId::new("seed-group").unwrap();
    let me = member("new-node");
    let inc = incarnation();
    let liveness = Duration::from_secs(5);
    let observed = store
        .heartbeat(&HeartbeatRequest {
            group: group.clone(),
            member: me.clone(),
            incarnation: inc,
            liveness_timeout: liveness,
        })
        .await
        .unwrap();
    assert_eq!(observed.own_row, OwnRow::Written);
    assert_eq!(observed.term, Term(5));
    assert_eq!(observed.holder, None);
    let outcome = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: me.clone(),
            incarnation: inc,
            observed_term: Term(5),
            liveness_timeout: liveness,
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome, TakeoverOutcome::Won(Term(6)));
    let observed = store
        .heartbeat(&HeartbeatRequest {
            group,
            member: me.clone(),
            incarnation: inc,
            liveness_timeout: liveness,
        })
        .await
        .unwrap();
    assert!(observed.holder_is(&me, inc), "{observed:?}");

    // A seed-era heartbeat row (no incarnation) is taken over by the same member ID at once.
    let old = store
        .heartbeat(&HeartbeatRequest {
            group: GroupId::new("seed-group").unwrap(),
            member: member("other-node"),
            incarnation: incarnation(),
            liveness_timeout: liveness,
        })
        .await
        .unwrap();
    assert_eq!(old.own_row, OwnRow::Written);
}

#[tokio::test]
async fn printed_ddl_applies_on_an_empty_schema() {
    let schema = fresh_schema("pgmig_ddl").await;
    let ddl = migrations::postgres_ddl();
    admin()
        .await
        .batch_execute(&format!(
            "SET search_path TO {schema}; BEGIN; {ddl}; COMMIT;"
        ))
        .await
        .unwrap();
    // The store accepts it, and the migrator agrees nothing is pending (same checksums).
    let store = PgStore::connect(settings(&schema)).await.unwrap();
    let before = applied(&schema).await;
    store.migrate().await.unwrap();
    assert_eq!(applied(&schema).await, before);
    let observed = store
        .heartbeat(&HeartbeatRequest {
            group: GroupId::new("ddl-group").unwrap(),
            member: member("m"),
            incarnation: incarnation(),
            liveness_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!(observed.own_row, OwnRow::Written);
}

#[tokio::test]
async fn missing_tables_are_a_schema_error_saying_to_migrate() {
    let schema = fresh_schema("pgmig_missing").await;
    let err = PgStore::connect(settings(&schema)).await.unwrap_err();
    let StoreError::Schema(message) = &err else {
        panic!("expected a schema error, got {err:?}");
    };
    assert!(message.contains("ftp-listener migrate"), "{message}");
    assert!(message.contains("found version none"), "{message}");
    assert!(
        message.contains(&format!("required {}", migrations::POSTGRES_SCHEMA_VERSION)),
        "{message}"
    );
    assert!(message.contains(&schema), "{message}");
}

#[tokio::test]
async fn tables_dropped_after_connect_are_a_schema_error() {
    let schema = fresh_schema("pgmig_dropped").await;
    let store = PgStore::open(settings(&schema)).unwrap();
    store.migrate().await.unwrap();
    admin()
        .await
        .batch_execute(&format!("DROP TABLE {schema}.health_check"))
        .await
        .unwrap();
    let err = store
        .heartbeat(&HeartbeatRequest {
            group: GroupId::new("g").unwrap(),
            member: member("m"),
            incarnation: incarnation(),
            liveness_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Schema(m) if m.contains("ftp-listener migrate")),
        "{err:?}"
    );
}

#[tokio::test]
async fn older_schema_is_refused_then_upgraded() {
    let schema = fresh_schema("pgmig_older").await;
    // Only the first migration, recorded exactly as the migrator records it.
    let ddl = migrations::postgres_ddl();
    let bookkeeping_start = ddl
        .find("CREATE TABLE IF NOT EXISTS _sqlx_migrations")
        .unwrap();
    let bookkeeping_end = ddl[bookkeeping_start..].find(");").unwrap() + bookkeeping_start + 2;
    let first_insert = ddl
        .lines()
        .find(|l| l.starts_with("INSERT INTO _sqlx_migrations") && l.contains("VALUES (1, "))
        .unwrap();
    let first = include_str!("../../migrations/postgres/0001_seed_tables.sql");
    admin()
        .await
        .batch_execute(&format!(
            "SET search_path TO {schema}; {first}\n{}\n{first_insert}",
            &ddl[bookkeeping_start..bookkeeping_end]
        ))
        .await
        .unwrap();
    let err = PgStore::connect(settings(&schema)).await.unwrap_err();
    let StoreError::Schema(message) = &err else {
        panic!("expected a schema error, got {err:?}");
    };
    assert!(message.contains("found schema version 1"), "{message}");
    assert!(message.contains("ftp-listener migrate"), "{message}");
    // The migrator accepts the recorded first migration (checksum) and applies the rest.
    PgStore::open(settings(&schema))
        .unwrap()
        .migrate()
        .await
        .unwrap();
    PgStore::connect(settings(&schema)).await.unwrap();
}
