//! Helpers for the integration tests: the MariaDB at 127.0.0.1:3306 (root, no password), a
//! shared migrated database `test`, and throw-away databases for the migration tests.

#![allow(dead_code, unreachable_pub)]

use coord_core::{GroupId, Incarnation, MemberId};
use coord_mysql::{MySqlSettings, MySqlStore};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 3306;

/// Settings for `database` as root with no password.
pub fn settings_for(database: &str) -> MySqlSettings {
    MySqlSettings::from_url(&format!("mysql://root@{HOST}:{PORT}/{database}")).unwrap()
}

/// The shared database the tests migrate and use: `test`, or `COORD_MYSQL_TEST_DB` (a
/// database of one's own, when another branch has migrated `test` past this one).
pub fn db() -> String {
    std::env::var("COORD_MYSQL_TEST_DB").unwrap_or_else(|_| "test".to_owned())
}

/// Settings for the shared database ([`db`]).
pub fn settings() -> MySqlSettings {
    settings_for(&db())
}

/// A store on the shared database ([`db`]), migrated (migrations are idempotent and locked, so every test may do
/// this concurrently).
pub async fn store() -> MySqlStore {
    let mut s = settings();
    s.migrate_on_connect = true;
    MySqlStore::connect(s).await.unwrap()
}

/// An administrative connection (root) to `database`.
pub async fn admin(database: &str) -> Conn {
    admin_at(PORT, database).await
}

/// An administrative connection (root) to `database` on the server at `port`.
pub async fn admin_at(port: u16, database: &str) -> Conn {
    let opts: Opts = OptsBuilder::default()
        .ip_or_hostname(HOST)
        .tcp_port(port)
        .user(Some("root"))
        .db_name(Some(database))
        .prefer_socket(false)
        .into();
    Conn::new(opts).await.unwrap()
}

/// A unique name with a prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// A new empty database; drop it with [`drop_database`].
pub async fn fresh_database() -> String {
    let name = unique("coord_mysql_t");
    let mut conn = admin("test").await;
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    name
}

pub async fn drop_database(name: &str) {
    let mut conn = admin("test").await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}

pub fn group() -> GroupId {
    GroupId::new(unique("g")).unwrap()
}

pub fn member(name: &str) -> MemberId {
    MemberId::new(name).unwrap()
}

pub fn incarnation() -> Incarnation {
    Incarnation(rand::random())
}

/// The URL of `database` for the migrations crate.
pub fn url_for(database: &str) -> String {
    format!("mysql://root@{HOST}:{PORT}/{database}")
}
