//! Helpers for the integration tests: the real server at 127.0.0.1:6379 (started by
//! scripts/setup/60-redis.sh), one key prefix per test so parallel tests and runs never meet.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use coord_redis::{RedisSettings, RedisStore};

pub const URL: &str = "redis://127.0.0.1:6379";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "coord-redis-test:{test}:{}-{nanos:x}-{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for the local server under `prefix`.
pub fn settings(prefix: &str) -> RedisSettings {
    RedisSettings {
        url: URL.into(),
        key_prefix: prefix.into(),
        ..RedisSettings::default()
    }
}

pub async fn store(prefix: &str) -> RedisStore {
    RedisStore::connect(settings(prefix))
        .await
        .expect("redis at 127.0.0.1:6379 (run scripts/setup/60-redis.sh)")
}

/// A direct connection for inspecting and cleaning up (not through the store).
pub async fn admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis at 127.0.0.1:6379")
}

/// Every key under `prefix`.
pub async fn keys_under(prefix: &str) -> Vec<String> {
    let mut conn = admin().await;
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix`.
pub async fn clean_up(prefix: &str) {
    let keys = keys_under(prefix).await;
    let mut conn = admin().await;
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
