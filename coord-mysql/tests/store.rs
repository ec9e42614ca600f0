//! The store's own semantics against the real MariaDB, beyond the conformance suite: the
//! heartbeat's incarnation rule, takeover races across many connections, fencing of the
//! ledger, limits, and the round trips of a steady-state tick.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, HeartbeatRequest, LedgerState,
    LedgerUpdate, OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use coord_mysql::{MySqlStore, TlsMode};
use mysql_async::prelude::Queryable;

const LIVENESS: Duration = Duration::from_secs(5);

fn hb(group: &coord_core::GroupId, name: &str, inc: coord_core::Incarnation) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.clone(),
        member: member(name),
        incarnation: inc,
        liveness_timeout: LIVENESS,
    }
}

fn to(
    group: &coord_core::GroupId,
    name: &str,
    inc: coord_core::Incarnation,
    term: Term,
    liveness: Duration,
) -> TakeoverRequest {
    TakeoverRequest {
        group: group.clone(),
        member: member(name),
        incarnation: inc,
        observed_term: term,
        liveness_timeout: liveness,
        observed_renewal: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takeover_race_across_stores_has_one_winner_per_term() {
    let stores: Vec<MySqlStore> = {
        let first = store().await;
        let mut all = vec![first];
        for _ in 0..7 {
            all.push(MySqlStore::connect(settings()).await.unwrap());
        }
        all
    };
    let group = group();
    for round in 0..5u64 {
        // Everyone sees term `round`; a zero liveness timeout makes the lease stale at once,
        // so every candidate is eligible and only the term decides.
        let tasks: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.clone();
                let request = to(
                    &group,
                    &format!("m{i}"),
                    incarnation(),
                    Term(round),
                    Duration::ZERO,
                );
                tokio::spawn(async move { s.take_over(&request).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            match t.await.unwrap() {
                TakeoverOutcome::Won(term) => {
                    assert_eq!(term, Term(round + 1));
                    winners += 1;
                }
                TakeoverOutcome::Lost => {}
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn live_holder_keeps_the_token_and_refused_heartbeat_renews_nothing() {
    let store = store().await;
    let group = group();
    let (a, b) = (incarnation(), incarnation());
    store.heartbeat(&hb(&group, "a", a)).await.unwrap();
    let won = store
        .take_over(&to(&group, "a", a, Term(0), LIVENESS))
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(1)));
    // A live holder: a takeover at its term is refused.
    let lost = store
        .take_over(&to(&group, "b", b, Term(1), LIVENESS))
        .await
        .unwrap();
    assert_eq!(lost, TakeoverOutcome::Lost);
    // A second process with member ID `a` is held off and renews nothing.
    let other = store.heartbeat(&hb(&group, "a", b)).await.unwrap();
    assert_eq!(other.own_row, OwnRow::HeldByOther(a));
    assert!(other.holder_is(&member("a"), a));
    assert!(!other.holder_is(&member("a"), b));
    // The real holder renews.
    let mine = store.heartbeat(&hb(&group, "a", a)).await.unwrap();
    assert_eq!(mine.own_row, OwnRow::Written);
    assert!(mine.holder_is(&member("a"), a));
    assert!(mine.holder.unwrap().lease_age < Duration::from_secs(1));
}

#[tokio::test]
async fn ledger_is_fenced_and_keeps_long_unicode_paths() {
    let store = store().await;
    let group = group();
    let inc = incarnation();
    store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    store
        .take_over(&to(&group, "a", inc, Term(0), LIVENESS))
        .await
        .unwrap();
    let fence = Fence {
        group: group.clone(),
        member: member("a"),
        incarnation: inc,
        term: Term(1),
    };
    let long = format!("/in/{}/Ünïcødé 📄 'quote' \\back.csv", "d".repeat(3000));
    let v = FileVersion {
        path: long.clone(),
        size: 42,
        mtime_ms: -5,
    };
    // A version listed twice is claimed once; both positions get its answer.
    let out = store.claim(&fence, &[v.clone(), v.clone()]).await.unwrap();
    let fresh = ClaimOutcome::Claimed {
        attempt: 1,
        redelivery: false,
    };
    assert_eq!(out, [fresh.clone(), fresh]);
    let out = store.claim(&fence, std::slice::from_ref(&v)).await.unwrap();
    assert_eq!(
        out,
        [ClaimOutcome::Claimed {
            attempt: 2,
            redelivery: true
        }]
    );
    store
        .record(
            &fence,
            &[LedgerUpdate::Set {
                version: v.clone(),
                state: LedgerState::Done,
                error: None,
                detail: None,
            }],
        )
        .await
        .unwrap();
    assert!(
        store.load_ledger(&group).await.unwrap().is_empty(),
        "done: no work left"
    );
    let loaded = store
        .lookup_ledger(&group, std::slice::from_ref(&v))
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].version, v);
    assert_eq!(loaded[0].state, LedgerState::Done);
    assert_eq!(loaded[0].attempts, 2);

    // A huge handler error is kept, cut, rather than failing the record.
    let other = FileVersion {
        path: "/in/b.csv".to_string(),
        size: 1,
        mtime_ms: 1,
    };
    store
        .record(
            &fence,
            &[LedgerUpdate::Set {
                version: other.clone(),
                state: LedgerState::Failed,
                error: Some("boom ".repeat(40_000)),
                detail: None,
            }],
        )
        .await
        .unwrap();
    let loaded = store.load_ledger(&group).await.unwrap();
    let failed = loaded.iter().find(|r| r.version == other).unwrap();
    let kept = failed.last_error.as_deref().unwrap();
    assert!(
        kept.starts_with("boom boom") && kept.len() <= 16 * 1024,
        "{}",
        kept.len()
    );
    store
        .record(&fence, &[LedgerUpdate::Forget(other)])
        .await
        .unwrap();

    // A stale fence (wrong term) writes nothing.
    let stale = Fence {
        term: Term(7),
        ..fence.clone()
    };
    let err = store
        .claim(&stale, std::slice::from_ref(&v))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    let err = store
        .record(&stale, &[LedgerUpdate::Forget(v.clone())])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(
        store
            .lookup_ledger(&group, std::slice::from_ref(&v))
            .await
            .unwrap()
            .len(),
        1
    );

    // Too long a path is a clear error, and the store keeps working.
    let too_long = FileVersion {
        path: "x".repeat(4097),
        size: 1,
        mtime_ms: 0,
    };
    let err = store.claim(&fence, &[too_long]).await.unwrap_err();
    assert!(err.to_string().contains("limit is 4096"), "{err}");
    assert!(store.heartbeat(&hb(&group, "a", inc)).await.is_ok());
}

#[tokio::test]
async fn wrong_password_is_one_clear_error() {
    let user = unique("coord_pw");
    let mut admin = admin("test").await;
    let db = common::db();
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-secret'; \
             CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-secret'; \
             GRANT ALL ON `{db}`.* TO '{user}'@'%'; GRANT ALL ON `{db}`.* TO '{user}'@'localhost'"
        ))
        .await
        .unwrap();
    let mut s = settings();
    s.user = user.clone();
    s.password = Some("wrong-secret".into());
    let started = std::time::Instant::now();
    let err = MySqlStore::connect(s.clone()).await.unwrap_err();
    let message = err.to_string();
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
    assert!(message.contains("Access denied"), "{message}");
    assert!(!message.contains("group"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3), "no retry loop");
    // The right password works.
    s.password = Some("right-secret".into());
    let store = MySqlStore::connect(s).await.unwrap();
    assert!(store.members(&group()).await.unwrap().is_empty());
    admin
        .query_drop(format!(
            "DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost'"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_host_is_unavailable_quickly() {
    let mut s = settings();
    s.host = "no-such-host.invalid".to_string();
    s.connect_timeout = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let err = MySqlStore::connect(s).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                transient: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let mut s = settings();
    s.port = 1; // nothing listens on loopback port 1
    let err = MySqlStore::connect(s.clone()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot connect to mysql://127.0.0.1:1/"),
        "{err}"
    );
    // With migrations on, the migrator's failure to connect is unavailable too, not a
    // schema problem.
    s.migrate_on_connect = true;
    let err = MySqlStore::connect(s).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn empty_database_without_migrations_is_a_schema_error() {
    let db = fresh_database().await;
    let err = MySqlStore::connect(settings_for(&db)).await.unwrap_err();
    let StoreError::Schema(message) = &err else {
        panic!("expected a schema error, got {err:?}")
    };
    assert!(message.contains("ftp-listener migrate"), "{message}");
    assert!(message.contains("schema version 0"), "{message}");
    drop_database(&db).await;
}

#[tokio::test]
async fn tls_required_against_a_plain_server_is_refused() {
    // The main test server (3306) speaks no TLS.
    let have_ssl: Option<String> = {
        let mut a = admin("test").await;
        a.query_first("SELECT @@have_ssl").await.unwrap()
    };
    assert_ne!(have_ssl.as_deref(), Some("YES"), "3306 is the plain server");
    let mut s = settings();
    s.tls = TlsMode::Require;
    let err = MySqlStore::connect(s).await.unwrap_err();
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
    assert!(err.to_string().contains("SSL"), "{err}");
}

/// The TLS-enabled test server of scripts/setup/20-mariadb.sh.
const TLS_PORT: u16 = 3307;

fn tls_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".to_string()),
    )
    .join("mariadb-tls")
}

#[tokio::test]
async fn tls_require_encrypts_and_verifies_the_server_with_a_ca_file() {
    let plain_url = format!("mysql://root@127.0.0.1:{TLS_PORT}/test");
    migrations::migrate_mysql(&plain_url)
        .await
        .expect("the TLS test server on 127.0.0.1:3307 (run scripts/setup/20-mariadb.sh)");
    let mut s = coord_mysql::MySqlSettings::from_url(&format!("{plain_url}?tls=require")).unwrap();
    // Encrypted without verification (MySQL's REQUIRED).
    let store = MySqlStore::connect(s.clone()).await.unwrap();
    let group = group();
    let seen = store
        .heartbeat(&hb(&group, "tls", incarnation()))
        .await
        .unwrap();
    assert_eq!(seen.own_row, OwnRow::Written);
    // Verified against the test CA (the certificate names 127.0.0.1).
    s.tls_ca_file = Some(tls_dir().join("ca.pem"));
    let verified = MySqlStore::connect(s.clone()).await.unwrap();
    assert_eq!(verified.members(&group).await.unwrap().len(), 1);
    // verify-full (the word shared with PostgreSQL) is the same check, and migrates too.
    let mut full = s.clone();
    full.tls = TlsMode::VerifyFull;
    full.migrate_on_connect = true;
    let verified = MySqlStore::connect(full).await.unwrap();
    assert_eq!(verified.members(&group).await.unwrap().len(), 1);
    // A CA that did not sign the server's certificate is refused.
    s.tls_ca_file = Some(tls_dir().join("server.pem"));
    let err = MySqlStore::connect(s).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Connect { target, .. } if target.contains(":3307/")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot connect to mysql://127.0.0.1:3307/"),
        "{err}"
    );
    assert!(!err.to_string().contains("group"), "{err}");
}

#[test]
fn debug_of_settings_hides_the_password() {
    let mut s = settings();
    s.password = Some("hunter2-very-secret".into());
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[tokio::test]
async fn broken_connection_is_replaced_on_the_next_call() {
    // A database of its own, so that only this store's connections are killed.
    let db = fresh_database().await;
    let mut s = settings_for(&db);
    s.pool_size = 1;
    s.migrate_on_connect = true;
    let store = MySqlStore::connect(s).await.unwrap();
    let group = group();
    let inc = incarnation();
    store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    let mut admin = admin("test").await;
    let ids: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            (db.as_str(),),
        )
        .await
        .unwrap();
    assert!(!ids.is_empty(), "the store keeps a pooled connection");
    for id in ids {
        admin
            .query_drop(format!("KILL CONNECTION {id}"))
            .await
            .unwrap();
    }
    // One call may fail (unavailable), never hang; the one after works on a new connection.
    let first = store.heartbeat(&hb(&group, "a", inc)).await;
    if let Err(e) = &first {
        assert!(e.is_transient(), "{e:?}");
    }
    let again = store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    assert_eq!(again.own_row, OwnRow::Written);
    admin.disconnect().await.unwrap();
    drop(store);
    drop_database(&db).await;
}

/// Counts `coord_mysql::round_trip` trace events.
struct RoundTrips(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RoundTrips {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == "coord_mysql::round_trip" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn steady_state_tick_is_one_round_trip() {
    use tracing_subscriber::layer::SubscriberExt;
    let count = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(RoundTrips(count.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = store().await;
    let group = group();
    let (leader, standby) = (incarnation(), incarnation());
    store
        .heartbeat(&hb(&group, "leader", leader))
        .await
        .unwrap();
    store
        .take_over(&to(&group, "leader", leader, Term(0), LIVENESS))
        .await
        .unwrap();
    store
        .heartbeat(&hb(&group, "standby", standby))
        .await
        .unwrap();

    count.store(0, Ordering::SeqCst);
    let seen = store
        .heartbeat(&hb(&group, "leader", leader))
        .await
        .unwrap();
    assert!(seen.holder_is(&member("leader"), leader));
    let leader_trips = count.swap(0, Ordering::SeqCst);
    let seen = store
        .heartbeat(&hb(&group, "standby", standby))
        .await
        .unwrap();
    assert!(!seen.holder_is(&member("standby"), standby));
    let standby_trips = count.swap(0, Ordering::SeqCst);
    println!("round trips per steady-state tick: leader {leader_trips}, standby {standby_trips}");
    assert_eq!((leader_trips, standby_trips), (1, 1));
}

/// The server's own count: statements (`Questions`) executed by the store's one pooled
/// connection during a leader's and a standby's steady-state tick. Runs on the TLS test
/// server (3307), which has performance_schema on so another session's counters can be read.
#[tokio::test]
async fn statements_per_tick_counted_by_the_server() {
    let mut admin = admin_at(TLS_PORT, "test").await;
    let db = unique("coord_mysql_q");
    admin
        .query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    let url = format!("mysql://root@127.0.0.1:{TLS_PORT}/{db}");
    migrations::migrate_mysql(&url).await.unwrap();
    let mut s = coord_mysql::MySqlSettings::from_url(&url).unwrap();
    s.pool_size = 1;
    let store = MySqlStore::connect(s).await.unwrap();
    let group = group();
    let (leader, standby) = (incarnation(), incarnation());
    store
        .heartbeat(&hb(&group, "leader", leader))
        .await
        .unwrap();
    store
        .take_over(&to(&group, "leader", leader, Term(0), LIVENESS))
        .await
        .unwrap();
    store
        .heartbeat(&hb(&group, "standby", standby))
        .await
        .unwrap();
    let ids: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            (db.as_str(),),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "one pooled connection");
    let questions = async |admin: &mut mysql_async::Conn| -> u64 {
        let v: Option<String> = admin
            .exec_first(
                "SELECT s.VARIABLE_VALUE FROM performance_schema.threads t \
                 JOIN performance_schema.status_by_thread s USING (THREAD_ID) \
                 WHERE t.PROCESSLIST_ID = ? AND s.VARIABLE_NAME = 'Questions'",
                (ids[0],),
            )
            .await
            .unwrap();
        v.expect("performance_schema on the 3307 test server")
            .parse()
            .unwrap()
    };
    let before = questions(&mut admin).await;
    let seen = store
        .heartbeat(&hb(&group, "leader", leader))
        .await
        .unwrap();
    assert!(seen.holder_is(&member("leader"), leader));
    let mid = questions(&mut admin).await;
    let seen = store
        .heartbeat(&hb(&group, "standby", standby))
        .await
        .unwrap();
    assert!(!seen.holder_is(&member("standby"), standby));
    let after = questions(&mut admin).await;
    let (leader_statements, standby_statements) = (mid - before, after - mid);
    println!(
        "statements per steady-state tick (server's Questions): leader {leader_statements}, \
         standby {standby_statements}"
    );
    // SET TRANSACTION, START TRANSACTION, INSERT .. ON DUPLICATE KEY UPDATE, UPDATE, SELECT,
    // COMMIT: one batch, sent at once.
    assert_eq!((leader_statements, standby_statements), (6, 6));
    drop(store);
    admin
        .query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .unwrap();
}

#[tokio::test]
async fn blocked_statement_times_out_and_the_next_call_works() {
    let mut s = settings();
    s.statement_timeout = Duration::from_millis(500);
    let store = {
        drop(store().await);
        MySqlStore::connect(s).await.unwrap()
    };
    let group = group();
    let inc = incarnation();
    store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    store
        .take_over(&to(&group, "a", inc, Term(0), LIVENESS))
        .await
        .unwrap();
    // Another session holds the group's token_holder row: the holder's renewal must wait.
    let mut blocker = admin(&common::db()).await;
    blocker.query_drop("START TRANSACTION").await.unwrap();
    let locked: Vec<i64> = blocker
        .exec(
            "SELECT term FROM token_holder WHERE group_id = ? FOR UPDATE",
            (group.as_str(),),
        )
        .await
        .unwrap();
    assert_eq!(locked, [1]);
    let started = std::time::Instant::now();
    let err = store.heartbeat(&hb(&group, "a", inc)).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
    assert!(waited < Duration::from_millis(1500), "took {waited:?}");
    blocker.query_drop("ROLLBACK").await.unwrap();
    // The next call gets a working connection and renews.
    let seen = store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    assert!(seen.holder_is(&member("a"), inc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_and_recovers_with_few_connections() {
    drop(store().await);
    let proxy = testkit::TcpProxy::start(([127, 0, 0, 1], PORT).into())
        .await
        .unwrap();
    let mut s = settings();
    s.port = proxy.addr().port();
    s.statement_timeout = Duration::from_secs(1);
    let store = MySqlStore::connect(s).await.unwrap();
    let group = group();
    let inc = incarnation();
    store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    let before = proxy.accepted();

    proxy.cut().await;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let err = store.heartbeat(&hb(&group, "a", inc)).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "bounded by the statement timeout: {:?}",
            started.elapsed()
        );
    }
    proxy.restore().await.unwrap();
    let seen = store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    assert_eq!(seen.own_row, OwnRow::Written);
    // One new connection serves the recovered calls: no reconnect storm.
    store.heartbeat(&hb(&group, "a", inc)).await.unwrap();
    let opened = proxy.accepted() - before;
    assert!(opened <= 2, "opened {opened} connections");
}
