//! Bad input and bad days: each one a clear error, quickly, without a panic or a retry storm.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{admin, fresh_schema, group, incarnation, member, settings, shared_store};
use coord_core::{CoordinationStore, HeartbeatRequest, OwnRow, StoreError, TakeoverRequest, Term};
use coord_postgres::{PgSettings, PgStore, TlsMode};

const TLS_DIR: &str = "/var/lib/postgresql/ha-listener-tls";

fn request() -> HeartbeatRequest {
    HeartbeatRequest {
        group: group("err"),
        member: member("m"),
        incarnation: incarnation(),
        liveness_timeout: Duration::from_secs(5),
    }
}

/// Connect fails; returns the error and how long it took.
async fn connect_err(settings: PgSettings) -> (StoreError, Duration) {
    let start = Instant::now();
    let err = PgStore::connect(settings).await.unwrap_err();
    (err, start.elapsed())
}

#[tokio::test]
async fn password_role_wrong_then_right_then_reconnect() {
    let admin = admin().await;
    let rules: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_hba_file_rules
             WHERE 'ha_listener_pw' = ANY(user_name) AND auth_method = 'scram-sha-256'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rules, 1,
        "pg_hba.conf lacks the password rule for ha_listener_pw: run scripts/setup/10-postgres.sh"
    );
    let password = format!("right-{}", incarnation());
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ha_listener_pw') THEN
                 CREATE ROLE ha_listener_pw LOGIN;
               END IF;
             END $$;
             ALTER ROLE ha_listener_pw PASSWORD '{password}';
             DROP SCHEMA IF EXISTS pgerr_pw CASCADE;
             CREATE SCHEMA pgerr_pw AUTHORIZATION ha_listener_pw;"
        ))
        .await
        .unwrap();
    let as_role = |password: &str| PgSettings {
        user: "ha_listener_pw".into(),
        password: Some(password.into()),
        ..settings("pgerr_pw")
    };

    // Wrong password: rejected, named, once.
    let (err, took) = connect_err(as_role("wrong-horse-battery")).await;
    let text = err.to_string();
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
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        text.starts_with("cannot connect to postgres://127.0.0.1:5432/test: "),
        "{text}"
    );
    assert_eq!(text.matches("127.0.0.1:5432").count(), 1, "{text}");
    assert!(!text.contains("group"), "{text}");
    assert!(!text.contains("wrong-horse-battery") && !format!("{err:?}").contains("wrong-horse"));
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Right password: the store migrates its own schema and works.
    let store = PgStore::open(as_role(&password)).unwrap();
    store.migrate().await.unwrap();
    let store = PgStore::connect(PgSettings {
        pool_size: 1,
        ..as_role(&password)
    })
    .await
    .unwrap();
    let req = request();
    assert_eq!(
        store.heartbeat(&req).await.unwrap().own_row,
        OwnRow::Written
    );
    assert!(!format!("{store:?}").contains(&password));

    // The server drops the connection: the next call fails or reconnects, never hangs, and
    // the one after works on a new connection.
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename = 'ha_listener_pw') AS t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    match store.heartbeat(&req).await {
        Ok(_) => {}
        Err(e) => assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}"),
    }
    assert_eq!(
        store.heartbeat(&req).await.unwrap().own_row,
        OwnRow::Written
    );
}

#[tokio::test]
async fn unknown_role_and_database_are_rejected_by_name() {
    let (err, _) = connect_err(PgSettings {
        user: "no_such_role_x".into(),
        ..settings("public")
    })
    .await;
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
    assert!(err.to_string().contains("no_such_role_x"), "{err}");

    let (err, _) = connect_err(PgSettings {
        database: "no_such_database_x".into(),
        ..settings("public")
    })
    .await;
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
    assert!(err.to_string().contains("no_such_database_x"), "{err}");
}

#[tokio::test]
async fn unreachable_servers_are_unavailable_within_the_connect_timeout() {
    for (host, port) in [("no-such-host.invalid", 5432), ("127.0.0.1", 1)] {
        let (err, took) = connect_err(PgSettings {
            host: host.into(),
            port,
            connect_timeout: Duration::from_secs(2),
            ..settings("public")
        })
        .await;
        assert!(err.is_transient(), "{err:?}");
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
        assert!(
            err.to_string()
                .starts_with(&format!("cannot connect to postgres://{host}:{port}/")),
            "{err}"
        );
        assert!(took < Duration::from_secs(4), "{host}: {took:?}");
    }
}

#[tokio::test]
async fn a_blocked_statement_times_out_and_the_store_recovers() {
    shared_store().await;
    let store = PgStore::connect(PgSettings {
        statement_timeout: Duration::from_millis(300),
        ..settings("coord_pg_shared")
    })
    .await
    .unwrap();
    let g = group("timeout");
    let (m, i) = (member("m"), incarnation());
    let take = TakeoverRequest {
        group: g.clone(),
        member: m.clone(),
        incarnation: i,
        observed_term: Term(1),
        liveness_timeout: Duration::from_secs(5),
        observed_renewal: None,
    };
    admin()
        .await
        .execute(
            "INSERT INTO coord_pg_shared.token_holder (group_id, task_id, term) VALUES ($1, 'x', 1)",
            &[&g.as_str()],
        )
        .await
        .unwrap();
    let mut locker = admin().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM coord_pg_shared.token_holder WHERE group_id = $1 FOR UPDATE",
        &[&g.as_str()],
    )
    .await
    .unwrap();
    let start = Instant::now();
    let err = store.take_over(&take).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, StoreError::Timeout { operation: "takeover", after, .. } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    tx.rollback().await.unwrap();
    assert_eq!(
        store.take_over(&take).await.unwrap(),
        coord_core::TakeoverOutcome::Won(Term(2))
    );
}

#[tokio::test]
async fn settings_and_store_debug_hide_the_password() {
    let settings =
        PgSettings::from_url("postgres://app:Sup3r-Secret@127.0.0.1:1/test?connect_timeout=1")
            .unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains("Sup3r-Secret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let store = PgStore::open(settings.clone()).unwrap();
    assert!(!format!("{store:?}").contains("Sup3r-Secret"));
    let err = store.heartbeat(&request()).await.unwrap_err();
    assert!(!err.to_string().contains("Sup3r-Secret"), "{err}");
    let with_url = PgSettings {
        url: Some("postgres://app:Sup3r-Secret@h/db".into()),
        ..PgSettings::default()
    };
    assert!(!format!("{with_url:?}").contains("Sup3r-Secret"));
}

fn ca(name: &str) -> PathBuf {
    let path = PathBuf::from(TLS_DIR).join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/setup/10-postgres.sh",
        path.display()
    );
    path
}

#[tokio::test]
async fn tls_require_and_verify_full() {
    let schema = fresh_schema("pgerr_tls").await;
    // require: encrypted; the migrator (sqlx) goes over TLS too.
    let require = PgSettings {
        tls: TlsMode::Require,
        ..settings(&schema)
    };
    PgStore::open(require.clone())
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let store = PgStore::connect(require).await.unwrap();
    assert_eq!(
        store.heartbeat(&request()).await.unwrap().own_row,
        OwnRow::Written
    );

    // verify-full against the test CA, by address and by name.
    for host in ["127.0.0.1", "localhost"] {
        let verified = PgSettings {
            host: host.into(),
            tls: TlsMode::VerifyFull,
            tls_ca_file: Some(ca("ca.pem")),
            ..settings(&schema)
        };
        if host == "localhost" {
            // The migrator verifies the same way.
            PgStore::open(verified.clone())
                .unwrap()
                .migrate()
                .await
                .unwrap();
        }
        let store = PgStore::connect(verified).await.unwrap();
        assert_eq!(
            store.heartbeat(&request()).await.unwrap().own_row,
            OwnRow::Written
        );
    }

    // verify-full against a CA that did not sign the server's certificate: refused.
    let (err, _) = connect_err(PgSettings {
        tls: TlsMode::VerifyFull,
        tls_ca_file: Some(ca("server.pem")),
        ..settings(&schema)
    })
    .await;
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // require with a CA file: the CA is used (as on MySQL), so the wrong one is refused too.
    let (err, _) = connect_err(PgSettings {
        tls: TlsMode::Require,
        tls_ca_file: Some(ca("server.pem")),
        ..settings(&schema)
    })
    .await;
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // verify-full without a CA file, or with an unreadable one: a settings error up front.
    let err = PgStore::open(PgSettings {
        tls: TlsMode::VerifyFull,
        ..settings(&schema)
    })
    .unwrap_err();
    assert!(err.to_string().contains("ca_file"), "{err}");
    let err = PgStore::open(PgSettings {
        tls: TlsMode::VerifyFull,
        tls_ca_file: Some("/nonexistent/ca.pem".into()),
        ..settings(&schema)
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn a_call_dropped_by_its_caller_does_not_block_the_next_one() {
    shared_store().await;
    let store = PgStore::connect(PgSettings {
        pool_size: 1,
        statement_timeout: Duration::from_secs(10),
        ..settings("coord_pg_shared")
    })
    .await
    .unwrap();
    let g = group("dropped");
    admin()
        .await
        .execute(
            "INSERT INTO coord_pg_shared.token_holder (group_id, task_id, term) VALUES ($1, 'x', 1)",
            &[&g.as_str()],
        )
        .await
        .unwrap();
    let mut locker = admin().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM coord_pg_shared.token_holder WHERE group_id = $1 FOR UPDATE",
        &[&g.as_str()],
    )
    .await
    .unwrap();
    let take = TakeoverRequest {
        group: g.clone(),
        member: member("m"),
        incarnation: incarnation(),
        observed_term: Term(1),
        liveness_timeout: Duration::from_secs(5),
        observed_renewal: None,
    };
    // The caller gives up on a takeover blocked behind the lock.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), store.take_over(&take)).await;
    assert!(gave_up.is_err());
    // The only pooled connection still waits on the lock: it was discarded, so the next call
    // opens a new one instead of queueing behind it for up to 10 s.
    let start = Instant::now();
    assert_eq!(
        store.heartbeat(&request()).await.unwrap().own_row,
        OwnRow::Written
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    tx.rollback().await.unwrap();
}
