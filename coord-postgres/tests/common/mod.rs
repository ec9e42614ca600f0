//! Helpers for the integration tests: the real server at 127.0.0.1:5432 (database `test`,
//! user postgres, trust auth), one schema per test so parallel tests never meet.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use coord_core::{GroupId, Incarnation, MemberId};
use coord_postgres::{PgSettings, PgStore};
use tokio_postgres::{Client, NoTls};

pub const ADMIN_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A direct connection for setting up and inspecting (not through the store).
pub async fn admin() -> Client {
    let (client, connection) = tokio_postgres::connect(ADMIN_URL, NoTls)
        .await
        .expect("postgres at 127.0.0.1:5432 (run scripts/setup/10-postgres.sh)");
    tokio::spawn(connection);
    client
}

/// A fresh, empty schema named `name` (dropped first if an earlier run left it).
pub async fn fresh_schema(name: &str) -> String {
    let admin = admin().await;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .await
        .unwrap();
    name.to_owned()
}

/// Settings for the test database, tables in `schema`.
pub fn settings(schema: &str) -> PgSettings {
    PgSettings {
        host: "127.0.0.1".into(),
        user: "postgres".into(),
        database: "test".into(),
        schema: Some(schema.into()),
        ..PgSettings::default()
    }
}

/// The schema shared by the protocol tests, migrated once per process (migrations are
/// locked, so concurrent test processes are fine).
pub async fn shared_store() -> PgStore {
    let settings = settings("coord_pg_shared");
    let store = PgStore::open(settings.clone()).unwrap();
    store.migrate().await.unwrap();
    PgStore::connect(settings).await.unwrap()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn group(prefix: &str) -> GroupId {
    GroupId::new(unique(prefix)).unwrap()
}

pub fn member(name: &str) -> MemberId {
    MemberId::new(name).unwrap()
}

pub fn incarnation() -> Incarnation {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Spread over all 64 bits, so the high (sign) bit of the BIGINT column is exercised.
    Incarnation(nanos.rotate_left(40) ^ COUNTER.fetch_add(1, Ordering::Relaxed))
}
