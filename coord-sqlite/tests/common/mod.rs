//! Helpers shared by the integration tests: temporary database files and raw SQL access.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use coord_core::{Fence, GroupId, HeartbeatRequest, Incarnation, MemberId, TakeoverRequest, Term};
use coord_sqlite::{SqliteSettings, SqliteStore};
use sqlx::{ConnectOptions, Connection, SqliteConnection, sqlite::SqliteConnectOptions};

/// A temporary directory holding one database file (removed on drop).
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("coord.db");
        TempDb { dir, file }
    }

    pub fn settings(&self) -> SqliteSettings {
        SqliteSettings::new(self.file.to_str().unwrap())
    }

    /// A database with the current schema.
    pub async fn migrated() -> TempDb {
        let db = TempDb::new();
        migrations::migrate_sqlite(db.file.to_str().unwrap())
            .await
            .unwrap();
        db
    }

    /// A new store with its own pool, as another process would have.
    pub async fn store(&self) -> SqliteStore {
        SqliteStore::connect(self.settings()).await.unwrap()
    }

    /// A raw connection for setting up or inspecting state behind the store's back.
    pub async fn raw(&self) -> SqliteConnection {
        raw(&self.file).await
    }
}

pub async fn raw(file: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

pub async fn exec(conn: &mut SqliteConnection, sql: &str) {
    sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap();
}

/// Moves the group's lease `ms` milliseconds into the past, as if the holder had stopped
/// renewing that long ago (the database clock is not ours to move).
pub async fn age_lease(db: &TempDb, group: &GroupId, ms: i64) {
    let mut conn = db.raw().await;
    sqlx::query("UPDATE token_holder SET renewed_at = renewed_at - ?1 WHERE group_id = ?2")
        .bind(ms)
        .bind(group.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Moves a member's heartbeat `ms` milliseconds into the past.
pub async fn age_heartbeat(db: &TempDb, group: &GroupId, member: &MemberId, ms: i64) {
    let mut conn = db.raw().await;
    sqlx::query(
        "UPDATE health_check SET last_heartbeat = last_heartbeat - ?1 \
         WHERE group_id = ?2 AND task_id = ?3",
    )
    .bind(ms)
    .bind(group.as_str())
    .bind(member.as_str())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn group(prefix: &str) -> GroupId {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    GroupId::new(format!("{prefix}-{n}")).unwrap()
}

pub fn member(name: &str) -> MemberId {
    MemberId::new(name).unwrap()
}

pub const LIVENESS: Duration = Duration::from_secs(5);

pub fn beat(group: &GroupId, member: &MemberId, incarnation: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.clone(),
        member: member.clone(),
        incarnation: Incarnation(incarnation),
        liveness_timeout: LIVENESS,
    }
}

pub fn take(
    group: &GroupId,
    member: &MemberId,
    incarnation: u64,
    observed: u64,
) -> TakeoverRequest {
    TakeoverRequest {
        group: group.clone(),
        member: member.clone(),
        incarnation: Incarnation(incarnation),
        observed_term: Term(observed),
        liveness_timeout: LIVENESS,
        observed_renewal: None,
    }
}

pub fn fence(group: &GroupId, member: &MemberId, incarnation: u64, term: u64) -> Fence {
    Fence {
        group: group.clone(),
        member: member.clone(),
        incarnation: Incarnation(incarnation),
        term: Term(term),
    }
}
